"""Benchmark of the compute stages on a synthetic universe: ``make bench``.

For each universe size N it builds one as-of date's inputs in memory (every ticker gets an
upcoming event and its first five expirations after it: ~300 quotes per ticker), then times
each stage (best of ``--repeat`` runs) and measures its peak traced memory in a separate run. It also reports
implied-vol throughput with the max error against QuantLib on a sample, skew fits per second, and
the same maths run ticker by ticker in a plain loop (on a sample, scaled to N) as a reference.
"""
from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np
import pandas as pd

from pipeline.stages.params import stage_params

AS_OF = pd.Timestamp("2026-11-20")
EVENT = ["as_of", "ticker", "report_date"]     # an event's key in the stages' outputs


def build_inputs(n_tickers: int, seed: int = 7):
    from pipeline.sources.synthetic import SyntheticMarket
    from pipeline.stages.events import event_expirations, upcoming_events
    from pipeline.stages.panel import dated

    market = SyntheticMarket(seed=seed, universe_size=n_tickers)
    calendar = market.calendar(AS_OF, 92)
    events = upcoming_events(dated(calendar, AS_OF), 92)
    tickers = events["ticker"].tolist()
    listed = market.expirations(tickers, AS_OF)
    wanted = event_expirations(listed, events, count=5)
    return {
        "market": market, "wanted": wanted,
        "event_expiration": event_expirations(listed, events, count=1),
        "calendar": dated(calendar, AS_OF),
        "history": market.earnings_history(tickers, AS_OF),
        "prices": market.prices(tickers, AS_OF - pd.DateOffset(years=4, days=10), AS_OF),
        "chains": dated(market.chains(wanted, AS_OF), AS_OF),
        "events": events,
    }


def stage_functions(inputs, config):
    """Each compute stage as a zero-argument callable, in pipeline order, fed by the previous."""
    from pipeline.stages import consistency, density, implied, moves, skew, surface, term
    from pipeline.stages.metrics import compute_metrics

    state = {}

    def run_moves():
        wanted = inputs["events"][["as_of", "ticker"]].merge(inputs["history"], on="ticker")
        state["moves"] = moves.historical_moves(wanted, inputs["prices"])

    def run_stats():
        state["stats"] = consistency.history_stats(state["moves"])

    def run_surface():
        state["surface"] = surface.build_surface(inputs["chains"], config.risk_free_rate)

    def run_skew():
        state["skew"] = skew.fit_skew(state["surface"], min_points=config.skew_min_points,
                                      max_abs_x=config.skew_max_abs_x)

    def run_straddle():
        state["straddle"] = implied.event_straddles(inputs["chains"], state["surface"], inputs["events"], config.max_leg_spread,
                                state["skew"])

    def run_term():
        state["term"] = term.term_structure(term.atm_iv_by_expiration(state["surface"]), inputs["events"])

    def run_pricer():
        # The synthetic market's closed-form mixture pricing of every quote (strikes, prices, IVs).
        inputs["market"].chains(inputs["wanted"], AS_OF)

    def run_density():
        # The density stage with its event-law fit, one event expiration per event.
        surface_ = state["surface"]
        atm = term.atm_iv_by_expiration(surface_)
        events = inputs["events"].merge(inputs["event_expiration"], on="ticker").merge(
            state["term"][[*EVENT, "ex_earnings_vol"]], on=EVENT, how="left")
        events = events.merge(state["straddle"][[*EVENT, "implied_move"]], on=EVENT, how="left")
        density.event_densities(surface_, atm, events, state["moves"])

    def run_all():
        state["result"] = compute_metrics(inputs["calendar"], inputs["history"], inputs["prices"],
                                          inputs["chains"], stage_params(config))

    def run_structures():
        from pipeline.stages.structures import build_structures, payoff_curves

        result, params = state["result"], stage_params(config)
        state["structures"] = build_structures(result.metrics, result.surface, result.moves, params)
        state["payoff"] = payoff_curves(state["structures"], result.event_history, params)

    def run_html():
        state["html_events"], state["html_bytes"] = report_page(state["result"], config, state["structures"],
                                                                state["payoff"])

    return [("moves", run_moves), ("history_stats", run_stats), ("surface (IV)", run_surface),
            ("skew", run_skew), ("straddle", run_straddle), ("term", run_term), ("density + law", run_density),
            ("market pricer", run_pricer), ("end-to-end compute", run_all), ("structures + payoff", run_structures),
            ("report CSV+HTML", run_html)], state


