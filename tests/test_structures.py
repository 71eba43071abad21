"""Candidate structures per event (DESIGN section 12): payoffs recomputed independently, exact
expiry breakevens and risk, the market view against the synthetic source's exact prices, the
history view against the true real-world law, and bad input refused."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st
from scipy.stats import spearmanr

from pipeline.kernel import payoffs
from pipeline.kernel.black76 import black76_price, black76_vega
from pipeline.driver.cli import main
from pipeline.contract.config import ConfigError, load_config, parse_config
from pipeline.stages.params import stage_params
from pipeline.sources.synthetic import SyntheticMarket
from pipeline.stages import structures as stage
from pipeline.stages.events import event_expirations
from pipeline.stages.panel import dated
from pipeline.contract.store import Store

from conftest import AS_OF, REPO

pytestmark = pytest.mark.xdist_group("structures")


@pytest.fixture(scope="module")
def computed(daily_root):
    """The daily's structures recomputed from its stored snapshots, with the inputs."""
    from pipeline.stages.events import upcoming_events
    from pipeline.stages.metrics import compute_metrics

    config = load_config(REPO / "config.yaml")
    store = Store(daily_root)
    calendar = store.read("calendar", AS_OF)
    tickers = sorted(upcoming_events(dated(calendar, AS_OF), config.lookahead_days)["ticker"].unique())
    result = compute_metrics(dated(calendar, AS_OF), store.scan("earnings_history", tickers=tickers),
                             store.scan("prices", tickers=tickers), dated(store.read("chains", AS_OF), AS_OF),
                             stage_params(config))
    frame = stage.build_structures(result.metrics, result.surface, result.moves, stage_params(config)).drop(columns="as_of")
    return frame, result, config, store


def _legs(frame):
    strike = np.column_stack([frame[f"{s}_strike"] for s in stage.SLOTS])
    return strike, np.where(np.isfinite(strike), stage.SLOT_SIDE, 0.0)


def test_the_stored_dataset_is_the_stage_on_the_stored_snapshots(computed):
    frame, _, _, store = computed
    stored = store.read("structures", AS_OF)
    pd.testing.assert_frame_equal(stored.reset_index(drop=True), frame.reset_index(drop=True), check_dtype=False)
    assert set(frame["structure"]) == set(stage.STRUCTURES)
    assert (frame["status"] == "ok").mean() > 0.6
    dropped = frame[frame["status"] == "dropped"]
    assert dropped["reason"].notna().all() and frame.loc[frame["status"] == "ok", "reason"].isna().all()
    assert (frame.groupby(["ticker", "report_date"])["suggested"].sum() <= 1).all()


def test_the_suggestion_is_a_structure_the_risk_budget_can_size(computed):
    frame, _, config, _ = computed
    bid, ask, mid = (stage.slot_values(frame, f"{{slot}}_{f}") for f in ("bid", "ask", "mid"))
    tight = np.isfinite(bid) & ~(ask - bid <= config.max_leg_spread * mid)
    liquid = (frame["status"] == "ok") & ~tight.any(axis=1) & (frame["liquidity_tier"] != "REJECT")
    sizeable = frame[liquid & (frame["contracts"] >= 1)].set_index(["ticker", "report_date"]).index
    chosen = frame[frame["suggested"]].set_index(["ticker", "report_date"])
    fits = chosen.index.isin(sizeable)
    assert fits.sum() > 10
    # Where a liquid candidate fits the risk budget, the suggestion is one of them (never "Qty 0") ...
    assert (chosen.loc[fits, "contracts"] >= 1).all()
    assert chosen.loc[fits, "why"].str.contains("within the risk budget").all()
    # ... and where none does, the suggestion says so.
    assert chosen.loc[~fits, "why"].str.contains("none fits the risk budget").all()


