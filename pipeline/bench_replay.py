"""Benchmark of replay and backtest over a range of sessions: ``make bench`` (second table).

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


def _timed(args: list[str]) -> tuple[float, float]:
    """(seconds, peak MiB) of one command; the peak is measured in a fresh child of this one."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", probe, *args], check=True, capture_output=True, text=True).stdout
    seconds, peak = out.split()
    return float(seconds), float(peak)


def bench(start: str, end: str, universe: int) -> None:
    pipeline = [str(Path(sys.executable).parent / "pipeline")]
    rows = []
    for engine in ("local", "dask"):
        root = Path(tempfile.mkdtemp(prefix=f"bench-{engine}-"))
        config = root / "config.yaml"
        config.write_text(f"synthetic:\n  universe_size: {universe}\n")
        common = ["--data-dir", str(root), "--config", str(config)]
        for command in ("replay", "backtest"):
            seconds, peak = _timed([*pipeline, command, *common, "--start", start, "--end", end, "--engine", engine])
            rows.append((command, engine, seconds, peak))
        shutil.rmtree(root, ignore_errors=True)
    print(f"replay and backtest, {universe} tickers, {start} .. {end}")
    print(f"{'command':10}{'engine':>8}{'seconds':>10}{'peak MiB':>10}")
    for command, engine, seconds, peak in rows:
        print(f"{command:10}{engine:>8}{seconds:>10.1f}{peak:>10.0f}")
    timing = {(c, e): s for c, e, s, _ in rows}
    for command in ("replay", "backtest"):
        print(f"{command}: dask/local speed-up {timing[(command, 'local')] / timing[(command, 'dask')]:.2f}x")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", default="2025-11-20")
    parser.add_argument("--end", default="2026-11-20")
    parser.add_argument("--universe", type=int, default=500)
    args = parser.parse_args(argv)
    bench(args.start, args.end, args.universe)


if __name__ == "__main__":
    main()