PAGE_WINDOW_DAYS = 7        # the daily's default look-ahead: the events one day's page shows


def report_page(result, config, structures: pd.DataFrame, payoff: pd.DataFrame) -> tuple[int, int]:
    """The ranked frame and HTML page of the events a default daily would show (reports within
    PAGE_WINDOW_DAYS), with the term structure, event history and smiles stored in a temporary
    data root as the daily leaves them, and their candidate structures and payoff curves as the
    report step hands them to the page. Returns (events, page bytes)."""
    import tempfile
    from pathlib import Path

    from pipeline.views.columns import round_for_csv
    from pipeline.views.html_report import render_html
    from pipeline.views.report import report_frame
    from pipeline.contract.store import Store

    metrics = result.metrics.drop(columns="as_of")
    metrics = metrics[metrics["report_date"] <= AS_OF + pd.Timedelta(days=PAGE_WINDOW_DAYS)]
    tickers = set(metrics["ticker"])
    with tempfile.TemporaryDirectory(prefix="ivcrush-bench-") as folder:
        store = Store(Path(folder))
        for name in ("term", "event_history", "smile"):
            rows = getattr(result, name)
            store.write(name, rows[rows["ticker"].isin(tickers)].reset_index(drop=True), AS_OF)
        frame = report_frame(metrics)
        round_for_csv(frame).to_csv(index=False)
        shown = {name: rows[rows["ticker"].isin(tickers)].drop(columns="as_of").reset_index(drop=True)
                 for name, rows in (("structures", structures), ("payoff", payoff))}
        page = render_html(frame, metrics, Path(folder), AS_OF, config, **shown)
    return len(frame), len(page.encode())


def structures_daily(n_tickers: int, repeat: int, seed: int = 7) -> tuple[int, float, float]:
    """The structures stage on a ``pipeline daily`` of ``n_tickers`` names: the events of the
    look-ahead window and their two event expirations (what pull-chains stores). Returns
    (events, best seconds, peak MiB)."""
    from pipeline.contract.config import Config
    from pipeline.sources.synthetic import SyntheticMarket
    from pipeline.stages.events import event_expirations, upcoming_events
    from pipeline.stages.metrics import compute_metrics
    from pipeline.stages.panel import dated
    from pipeline.stages.structures import build_structures

    config = Config()
    market = SyntheticMarket(seed=seed, universe_size=n_tickers)
    calendar = market.calendar(AS_OF, 92)
    events = upcoming_events(dated(calendar, AS_OF), config.lookahead_days)
    tickers = events["ticker"].tolist()
    chains = market.chains(event_expirations(market.expirations(tickers, AS_OF), events), AS_OF)
    result = compute_metrics(dated(calendar, AS_OF), market.earnings_history(tickers, AS_OF),
                             market.prices(tickers, AS_OF - pd.DateOffset(years=4, days=10), AS_OF),
                             dated(chains, AS_OF), stage_params(config))

    def run():
        build_structures(result.metrics, result.surface, result.moves, stage_params(config))

    return len(result.metrics), time_best(run, repeat), peak_memory(run)


def time_best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def peak_memory(fn) -> float:
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def iv_against_quantlib(surface: pd.DataFrame, sample: int = 2000) -> tuple[float, float]:
    """Options/s of the vectorized solver on every quote, and max |iv - QuantLib| on a sample."""
    import QuantLib as ql

    from pipeline.kernel.black76 import implied_vol

    ok = surface[surface["iv_status"] == "ok"]
    price = ok["mid"].to_numpy()
    forward, strike, t = ok["forward"].to_numpy(), ok["strike"].to_numpy(), ok["t"].to_numpy()
    discount = np.exp(-ok["rate"].to_numpy() * t)
    is_call = (ok["option_type"] == "C").to_numpy()
    seconds = time_best(lambda: implied_vol(price, forward, strike, t, discount, is_call), 3)
    iv, _ = implied_vol(price, forward, strike, t, discount, is_call)
    pick = np.random.default_rng(0).choice(len(ok), size=min(sample, len(ok)), replace=False)
    worst = 0.0
    for i in pick:
        kind = ql.Option.Call if is_call[i] else ql.Option.Put
        std = ql.blackFormulaImpliedStdDev(kind, strike[i], forward[i], price[i], discount[i], 0.0,
                                           iv[i] * np.sqrt(t[i]), 1e-14, 500)
        worst = max(worst, abs(std / np.sqrt(t[i]) - iv[i]))
    return len(ok) / seconds, worst


