"""Whether a process is gone: for the tests that no server or worker outlives its parent."""

from __future__ import annotations

import time

from shared_pipeline.processes import alive

__all__ = ["alive", "wait_gone"]


def wait_gone(pid: int, limit_s: float = 15.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False
