"""Whether a process is gone: for the tests that no server or worker outlives its parent."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from shared_pipeline.processes import alive

__all__ = ["alive", "processes_mentioning", "wait_gone", "wait_gone_all"]


def wait_gone(pid: int, limit_s: float = 15.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def _environ_mentions(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return False


def processes_mentioning(marker: Path) -> list[int]:
    """Running processes whose environment names `marker` (services, Chromium, their children)."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [
        p for p in pids if p != os.getpid() and alive(p) and _environ_mentions(p, bytes(marker))
    ]


def wait_gone_all(marker: Path, limit_s: float = 15.0) -> bool:
    deadline = time.monotonic() + limit_s
    while processes_mentioning(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def ctrl_c_as_in_a_terminal() -> None:
    """In a child, before exec: SIGINT handled as in a terminal's foreground job. A job started
    in the background by a shell (`cmd &`) inherits SIGINT ignored, and so would the child.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
