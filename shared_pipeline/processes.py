"""Leaving a process cleanly: the servers and clusters it started stop in its atexit hooks."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def exit_on_sigterm() -> None:
    """SIGTERM's default action skips atexit, where servers and clusters are stopped: exit
    through it instead (from the main thread only, and never over a handler set before).
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(
        signal.SIGTERM
    ) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
