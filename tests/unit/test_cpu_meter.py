"""benchmarks.common.CpuMeter: the cores a group of local processes used over a window."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks.common import CpuMeter, children, cpu_seconds


def test_a_busy_process_counts_and_a_sleeping_one_does_not() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(30)"],
                               stdout=subprocess.PIPE, text=True)
    try:
        meter = CpuMeter({"busy": lambda: {os.getpid()}, "sleeping": lambda: {sleeper.pid}, "none": set})
        assert sleeper.stdout.readline() == "ready\n"  # its start-up (imports) happens before the window
        meter.start()
        assert meter.started
        deadline = time.monotonic() + 0.5
        spins = 0
        while time.monotonic() < deadline:
            spins += 1
        used = meter.stop()
    finally:
        sleeper.kill()
        sleeper.wait()
    # one thread spinning: at most one core (plus a clock tick of slack), well above nothing even
    # on a busy machine
    assert 0.2 < used["busy"] <= 1.1
    assert used["sleeping"] < 0.1
    assert used["none"] == 0.0
    assert spins > 0


def test_gone_processes_and_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in children(os.getpid())
        assert cpu_seconds(child.pid) is not None
    finally:
        child.kill()
        child.wait()
    assert cpu_seconds(child.pid) is None  # reaped: no /proc entry
    assert child.pid not in children(os.getpid())
