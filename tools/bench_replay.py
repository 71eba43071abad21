"""Benchmark of a large-universe ``daily`` and of replay and backtest over a range of sessions:
``make bench`` (the tables after the compute stages).

Each command runs as a subprocess on a fresh data root, so its wall time includes start-up and
its peak memory is the largest resident set of the command or any process it started (a dask
worker included), read from ``getrusage(RUSAGE_CHILDREN)``.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.contract.layout import Layout


def _timed(args: list[str]) -> tuple[float, float]:
    """(seconds, peak MiB) of one command; the peak is measured in a fresh child of this one."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", probe, *args], check=True, capture_output=True, text=True).stdout
    seconds, peak = out.split()
    return float(seconds), float(peak)


def _run(start: str, end: str, universe: int, engine: str, keep: bool = False) -> list[tuple]:
    """Replay then backtest of [start, end] on a fresh data root:
    (command, engine, seconds, peak MiB of any process, largest dask worker peak MiB or NaN)."""
    pipeline = [str(Path(sys.executable).parent / "pipeline")]
    root = Path(tempfile.mkdtemp(prefix=f"bench-{engine}-"))
    config = Layout(root).config_file
    config.write_text(f"synthetic:\n  universe_size: {universe}\n")
    common = ["--data-dir", str(root), "--config", str(config)]
    rows = []
    # "structures": the backtest of every structure (``--structure suggested`` prices all four).
    for command, run, extra in (("replay", "replay", []), ("backtest", "backtest", []),
                                ("structures", "backtest", ["--structure", "suggested"])):
        logged = len(_worker_peaks(root))
        seconds, peak = _timed([*pipeline, run, *common, "--start", start, "--end", end, "--engine", engine, *extra])
        peaks = _worker_peaks(root)[logged:]
        rows.append((command, engine, seconds, peak, max(peaks[-1]) if peaks else float("nan")))
    if keep:
        print(f"kept the {engine} run's data root: {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def _worker_peaks(root: Path) -> list[list[float]]:
    """Per dask run logged under ``root`` (the engine logs it), each worker's peak MiB."""
    lines = [line for log in sorted(Layout(root).logs.glob("*.log")) for line in log.read_text().splitlines()
             if "peak resident memory per worker" in line]
    return [[float(v) for v in line.rsplit(":", 1)[1].replace("MiB", "").split(",")] for line in lines]


def _daily(date: str, universe: int, *flags: str) -> tuple[float, float]:
    """``pipeline daily`` of one date on a fresh data root: (seconds, peak MiB)."""
    root = Path(tempfile.mkdtemp(prefix="bench-daily-"))
    config = Layout(root).config_file
    config.write_text(f"synthetic:\n  universe_size: {universe}\n")
    pipeline = str(Path(sys.executable).parent / "pipeline")
    try:
        return _timed([pipeline, "--data-dir", str(root), "--config", str(config), "daily", "--date", date, *flags])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench_daily(date: str, universe: int) -> None:
    print(f"pipeline daily, {universe} tickers, {date}")
    print(f"{'report':10}{'seconds':>10}{'peak MiB':>10}")
    for label, flags in (("CSV", ("--no-html",)), ("CSV+HTML", ())):
        seconds, peak = _daily(date, universe, *flags)
        print(f"{label:10}{seconds:>10.1f}{peak:>10.0f}")


def bench(start: str, end: str, universe: int, keep: bool = False) -> None:
    from pipeline.contract import sessions

    rows = _run(start, end, universe, "local", keep) + _run(start, end, universe, "dask")
    # The same on the first quarter (every name reports once a quarter, so every name's path is
    # simulated by then): a dask worker's peak should not grow with the sessions after it.
    quarter = sessions.sessions_between(start, end)[:63]
    short = {(c, e): w for c, e, _, _, w in _run(str(quarter[0].date()), str(quarter[-1].date()), universe, "dask")}
    print(f"replay and backtest, {universe} tickers, {start} .. {end} ({len(sessions.sessions_between(start, end))} sessions)")
    print(f"{'command':10}{'engine':>8}{'seconds':>10}{'peak MiB':>10}{'worker peak MiB':>17}{'same, 63 sessions':>19}")
    for command, engine, seconds, peak, worker in rows:
        print(f"{command:10}{engine:>8}{seconds:>10.1f}{peak:>10.0f}{worker:>17.0f}"
              f"{short.get((command, engine), float('nan')):>19.0f}")
    timing = {(c, e): s for c, e, s, _, _ in rows}
    for command in ("replay", "backtest"):
        print(f"{command}: dask/local speed-up {timing[(command, 'local')] / timing[(command, 'dask')]:.2f}x")
    for engine in ("local", "dask"):
        print(f"every structure / straddle backtest ({engine}): "
              f"{timing[('structures', engine)] / timing[('backtest', engine)]:.2f}x")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", default="2025-11-20")
    parser.add_argument("--end", default="2026-11-20")
    parser.add_argument("--universe", type=int, default=500)
    parser.add_argument("--daily-universe", type=int, default=5000, help="universe of the one-date daily run")
    parser.add_argument("--keep", action="store_true", help="keep the local run's data root (its path goes to stderr)")
    args = parser.parse_args(argv)
    bench_daily(args.end, args.daily_universe)
    bench(args.start, args.end, args.universe, args.keep)


if __name__ == "__main__":
    main()
