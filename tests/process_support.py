"""Whether a process is gone: for the tests that no server or worker outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def interrupted_midway(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    until: Callable[[subprocess.Popen], Any],
    limit_s: float,
) -> tuple[subprocess.Popen, Any, str]:
    """Run `argv` as a terminal's foreground job, Ctrl-C it once `until(process)` returns (it
    raises AssertionError if that never comes), and wait at most `limit_s` for it to end: the
    process, what `until` returned, and its output (cwd/run.log).
    """
    log_path = cwd / "run.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's foreground job: Ctrl-C signals this group
            preexec_fn=ctrl_c_as_in_a_terminal,
        )
        try:
            try:
                seen = until(process)
            except AssertionError as exc:
                raise AssertionError(f"{exc}:\n{log_path.read_text()[-3000:]}") from exc
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=limit_s)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    return process, seen, log_path.read_text()


def ctrl_c_as_in_a_terminal() -> None:
    """In a child, before exec: SIGINT handled as in a terminal's foreground job. A job started
    in the background by a shell (`cmd &`) inherits SIGINT ignored, and so would the child.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