def test_strikes_follow_the_rules_at_listed_strikes(computed):
    frame, result, config, _ = computed
    ok = frame[frame["status"] == "ok"].merge(result.metrics[["ticker", "straddle_strike"]], on="ticker")
    c, w = config.strangle_multiple, config.wing_multiple
    f, m = ok["forward"], ok["implied_move"]
    strangle = ok[ok["structure"].isin(["strangle", "iron_condor"])]
    assert (strangle["short_put_strike"] <= f[strangle.index] * (1 - c * m[strangle.index]) + 1e-9).all()
    assert (strangle["short_put_strike"] < strangle["straddle_strike"]).all()
    assert (strangle["short_call_strike"] >= f[strangle.index] * (1 + c * m[strangle.index]) - 1e-9).all()
    winged = ok[ok["structure"].isin(["iron_condor", "iron_butterfly"])]
    assert (winged["long_put_strike"] < winged["short_put_strike"]).all()
    assert (winged["long_call_strike"] > winged["short_call_strike"]).all()
    assert (winged["long_put_strike"] <= f[winged.index] * (1 - w * m[winged.index]) + 1e-9).all()
    straddle = ok[ok["structure"].isin(["straddle", "iron_butterfly"])]
    assert (straddle["short_put_strike"] == straddle["straddle_strike"]).all()
    # Every leg is a listed contract with a two-sided quote, priced at its quoted mid.
    surface = result.surface
    for slot, kind in zip(stage.SLOTS, "PCPC"):
        legs = ok[ok[f"{slot}_strike"].notna()][["ticker", "expiration", f"{slot}_strike", f"{slot}_bid",
                                                 f"{slot}_ask", f"{slot}_mid"]]
        quotes = surface[surface["option_type"] == kind].drop_duplicates(["ticker", "expiration", "strike"])
        joined = legs.merge(quotes, left_on=["ticker", "expiration", f"{slot}_strike"],
                            right_on=["ticker", "expiration", "strike"])
        assert len(joined) == len(legs)
        np.testing.assert_array_equal(joined[f"{slot}_bid"], joined["bid"])
        np.testing.assert_allclose(joined[f"{slot}_mid"], 0.5 * (joined["bid"] + joined["ask"]))
        assert (joined["bid"] > 0).all()


def test_expiry_payoff_breakevens_and_defined_risk_are_exact(computed):
    frame, _, config, _ = computed
    ok = frame[frame["status"] == "ok"]
    strike, side = _legs(ok)
    is_call = stage.SLOT_IS_CALL
    commission, legs = config.structure_commission, (side != 0).sum(1)

    def expiry_pnl(spot):
        intrinsic = np.where(is_call, np.maximum(spot[:, None] - strike, 0), np.maximum(strike - spot[:, None], 0))
        return 100 * (ok["credit_fill"].to_numpy() + np.nansum(side * intrinsic, 1)) - commission * legs

    low, high = ok["breakeven_low_expiry"].to_numpy(), ok["breakeven_high_expiry"].to_numpy()
    np.testing.assert_allclose(expiry_pnl(low), 0, atol=1e-8)
    np.testing.assert_allclose(expiry_pnl(high), 0, atol=1e-8)
    assert (expiry_pnl(0.5 * (low + high)) > 0).all()
    assert (expiry_pnl(low * 0.999) < 0).all() and (expiry_pnl(high * 1.001) < 0).all()
    # Credits: per leg, short legs sell below mid, long legs buy above it.
    mids = np.column_stack([ok[f"{s}_mid"] for s in stage.SLOTS])
    halves = 0.5 * np.column_stack([ok[f"{s}_ask"] - ok[f"{s}_bid"] for s in stage.SLOTS])
    np.testing.assert_allclose(ok["credit_mid"], -np.nansum(side * mids, 1))
    np.testing.assert_allclose(ok["credit_fill"], -np.nansum(side * mids, 1) - config.structure_fill_share
                               * np.nansum(halves, 1))
    # Defined risk: widest wing - credit at fill, per contract, with round-trip commissions; it is
    # the worst expiry loss plus the commissions of closing.
    defined = ok["risk_kind"] == "defined"
    wing = np.fmax(strike[:, 0] - strike[:, 2], strike[:, 3] - strike[:, 1])
    expected = 100 * (wing - ok["credit_fill"]) + 2 * legs * commission
    np.testing.assert_allclose(ok["risk"][defined], expected[defined])
    worst = np.minimum(expiry_pnl(strike[:, 2] - 1e-9), expiry_pnl(strike[:, 3] + 1e-9))
    np.testing.assert_allclose((-worst + legs * commission)[defined], ok["risk"][defined], atol=1e-6)
    assert set(ok.loc[~defined, "structure"]) <= {"straddle", "strangle"}


def test_undefined_risk_is_the_reg_t_margin(computed):
    frame, _, _, _ = computed
    ok = frame[(frame["status"] == "ok") & (frame["risk_kind"] == "undefined")]
    for row in ok.itertuples():
        s = row.spot
        put = max(0.2 * s - max(s - row.short_put_strike, 0) + row.short_put_mid, 0.1 * row.short_put_strike + row.short_put_mid)
        call = max(0.2 * s - max(row.short_call_strike - s, 0) + row.short_call_mid, 0.1 * s + row.short_call_mid)
        expected = 100 * (put + row.short_call_mid if put >= call else call + row.short_put_mid)
        assert row.risk == pytest.approx(expected, rel=1e-12)


