"""Run the pipeline CLI and SIGKILL it at the N-th atomic write (test helper, not a test).

usage: python tests/crash_helper.py MODE N [--hold SECONDS] -- <pipeline args...>
MODE "mid": die after the temporary file is complete, before it is renamed into place.
MODE "after": die right after the N-th rename (a stage or dataset boundary).
MODE "hold": sleep SECONDS inside the first write (to hold the data-root lock), then go on.
"""
import os
import signal
import sys
import time

import pipeline.contract.store as store

mode, target = sys.argv[1], int(sys.argv[2])
args = sys.argv[sys.argv.index("--") + 1:]
hold = float(sys.argv[sys.argv.index("--hold") + 1]) if "--hold" in sys.argv else 0.0
original = store.atomic_write_bytes
count = 0


def dying_write(path, write):
    global count
    count += 1
    if mode == "hold" and count == 1:
        print("holding", flush=True)
        time.sleep(hold)
    if mode == "mid" and count == target:
        def write_then_die(tmp):
            write(tmp)
            os.kill(os.getpid(), signal.SIGKILL)
        return original(path, write_then_die)
    original(path, write)
    if mode == "after" and count == target:
        os.kill(os.getpid(), signal.SIGKILL)


store.atomic_write_bytes = dying_write
for module in list(sys.modules.values()):
    if getattr(module, "atomic_write_bytes", None) is original:
        module.atomic_write_bytes = dying_write

from pipeline.driver.cli import main  # noqa: E402  (after the patch, so every importer sees it)
import pipeline.views.report, pipeline.driver.runlog  # noqa: E402,F401

for module in (pipeline.views.report, pipeline.driver.runlog):
    module.atomic_write_bytes = dying_write
sys.argv = ["pipeline", *args]
main()
