"""One run driver for every command (issue 17, item 4): the step registry is the only list of
steps, every command takes the global options after its name, ``replay`` and ``backtest`` run
through :func:`pipeline.driver.run.execute` like ``daily`` (lock, manifest, log, exit codes, Ctrl-C),
and the driver's functions stay short enough to read."""
import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from ops_support import SETTINGS, TODAY, config, fixed_today  # noqa: F401

from pipeline.driver import jobs, steps
from pipeline.driver.cli import GLOBAL_OPTIONS, main
from pipeline.contract.layout import PARTITIONS

pytestmark = pytest.mark.xdist_group("driver")

START, END = "2026-11-09", "2026-11-13"          # replayed; the backtest trades 11-10 .. 11-13
REPO = Path(__file__).resolve().parents[1]
DRIVER_MODULES = ("cli.py", "run.py", "steps.py", "runlog.py")


def after(root, config, command, *args):
    """``pipeline COMMAND ARGS --data-dir ROOT --config CONFIG``: the global options after the command."""
    return CliRunner().invoke(main, [command, *args, "--data-dir", str(root), "--config", str(config)],
                              env={"PIPELINE_TODAY": TODAY})


def manifests(root):
    return [json.loads(p.read_text()) for p in sorted((root / "runs").glob("*.json"))]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, config):
    root = tmp_path_factory.mktemp("driver-replay")
    result = after(root, config, "replay", "--start", START, "--end", END)
    assert result.exit_code == 0, result.output
    return root


# ---- the registry --------------------------------------------------------------------------------

def test_the_registry_names_real_jobs_datasets_and_commands():
    for step in steps.STEPS:
        assert callable(getattr(jobs, step.job)), step
        assert step.span in (steps.DATE, steps.RANGE)
        assert set(step.reads) | set(step.writes) <= set(PARTITIONS), step
        if step.once is not None:
            assert callable(getattr(jobs, step.once[1])) and step.once[0] in step.writes
    # Every dataset a step writes has a step that writes it again; the fetch steps name a vendor.
    assert {steps.writer(d) for s in steps.STEPS for d in s.writes} <= set(steps.NAMES)
    assert steps.FETCH == ("fetch-calendar", "fetch-history", "backfill-prices", "pull-chains")
    commands = {name for name in main.commands if name in steps.BY_NAME}
    assert commands == {s.name for s in steps.STEPS if s.help}
    # Per-date steps before a range step run for every date before it; the rest date by date.
    assert steps.segments(steps.NAMES) == [("date", ["fetch-calendar"]), ("range", ["fetch-history", "backfill-prices"]),
                                           ("date", ["pull-chains", "compute", "report"])]
    assert steps.ordered(["report", "compute", "report"]) == ["compute", "report"]


def test_no_other_module_lists_the_steps():
    text = {p.name: p.read_text() for p in (REPO / "pipeline").rglob("*.py") if p.name != "steps.py"}
    for name, body in text.items():
        assert '"fetch-calendar", "fetch-history"' not in body, name


# ---- thin CLI ------------------------------------------------------------------------------------

def test_every_command_takes_the_global_options_after_its_name():
    for name, command in main.commands.items():
        given = {p.name for p in command.params}
        assert set(GLOBAL_OPTIONS) <= given, name


def test_global_options_after_doctor_explain_and_rank_are_used(replayed, config, tmp_path):
    import csv
    import shutil

    doctor = after(replayed, config, "doctor")
    assert doctor.exit_code == 0, doctor.output
    assert str(replayed) in doctor.output
    ticker = next(csv.DictReader((replayed / "reports" / f"rank_{END}.csv").open()))["ticker"]
    explained = after(replayed, config, "explain", ticker, "--date", END, "--json")
    assert explained.exit_code == 0, explained.output
    assert json.loads(explained.output)["ticker"] == ticker
    root = tmp_path / "data"
    shutil.copytree(replayed, root)
    ranked = after(root, config, "rank", "--date", END, "--no-html")
    assert ranked.exit_code == 0, ranked.output
    assert manifests(root)[-1]["command"] == "rank" and manifests(root)[-1]["dates"] == [END]


