"""Run the pipeline CLI and send it SIGNAL at the N-th atomic write, after the temporary file is
complete and before it is renamed into place (test helper, not a test).

usage: python tests/signal_helper.py SIGINT|SIGTERM N -- <pipeline args...>
"""
import os
import signal
import sys

import pipeline.contract.store as store

signum, target = signal.Signals[sys.argv[1]], int(sys.argv[2])
args = sys.argv[sys.argv.index("--") + 1:]
original = store.atomic_write_bytes
count = 0


def signalled_write(path, write):
    global count
    count += 1
    if count != target:
        return original(path, write)

    def write_then_signal(tmp):
        write(tmp)
        os.kill(os.getpid(), signum)        # delivered to the main thread: raises there
    return original(path, write_then_signal)


store.atomic_write_bytes = signalled_write
from pipeline.driver.cli import main  # noqa: E402
import pipeline.views.report, pipeline.driver.run, pipeline.driver.runlog  # noqa: E402,F401

for module in list(sys.modules.values()):
    if getattr(module, "atomic_write_bytes", None) is original:
        module.atomic_write_bytes = signalled_write
sys.argv = ["pipeline", *args]
main()
