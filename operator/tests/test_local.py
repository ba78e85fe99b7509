"""Units of the local applier that need a process but not a line."""

from __future__ import annotations

import subprocess
import time

from plantline.operator.local import exited


def test_a_process_has_exited_once_it_ended_even_before_it_is_reaped() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert not exited(proc.pid)
        proc.kill()
        deadline = time.monotonic() + 10
        while not exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert exited(proc.pid)  # a zombie: ended, not yet reaped
        assert proc.poll() is not None
    finally:
        proc.kill()
        proc.wait()
    assert exited(proc.pid)