def test_the_driver_has_no_function_over_60_lines():
    long = []
    for name in DRIVER_MODULES:
        tree = ast.parse((REPO / "pipeline" / "driver" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - first + 1 > 60:
                    long.append(f"{name}:{node.lineno} {node.name} ({node.end_lineno - first + 1} lines)")
    assert long == []


# ---- replay and backtest through the driver ----------------------------------------------------

def test_replay_and_backtest_leave_a_manifest_and_a_log_like_daily(replayed, config, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(replayed, root)
    (replay,) = [m for m in manifests(root) if m["command"] == "replay"]
    assert replay["exit_status"] == 0 and replay["dates"][0] == START and replay["dates"][-1] == END
    result = after(root, config, "backtest", "--start", "2026-11-10", "--end", END)
    assert result.exit_code == 0, result.output
    (made,) = [m for m in manifests(root) if m["command"] == "backtest"]
    assert made["exit_status"] == 0 and made["dates"] == ["2026-11-10", "2026-11-11", "2026-11-12", END]
    assert [s["stage"] for s in made["stages"]] == ["trades", "write"]
    assert made["report"] == str(root / "reports" / f"backtest_2026-11-10_{END}.csv")
    assert Path(made["backtest"]["files"]["trades"]).parent.parent.name == f"run={made['backtest']['run_id']}"
    assert f"manifest: {root / 'runs'}" in result.output and "equal premium per exit session" in result.output
    logged = "".join(p.read_text() for p in (root / "logs").glob("*.log"))
    assert "backtest: config" in logged and "run backtest as_of=None exit=0" in logged
    assert "run replay as_of=None exit=0" in logged


def test_backtest_and_replay_wait_for_the_lock_like_daily(replayed, config, tmp_path):
    from pipeline.driver.runlog import data_root_lock

    with data_root_lock(replayed, 0):
        for command in (["backtest", "--start", "2026-11-10", "--end", END],
                        ["replay", "--start", START, "--end", "2026-11-16"]):
            held = after(replayed, config, *command, "--wait-lock", "0.2")
            assert held.exit_code == 75, held.output
            assert "another pipeline run holds" in held.output and "waited 0.2s" in held.output
    assert not list((replayed / "reports").glob("backtest*"))


def test_a_refusal_and_an_empty_selection_keep_their_messages_and_leave_a_manifest(replayed, config, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(replayed, root)
    refused = after(root, config, "backtest", "--start", "2026-10-01", "--end", END)
    assert refused.exit_code == 2 and "run `pipeline replay --start 2026-09-30 --end 2026-11-13` first" in refused.output
    none = after(root, config, "backtest", "--start", "2026-11-10", "--end", END, "--min-score", "100")
    assert none.exit_code == 1 and "error: no trade matches the selection (min100)" in none.output
    made = [m for m in manifests(root) if m["command"] == "backtest"]
    assert [m["exit_status"] for m in made] == [2, 1]
    assert "have no stored snapshots" in made[0]["error"] and made[1]["error"].startswith("no trade matches")
    assert not list((root / "reports").glob("backtest*"))


# ---- Ctrl-C and SIGTERM --------------------------------------------------------------------------

# Sends SIGNAL to itself while the backtest works on its second chunk of exit sessions ("trades"),
# or while it writes its first file ("write"), then runs the CLI as a terminal would.
INTERRUPTING = """
import os, signal, sys
from pipeline import backtest
from pipeline.contract import files
from pipeline.driver import run
signum, where = signal.Signals[sys.argv[1]], sys.argv[2]
engine_map, calls = run.map_dates, []
def candidates(settings, exits):
    calls.append(exits)
    if where == "trades" and len(calls) == 2:
        os.kill(os.getpid(), signum)
    return real(settings, exits)
def chunked(task, dates, *args, **kwargs):
    from pipeline.contract.sessions import chunks
    return engine_map(task, chunks([d for c in dates for d in c], 2), *args, **kwargs)
real, backtest.candidates, run.map_dates = backtest.candidates, candidates, chunked
write = files.atomic_write_bytes
def signalled(path, body):
    if where == "write":
        os.kill(os.getpid(), signum)
    return write(path, body)
backtest.atomic_write_bytes = signalled
from pipeline.driver.cli import main
sys.argv = ["pipeline", *sys.argv[3:]]
main()
"""


@pytest.mark.parametrize("name,where", [("SIGINT", "trades"), ("SIGTERM", "trades"), ("SIGINT", "write")])
def test_an_interrupted_backtest_ends_like_a_daily(replayed, config, tmp_path, name, where):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(replayed, root)
    cmd = [sys.executable, "-c", INTERRUPTING, name, where, "--data-dir", str(root), "--config", str(config),
           "backtest", "--start", "2026-11-10", "--end", END]
    died = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PIPELINE_TODAY": TODAY})
    assert died.returncode == {"SIGINT": 130, "SIGTERM": 143}[name], died.stderr[-3000:]
    assert "Traceback" not in died.stderr and "KeyboardInterrupt" not in died.stderr
    errors = [line for line in died.stderr.splitlines() if line.startswith("error:")]
    if where == "trades":
        assert errors == [f"error: backtest interrupted by {name} while working on exit sessions from 2026-11-12; "
                          "nothing was written (outputs are written at the end); rerun the same command"]
        assert not list((root / "reports").glob("backtest*"))
    else:
        assert errors == [f"error: backtest interrupted by {name} while writing its outputs: each file is either "
                          "the previous or the new one; rerun the same command"]
    made = [m for m in manifests(root) if m["command"] == "backtest"][-1]
    assert made["interrupted"] == name and made["exit_status"] == died.returncode
    assert list(root.rglob(".tmp-*")) == []
    rerun = after(root, config, "backtest", "--start", "2026-11-10", "--end", END)     # the lock was released
    assert rerun.exit_code == 0, rerun.output
