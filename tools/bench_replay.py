"""Benchmark of a large-universe ``daily`` and of replay and backtest over a range of sessions:
``make bench`` (the tables after the compute stages).

Each command runs as a subprocess on a fresh data root, so its wall time includes start-up and
its peak memory is the largest resident set of the command or any process it started (a dask
worker included), read from ``getrusage(RUSAGE_CHILDREN)``.

``--baseline REV`` measures a change instead: the same daily, local replay and backtest of a git
revision (checked out in a temporary worktree) and of this checkout, one after the other in one
run, with the ratios.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from pipeline.contract.layout import Layout


def _timed(args: list[str], env: dict | None = None) -> tuple[float, float]:
    """(seconds, peak MiB) of one command; the peak is measured in a fresh child of this one."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", probe, *args], check=True, capture_output=True, text=True,
                         env=env).stdout
    seconds, peak = out.split()
    return float(seconds), float(peak)


def _universe_root(prefix: str, universe: int) -> tuple[Path, list[str]]:
    """A fresh data root whose config sets the universe, and the options naming both."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    config = Layout(root).config_file
    config.write_text(f"synthetic:\n  universe_size: {universe}\n")
    return root, ["--data-dir", str(root), "--config", str(config)]


def _run(start: str, end: str, universe: int, engine: str, keep: bool = False) -> list[tuple]:
    """Replay then backtest of [start, end] on a fresh data root:
    (command, engine, seconds, peak MiB of any process, largest dask worker peak MiB or NaN)."""
    pipeline = Code.installed().command
    root, common = _universe_root(f"bench-{engine}-", universe)
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


def _daily(date: str, universe: int, *flags: str, code: "Code | None" = None) -> tuple[float, float]:
    """``pipeline daily`` of one date on a fresh data root: (seconds, peak MiB); ``code``: the
    pipeline to run (default this checkout's)."""
    code = code or Code.installed()
    root, common = _universe_root("bench-daily-", universe)
    try:
        return _timed([*code.command, *common, "daily", "--date", date, *flags], code.env)
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Code:
    """The pipeline a benchmark runs: this checkout's installed command, or a git revision's
    source in a worktree of its own (its entry point read from its pyproject), run by this
    interpreter with the worktree first on the import path."""

    def __init__(self, command: list[str], env: dict | None = None, label: str = "this checkout"):
        self.command, self.env, self.label = command, env, label

    @classmethod
    def installed(cls) -> "Code":
        repo = Path(__file__).resolve().parents[1]
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True).stdout.strip()
        label = f"this checkout ({head}{' with uncommitted changes' if changed else ''})" if head else "this checkout"
        return cls([str(Path(sys.executable).parent / "pipeline")], label=label)

    @classmethod
    def revision(cls, ref: str, folder: Path) -> "Code":
        repo = Path(__file__).resolve().parents[1]
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(folder), ref], check=True)
        entry = tomllib.loads((folder / "pyproject.toml").read_text())["project"]["scripts"]["pipeline"]
        module, function = entry.split(":")
        start = f"import sys; sys.argv[0] = 'pipeline'; from {module} import {function}; sys.exit({function}())"
        env = {**os.environ, "PYTHONPATH": str(folder)}
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", ref], check=True,
                                capture_output=True, text=True).stdout.strip()
        # -P: the current folder (perhaps this checkout) must not shadow the worktree on the import path.
        return cls([sys.executable, "-P", "-c", start], env, f"{ref} ({commit})")

    @staticmethod
    def remove(folder: Path) -> None:
        repo = Path(__file__).resolve().parents[1]
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(folder)], check=False)


def _local_year(start: str, end: str, universe: int, code: Code) -> dict[str, float]:
    """Seconds of a local replay of [start, end], then of its straddle backtest, on a fresh data root."""
    root, common = _universe_root("bench-compare-", universe)
    try:
        span = ["--start", start, "--end", end, "--engine", "local"]
        return {command: _timed([*code.command, command, *common, *span], code.env)[0]
                for command in ("replay", "backtest")}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def compare(ref: str, start: str, end: str, universe: int, daily_universe: int, daily_pairs: int = 3) -> None:
    """Before (the revision ``ref``) and after (this checkout) in one run: the daily of
    ``daily_universe`` names (CSV), ``daily_pairs`` times each, before and after in turn (a few
    seconds each: the median of each side and of the pairs' ratios, so the machine's drift cancels),
    then the local replay of [start, end] and its backtest at ``universe``, once each."""
    import statistics

    folder = Path(tempfile.mkdtemp(prefix="bench-baseline-")) / "src"
    before = Code.revision(ref, folder)
    after = Code.installed()
    codes = {"before": before, "after": after}
    try:
        daily = [{label: _daily(end, daily_universe, "--no-html", code=code)[0] for label, code in codes.items()}
                 for _ in range(daily_pairs)]
        times = {label: {"daily": statistics.median(pair[label] for pair in daily),
                         **_local_year(start, end, universe, code)} for label, code in codes.items()}
    finally:
        Code.remove(folder)
    ratios = {key: times["after"][key] / times["before"][key] for key in ("replay", "backtest")}
    ratios["daily"] = statistics.median(pair["after"] / pair["before"] for pair in daily)
    print(f"before: {before.label}; after: {after.label}")
    print(f"{'run':52}{'before s':>10}{'after s':>10}{'after/before':>14}")
    for key, label in (("daily", f"daily, {daily_universe} tickers, {end} (CSV), median of {daily_pairs}"),
                       ("replay", f"replay {start}..{end}, {universe} tickers, local"),
                       ("backtest", "backtest of that range, local")):
        print(f"{label:52}{times['before'][key]:>10.1f}{times['after'][key]:>10.1f}{ratios[key]:>14.2f}")


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
    parser.add_argument("--baseline", metavar="REF",
                        help="instead: before (git revision REF) and after (this checkout) of the daily, the local "
                             "replay and its backtest, one after the other in this run")
    args = parser.parse_args(argv)
    if args.baseline:
        compare(args.baseline, args.start, args.end, args.universe, args.daily_universe)
        return
    bench_daily(args.end, args.daily_universe)
    bench(args.start, args.end, args.universe, args.keep)


if __name__ == "__main__":
    main()