def test_exit_pnl_equals_the_legs_valued_one_by_one():
    """_pnl against a plain per-leg loop with Black-76 prices floored at intrinsic."""
    rng = np.random.default_rng(3)
    n, g = 40, 9
    strike = np.sort(rng.uniform(80, 120, (n, 4)), axis=1)[:, [1, 2, 0, 3]]
    side = np.tile(stage.SLOT_SIDE, (n, 1))
    side[: n // 2, 2:] = 0.0
    mid, half = rng.uniform(0.5, 5, (n, 4)), rng.uniform(0.01, 0.2, (n, 4))
    expiring = rng.uniform(size=n) < 0.3
    t1 = np.where(expiring, 0.0, rng.uniform(0.01, 0.1, n))
    spots = 100 * np.exp(rng.normal(0, 0.1, (n, g)))
    ex_vol, b, c = 0.3, -0.1, 0.05
    values = payoffs.exit_leg_values(spots[:, None, :], strike[..., None], stage.SLOT_IS_CALL[None, :, None],
                                     t1[:, None, None], 0.04, ex_vol, b, c, 3.0)
    pnl = stage._pnl(side, mid, half, values, expiring, 0.5, 0.65, 1.0)
    for i in range(n):
        for j in range(g):
            total, legs_held = 0.0, 0
            for k in range(4):
                if side[i, k] == 0:
                    continue
                legs_held += 1
                is_call = bool(stage.SLOT_IS_CALL[k])
                s1, kk = spots[i, j], strike[i, k]
                intrinsic = max(s1 - kk, 0.0) if is_call else max(kk - s1, 0.0)
                if expiring[i]:
                    value = intrinsic
                else:
                    fwd = s1 * np.exp(0.04 * t1[i])
                    x = min(max(np.log(kk / fwd) / (ex_vol * np.sqrt(t1[i])), -3.0), 3.0)
                    vol = max(ex_vol * (1 + b * x + c * x * x), 0.3 * ex_vol)
                    value = max(float(black76_price(fwd, kk, t1[i], vol, np.exp(-0.04 * t1[i]), is_call)), intrinsic)
                entry = mid[i, k] + side[i, k] * 0.5 * half[i, k]          # short sells below, long buys above
                if expiring[i]:
                    exit_price = value
                    total -= 1.0 * (value > 0)                               # exercise fee per ITM leg
                else:
                    exit_price = value - side[i, k] * 0.5 * half[i, k] / mid[i, k] * value
                total += 100 * side[i, k] * (exit_price - entry)
            total -= 0.65 * legs_held * (1 if expiring[i] else 2)
            assert pnl[i, j] == pytest.approx(total, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.floats(-2.5, 2.5), st.floats(0.1, 1.5), st.floats(-0.3, 0.3), st.floats(-0.05, 0.1), st.floats(0.005, 0.5))
def test_expiry_exceedance_is_minus_the_call_slope(x, atm, slope, curvature, t):
    """The digital with the smile-slope term equals -dC/dK / D by finite differences (smiles of
    the synthetic market's shapes: slope and curvature in units of the ATM vol), kept in [0, 1]
    as a probability where a steep wing makes the call price rise with the strike (arbitrage)."""
    forward, strike = 100.0, 100.0 * np.exp(x * atm * np.sqrt(t))
    a, b, c = atm, slope * atm, curvature * atm
    h = 1e-4 * strike

    def call(k):
        return black76_price(forward, k, t, payoffs.quadratic_smile(k, forward, t, atm, a, b, c, 3.0), 1.0, True)

    numeric = np.clip(-(call(strike + h) - call(strike - h)) / (2 * h), 0.0, 1.0)
    assert payoffs.expiry_exceedance(strike, forward, t, atm, a, b, c, 3.0) == pytest.approx(numeric, abs=2e-5)


def test_zero_crossings_interpolate_the_sign_changes():
    nodes = np.tile(np.linspace(-1, 1, 201), (2, 1))
    pnl = np.vstack([0.04 - nodes[0] ** 2, np.full(201, -1.0)])
    low, high = payoffs.zero_crossings(nodes, pnl)
    assert low[0] == pytest.approx(-0.2, abs=1e-4) and high[0] == pytest.approx(0.2, abs=1e-4)
    assert np.isnan(low[1]) and np.isnan(high[1])


def _source_digitals(market, frame):
    """P(S_T > K) at each candidate's strikes K from the source's exact price function,
    -dC/dK / D by central differences of the source's own call prices (its model prices when it
    has them, else Black-76 on its smile)."""
    listed = market.expirations(sorted(frame["ticker"].unique()), AS_OF)
    wanted = frame[["ticker", "expiration"]].drop_duplicates()
    g = market._expiry_groups(wanted.merge(listed, on=["ticker", "expiration"]), AS_OF).set_index(
        ["ticker", "expiration"])
    rows = g.reindex(pd.MultiIndex.from_frame(frame[["ticker", "expiration"]])).reset_index()
    calls = np.ones(len(rows), bool)

    def call(strike):
        if hasattr(market, "model_prices"):
            return market.model_prices(rows, strike, calls)[0]
        x = np.log(strike / rows["forward"].to_numpy()) / (rows["atm_vol"].to_numpy() * np.sqrt(rows["t"].to_numpy()))
        return black76_price(rows["forward"], strike, rows["t"], market.smile_vol(rows, x), rows["discount"], calls)

    def digital(strike):
        h = 1e-4 * strike
        return -(call(strike + h) - call(strike - h)) / (2 * h) / rows["discount"].to_numpy()

    return digital


def test_pop_expiry_rn_matches_the_sources_analytic_digitals(computed, market):
    frame, _, _, _ = computed
    ok = frame[frame["status"] == "ok"].reset_index(drop=True)
    digital = _source_digitals(market, ok)
    truth = digital(ok["breakeven_low_expiry"].to_numpy()) - digital(ok["breakeven_high_expiry"].to_numpy())
    error = np.abs(ok["pop_expiry_rn"].to_numpy() - truth)
    assert len(ok) > 80
    assert np.mean(error <= 0.03) >= 0.9, np.sort(error)[-10:]


def test_ev_rn_at_mid_is_within_the_consistency_band(computed):
    """|ev_rn| at mid <= half the legs' summed half-spreads + the exit vega x 1 vol point.

    The market law is the density stage's fitted event law (section 11), read by
    :func:`pipeline.stages.structures.event_law`. Measured on this daily (155 candidates), all /
    straddle / strangle / condor / butterfly: issue 20's normal law 0.87 / 1.00 / 0.74 / 0.86 /
    0.88; issue 19's law as merged (one component unless the density shows a trough) 0.86 / 0.98
    / 0.71 / 0.86 / 0.88 (fat-tailed true laws 0.71: one normal cannot price their wings); with
    the tail fit (:func:`pipeline.stages.density._tail_law`) and two-component laws scaled to
    reprice the ATM straddle, 0.92 / 1.00 / 0.83 / 0.86 / 1.00 (fat-tailed 0.93, bimodal 0.83).
    The issue's 0.9 holds here; on other as-of dates the same law gives 0.90 (2026-08-07) and
    0.83 (2026-05-01, 2026-02-06): beat-or-miss laws remain the misses (strangles), see
    /work/notes/integ.md.
    """
    frame, result, config, _ = computed
    ok = frame[frame["status"] == "ok"].reset_index(drop=True)
    strike, side = _legs(ok)
    halves = 0.5 * np.column_stack([ok[f"{s}_ask"] - ok[f"{s}_bid"] for s in stage.SLOTS])
    inputs = stage._event_inputs(result.metrics, result.surface, config).set_index(["ticker", "report_date"])
    ev = inputs.reindex(pd.MultiIndex.from_frame(ok[["ticker", "report_date"]]))
    t1 = ev["t_exit"].to_numpy()
    fwd = ok["spot"].to_numpy() * np.exp(config.risk_free_rate * t1)
    vega = np.nansum(side * black76_vega(fwd[:, None], np.nan_to_num(strike, nan=1.0), np.maximum(t1, 1e-9)[:, None],
                                         ev["ex_vol"].to_numpy()[:, None], 1.0), 1)
    band = 100 * (0.5 * np.nansum(halves, 1) + np.abs(vega) * 0.01)
    inside = np.abs(ok["ev_rn_mid"].to_numpy()) <= band
    straddle = (ok["structure"] == "straddle").to_numpy()
    assert np.mean(inside[straddle]) >= 0.9, ok.loc[straddle & ~inside, ["ticker", "ev_rn_mid"]].head()
    assert np.mean(inside) >= 0.9, {s: np.mean(inside[(ok["structure"] == s).to_numpy()]) for s in stage.STRUCTURES}


def test_event_law_reads_the_fitted_columns_and_falls_back_per_event():
    """A fitted law (component 2 null for one component) is used as stored; an event without a
    complete component 1 gets the normal law with the ATM-equivalent std and mean -s^2/2."""
    metrics = pd.DataFrame({
        "event_law_weight_1": [0.4, 1.0, np.nan, 1.0], "event_law_mean_1": [-0.08, -0.002, np.nan, np.nan],
        "event_law_std_1": [0.02, 0.06, np.nan, np.nan], "event_law_weight_2": [0.6, np.nan, np.nan, np.nan],
        "event_law_mean_2": [0.05, np.nan, np.nan, np.nan], "event_law_std_2": [0.02, np.nan, np.nan, np.nan]})
    weight, mean, std = stage.event_law(metrics, np.array([0.1, 0.1, 0.05, 0.07]))
    np.testing.assert_array_equal(weight[:2, 0], [0.4, 1.0])
    np.testing.assert_array_equal(std[:2, 0], [0.02, 0.06])
    np.testing.assert_array_equal(mean[0], [-0.08, 0.05])
    np.testing.assert_allclose(std[2:, 0], [0.05, 0.07])
    np.testing.assert_allclose(mean[2:, 0], [-0.5 * 0.05 ** 2, -0.5 * 0.07 ** 2])
    assert (weight[2:, 0] == 1).all() and np.isnan(weight[1:, 1]).all()


def _ev_with_moves(result, config, moves_by_ticker, n_moves):
    """ev_hist of every candidate with the given past moves (ticker -> array) in place of history."""
    rows = [pd.DataFrame({"ticker": t, "reaction_date": pd.date_range("2000-01-03", periods=len(m), freq="D"),
                          "close_move": m}) for t, m in moves_by_ticker.items()]
    moves = dated(pd.concat(rows, ignore_index=True), AS_OF)
    cfg = stage_params(replace(config, max_events=n_moves, min_events=min(4, n_moves)))
    return stage.build_structures(result.metrics, result.surface, moves, cfg)["ev_hist"].to_numpy()


def test_ev_hist_ranks_like_the_true_expected_pnl(computed, market, truth):
    """Spearman of ev_hist per unit of credit with the true real-world expected P&L (the same
    estimator on 400 quantiles of the true jump law) >= 0.3 and >= 0.9 x an oracle running the
    estimator on 12 fresh draws of the true law (history noise caps what anything can reach)."""
    from scipy.special import stdtrit

    frame, result, config, _ = computed
    law = truth(7).drop_duplicates("ticker").set_index("ticker")
    tickers = sorted(result.metrics["ticker"])
    law = law.reindex(tickers)
    u = (np.arange(400) + 0.5) / 400
    normal_q, t3_q = ndtr_inv(u), stdtrit(3, u) / np.sqrt(3.0)

    def jumps(z):
        return {t: np.expm1(law.loc[t, "true_move_std"] * z(t)) for t in tickers}

    true_ev = _ev_with_moves(result, config, jumps(lambda t: t3_q if law.loc[t, "fat_tailed"] else normal_q), 400)
    ok = (frame["status"] == "ok").to_numpy() & np.isfinite(frame["ev_hist"].to_numpy()) & np.isfinite(true_ev)
    credit = frame["credit_mid"].to_numpy()
    estimate = spearmanr(frame["ev_hist"].to_numpy()[ok] / credit[ok], true_ev[ok] / credit[ok]).statistic
    rng = np.random.default_rng(20)
    oracle = []
    for _ in range(5):
        def draw(t):
            if law.loc[t, "fat_tailed"]:
                return rng.standard_t(3, 12) / np.sqrt(3.0)
            return rng.standard_normal(12)
        fresh = _ev_with_moves(result, config, jumps(draw), 12)
        oracle.append(spearmanr(fresh[ok] / credit[ok], true_ev[ok] / credit[ok]).statistic)
    assert estimate >= 0.3 and estimate >= 0.9 * np.mean(oracle), (estimate, oracle)


def ndtr_inv(u):
    from scipy.special import ndtri

    return ndtri(u)


def test_pure_and_vectorized_partition_gives_the_same_rows(computed):
    """Structures are per event: a partition of the events gives exactly its rows."""
    frame, result, config, _ = computed
    half = sorted(result.metrics["ticker"])[::2]
    part = stage.build_structures(result.metrics[result.metrics["ticker"].isin(half)], result.surface,
                                  result.moves, stage_params(config)).drop(columns="as_of")
    pd.testing.assert_frame_equal(part.reset_index(drop=True),
                                  frame[frame["ticker"].isin(half)].reset_index(drop=True))


@pytest.mark.parametrize("body, key", [
    ("structures:\n  wing_multiple: 1.0\n  strangle_multiple: 1.0\n", "structures.wing_multiple"),
    ("structures:\n  risk_budget: 0\n", "structures.risk_budget"),
    ("structures:\n  risk_budget: -5\n", "structures.risk_budget"),
])
def test_bad_structure_config_exits_2_and_writes_nothing(tmp_path, body, key):
    import yaml

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config(yaml.safe_load(body))
    config = tmp_path / "config.yaml"
    config.write_text(body)
    root = tmp_path / "data"
    out = CliRunner().invoke(main, ["--data-dir", str(root), "--config", str(config), "daily", "--date", "2026-11-20"])
    assert out.exit_code == 2 and key in out.output
    assert not root.exists() or not any(root.rglob("*.parquet"))


def test_unknown_structure_exits_2_and_writes_nothing(tmp_path):
    root = tmp_path / "data"
    out = CliRunner().invoke(main, ["--data-dir", str(root), "backtest", "--start", "2026-10-01", "--end",
                                    "2026-10-30", "--structure", "butterfly"])
    assert out.exit_code == 2 and "butterfly" in out.output
    assert not root.exists() or not any(root.rglob("*"))


def test_the_expiry_curve_crosses_zero_at_the_stored_breakevens(computed):
    frame, _, config, _ = computed
    row = frame[frame["suggested"]].head(1)
    moves = np.linspace(-0.3, 0.3, 61)
    pnl = stage.expiry_pnl(row, moves, config.structure_commission)[0]
    low = row["breakeven_low_expiry"].iloc[0] / row["spot"].iloc[0] - 1
    assert np.interp(low, moves, pnl) == pytest.approx(0.0, abs=0.02 * np.abs(pnl).max())


def test_contracts_from_the_risk_budget_and_capped_kelly(computed):
    frame, result, config, _ = computed
    ok = frame[frame["status"] == "ok"]
    np.testing.assert_array_equal(ok["contracts"], np.floor(config.risk_budget / ok["risk"]).astype(int))
    kelly = stage.build_structures(result.metrics, result.surface, result.moves, stage_params(replace(config, kelly_cap=0.25)))
    kelly = kelly[kelly["status"] == "ok"]
    assert (kelly["contracts"].to_numpy() <= np.floor(0.25 * config.risk_budget / kelly["risk"]).to_numpy()).all()
    assert (kelly.loc[kelly["ev_hist"] <= 0, "contracts"] == 0).all()


def test_missing_inputs_drop_candidates_with_a_reason(computed):
    from pipeline.contract.schemas import validate

    frame, result, config, _ = computed
    metrics, surface = result.metrics, result.surface
    gone = metrics["ticker"].iloc[0]
    out = validate("structures", stage.build_structures(metrics, surface[surface["ticker"] != gone], result.moves,
                                                         stage_params(config)))
    mine = out[out["ticker"] == gone]
    assert (mine["status"] == "dropped").all() and mine["reason"].notna().all()
    pd.testing.assert_frame_equal(out[out["ticker"] != gone].reset_index(drop=True),
                                  frame[frame["ticker"] != gone].reset_index(drop=True), check_dtype=False)
    bare = validate("structures", stage.build_structures(metrics, surface.iloc[:0], result.moves.iloc[:0],
                                                          stage_params(config)))
    assert (bare["status"] == "dropped").all() and len(bare) == 4 * len(metrics)


def test_structure_trades_settle_expiring_legs_at_intrinsic_with_the_exercise_fee():
    from pipeline.stages.structure_trades import simulate

    legs = {"short_put": (95, 2.0, 2.2), "short_call": (105, 1.8, 2.0), "long_put": (90, 0.9, 1.0),
            "long_call": (110, 0.7, 0.8)}
    row = {f"{slot}_{f}": v for slot, (k, b, a) in legs.items() for f, v in (("strike", k), ("bid", b), ("ask", a))}
    row.update({f"exit_{slot}_{f}": np.nan for slot in legs for f in ("bid", "ask")})
    trades = pd.DataFrame([{**row, "exit_kind": "intrinsic", "exit_close": 92.0, "risk_kind": "defined",
                            "margin": np.nan, "status": "ok"}])
    out = simulate(trades, 0.5, 0.65, exercise_fee=5.0).iloc[0]
    credit = (2.1 - 0.05) + (1.9 - 0.05) - (0.95 + 0.025) - (0.75 + 0.025)
    assert out["entry_credit"] == pytest.approx(credit)
    assert out["exit_debit"] == pytest.approx(95 - 92)                  # only the short put is in the money
    assert out["pnl"] == pytest.approx(100 * (credit - 3) - 4 * 0.65 - 5.0)
    assert out["risk"] == pytest.approx(100 * (5 - credit) + 8 * 0.65)
    assert out["trade_status"] == "ok"
    quoted = trades.assign(exit_kind="quote")
    assert simulate(quoted, 0.5, 0.65).iloc[0]["trade_status"] == "no_exit_quote"


def test_exit_pnl_of_the_stored_rows_reproduces_ev_hist_and_the_exit_breakevens(computed):
    """structures.exit_pnl prices the stored rows (legs plus EXIT_INPUTS) at the exit: at the
    history view's nodes it gives back the stage's ev_hist and pop_hist, and it crosses zero at
    the stored exit breakevens (found by the stage on its own market grid)."""
    _, result, config, store = computed
    rows = store.read("structures", AS_OF)
    rows = rows[rows["status"] == "ok"].reset_index(drop=True)
    ev = stage._event_inputs(result.metrics, result.surface, config)[["ticker", "report_date", "t0"]]
    ev["report_date"] = pd.to_datetime(ev["report_date"])
    rows["report_date"] = pd.to_datetime(rows["report_date"])
    t0 = rows[["ticker", "report_date"]].merge(ev, on=["ticker", "report_date"], how="left")["t0"].to_numpy(float)
    past, enough = stage._history_moves(result.moves, dated(rows[["ticker"]], AS_OF), config.move_type, config.max_events,
                                        config.min_events)
    z, wz = payoffs.hermite_nodes()
    diffusion = rows["exit_ex_vol"].to_numpy(float) * np.sqrt(np.maximum(t0 - rows["t_exit"].to_numpy(float), 0.0))
    log_r = (np.log1p(past)[:, :, None] + diffusion[:, None, None] * z).reshape(len(rows), -1)
    weight = (np.isfinite(past)[:, :, None] * wz).reshape(len(rows), -1)
    weight = weight / weight.sum(1, keepdims=True)
    pnl = stage.exit_pnl(rows, np.expm1(np.nan_to_num(log_r)), stage_params(config))
    assert enough.sum() > 0.5 * len(rows)
    np.testing.assert_allclose((weight * pnl).sum(1)[enough], rows["ev_hist"].to_numpy(float)[enough], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(np.clip((weight * (pnl > 0)).sum(1), 0, 1)[enough], rows["pop_hist"].to_numpy(float)[enough],
                               atol=1e-9)
    # A wrong fill rule would move every number: at f = 0 the same nodes give a larger ev.
    free = stage.exit_pnl(rows, np.expm1(np.nan_to_num(log_r)),
                          stage_params(replace(config, structure_fill_share=0.0, structure_commission=0.0)))
    assert ((weight * free).sum(1)[enough] > rows["ev_hist"].to_numpy(float)[enough]).all()
    for side in ("low", "high"):
        be = rows[f"breakeven_{side}_exit"].to_numpy(float) / rows["spot"].to_numpy(float) - 1
        have = np.isfinite(be)
        assert have.mean() > 0.8
        at = stage.exit_pnl(rows[have], be[have][:, None], stage_params(config))[:, 0]
        scale = 100 * rows.loc[have, "credit_fill"].to_numpy(float)
        assert (np.abs(at) <= 0.05 * scale).mean() >= 0.95, np.sort(np.abs(at) / scale)[-10:]


def _curve(payoff: pd.DataFrame, events: pd.DataFrame, curve: str):
    """(events, points) moves, P&Ls and breakeven marks of one stored curve, NaN-padded, rows in
    ``events`` order."""
    rows = payoff[payoff["curve"] == curve]
    index = pd.MultiIndex.from_frame(events[["ticker", "report_date"]])
    wide = {c: rows.pivot(index=["ticker", "report_date"], columns="point", values=c).reindex(index)
            for c in ("move", "pnl", "breakeven")}
    return (wide["move"].to_numpy(float), wide["pnl"].to_numpy(float),
            wide["breakeven"].fillna(False).to_numpy(bool))


def test_the_stored_payoff_curves_are_the_stage_formulas_at_the_stored_moves(computed):
    """The ``payoff`` rows of each suggested structure: the P&L at exit is exit_pnl and the P&L at
    expiry is expiry_pnl of the stored structures row at the stored moves (recomputed here one
    event at a time), on [-r, r] with r a tick of the chart's axis reaching the implied band,
    the strikes and the past moves; the marked points are the stored breakevens, where the P&L
    is zero (exactly at expiry; at exit within the stage's market grid)."""
    from pipeline.kernel.ticks import nice_ticks

    _, _, config, store = computed
    params = stage_params(config)
    payoff, structures = store.read("payoff", AS_OF), store.read("structures", AS_OF)
    history = store.read("event_history", AS_OF)
    chosen = structures[structures["suggested"] & (structures["status"] == "ok") & (structures["spot"] > 0)]
    chosen = chosen.reset_index(drop=True)
    assert len(chosen) >= 20
    events = payoff.drop_duplicates(["ticker", "report_date"])[["ticker", "report_date", "structure"]]
    pd.testing.assert_frame_equal(events.reset_index(drop=True),
                                  chosen[["ticker", "report_date", "structure"]], check_dtype=False)
    exit_moves, exit_pnl, exit_marks = _curve(payoff, chosen, "exit")
    expiry_moves, expiry_pnl, expiry_marks = _curve(payoff, chosen, "expiry")
    assert exit_moves.shape[1] == stage.PAYOFF_EXIT_POINTS + 2 and np.isfinite(exit_moves).all()
    assert (np.diff(exit_moves, axis=1) >= 0).all() and (np.diff(expiry_moves, axis=1) > 0).sum() > 0
    spot = chosen["spot"].to_numpy(float)
    for i in range(len(chosen)):
        row = chosen.iloc[[i]]
        on = np.isfinite(expiry_moves[i])
        np.testing.assert_allclose(stage.exit_pnl(row, exit_moves[i], params)[0], exit_pnl[i], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(stage.expiry_pnl(row, expiry_moves[i, on], config.structure_commission)[0],
                                   expiry_pnl[i, on], rtol=1e-12, atol=1e-9)
        assert (np.diff(expiry_moves[i, on]) > 0).all()               # each corner once, sorted
    # The reach: the curves share their ends, an axis tick, wide enough for what the chart shows.
    reach = exit_moves[:, -1]
    np.testing.assert_array_equal(exit_moves[:, 0], -reach)
    np.testing.assert_array_equal(expiry_moves[:, 0], -reach)
    np.testing.assert_array_equal(np.nanmax(expiry_moves, axis=1), reach)
    assert all(r == stage.PAYOFF_MAX_REACH or nice_ticks(-r, r)[-1] == r for r in reach)
    full = reach < stage.PAYOFF_MAX_REACH
    implied = chosen["implied_move"].to_numpy(float)
    assert (reach[full] >= stage.PAYOFF_REACH_IMPLIED * np.nan_to_num(implied[full])).all()
    strikes = stage.slot_values(chosen, "{slot}_strike") / spot[:, None] - 1
    assert (np.nan_to_num(np.abs(strikes[full])) <= reach[full, None]).all()
    past = history.assign(size=history[config.move_type].abs()).groupby(["ticker", "report_date"])["size"].max()
    past = past.reindex(pd.MultiIndex.from_frame(chosen[["ticker", "report_date"]])).fillna(0).to_numpy(float)
    assert (past > 0).mean() > 0.5 and (stage.PAYOFF_REACH_MARGIN * past[full] <= reach[full]).all()
    # Breakevens: the marks are the stored ones (within reach), zero P&L there.
    for side, column in enumerate(("breakeven_low_expiry", "breakeven_high_expiry")):
        be = chosen[column].to_numpy(float) / spot - 1
        inside = np.isfinite(be) & (np.abs(be) <= reach)
        assert inside.mean() > 0.8
        hit = expiry_marks & (expiry_moves == be[:, None])
        assert (hit.sum(1) == inside).all()
    np.testing.assert_allclose(expiry_pnl[expiry_marks], 0.0, atol=1e-6)
    exit_be = np.column_stack([chosen[c].to_numpy(float) for c in ("breakeven_low_exit", "breakeven_high_exit")]) \
        / spot[:, None] - 1
    inside = np.isfinite(exit_be) & (np.abs(exit_be) <= reach[:, None])
    assert (exit_marks.sum(1) == inside.sum(1)).all() and inside.mean() > 0.8
    np.testing.assert_array_equal(np.sort(exit_moves[exit_marks]), np.sort(exit_be[inside]))
    scale = 100 * np.repeat(chosen["credit_fill"].to_numpy(float), exit_marks.sum(1))
    assert (np.abs(exit_pnl[exit_marks]) <= 0.05 * scale).mean() >= 0.95
    # A missing (or out of reach) exit breakeven repeats the left end, so the count stays fixed.
    np.testing.assert_array_equal((exit_moves == -reach[:, None]).sum(1), 3 - inside.sum(1))


def test_payoff_curves_of_no_suggested_structure_are_empty(computed):
    frame, result, config, _ = computed
    none = frame.assign(suggested=False)
    empty_curves = stage.payoff_curves(none, result.event_history.drop(columns="as_of"), stage_params(config))
    assert empty_curves.empty
    from pipeline.contract.schemas import validate

    validate("payoff", empty_curves)