def loop_reference(inputs, config, sample: int) -> float:
    """Seconds for the full compute run ticker by ticker, on ``sample`` tickers scaled to all."""
    from pipeline.stages.metrics import compute_metrics

    tickers = inputs["events"]["ticker"].tolist()
    chosen = tickers[:sample]
    by = {k: inputs[k].groupby("ticker") for k in ("calendar", "history", "prices", "chains")}
    began = time.perf_counter()
    for ticker in chosen:
        part = {k: g.get_group(ticker) for k, g in by.items()}
        compute_metrics(part["calendar"], part["history"], part["prices"], part["chains"], stage_params(config))
    return (time.perf_counter() - began) * len(tickers) / len(chosen)


def bench(sizes, repeat: int, loop_sample: int) -> None:
    from pipeline.contract.config import Config

    config = Config()
    rows = []
    for n in sizes:
        began = time.perf_counter()
        inputs = build_inputs(n)
        build_seconds = time.perf_counter() - began
        stages, state = stage_functions(inputs, config)
        timings = {}
        for name, fn in stages:
            timings[name] = (time_best(fn, repeat), peak_memory(fn))
        iv_rate, iv_error = iv_against_quantlib(state["surface"])
        skew_groups = state["skew"].shape[0]
        loop_seconds = loop_reference(inputs, config, loop_sample)
        rows.append((n, len(inputs["chains"]), build_seconds, timings, iv_rate, iv_error,
                     skew_groups / timings["skew"][0], loop_seconds, (state["html_events"], state["html_bytes"])))
        print(f"N={n}: built {len(inputs['chains']):,} quotes in {build_seconds:.1f}s", flush=True)
    print()
    header = f"{'stage':<22}" + "".join(f"{'N=' + format(r[0], ','):>24}" for r in rows)
    print(header)
    print(f"{'':<22}" + "".join(f"{'seconds   peak MiB':>24}" for _ in rows))
    for name, _ in stages:
        print(f"{name:<22}" + "".join(f"{r[3][name][0]:>12.3f}{r[3][name][1]:>12.1f}" for r in rows))
    print(f"{'page events / MB':<22}" + "".join(f"{r[8][0]:>12,}{r[8][1] / 1e6:>12.1f}" for r in rows))
    print(f"{'quotes':<22}" + "".join(f"{r[1]:>24,}" for r in rows))
    print(f"{'IV options/s':<22}" + "".join(f"{r[4]:>24,.0f}" for r in rows))
    print(f"{'IV max err vs QuantLib':<22}" + "".join(f"{r[5]:>24.2e}" for r in rows))
    print(f"{'skew groups/s':<22}" + "".join(f"{r[6]:>24,.0f}" for r in rows))
    print(f"{'per-ticker loop (s)':<22}" + "".join(f"{r[7]:>24.1f}" for r in rows))
    print(f"{'loop / vectorized':<22}" + "".join(f"{r[7] / r[3]['end-to-end compute'][0]:>23.0f}x" for r in rows))
    base = rows[0]
    print(f"{'growth vs N (time)':<22}" + "".join(
        f"{(r[3]['end-to-end compute'][0] / base[3]['end-to-end compute'][0]) / (r[0] / base[0]):>23.2f}x" for r in rows))
    print()
    print(f"{'structures, daily':<22}{'events':>10}{'seconds':>10}{'peak MiB':>10}")
    for n in sizes:
        events, seconds, peak = structures_daily(n, repeat)
        print(f"{'N=' + format(n, ','):<22}{events:>10,}{seconds:>10.3f}{peak:>10.1f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000, 20000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop-sample", type=int, default=100, help="tickers timed in the per-ticker loop")
    args = parser.parse_args(argv)
    bench(args.sizes, args.repeat, args.loop_sample)


if __name__ == "__main__":
    main()
