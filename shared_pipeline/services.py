"""Engine services (API servers, workers, schedulers) as subprocesses on loopback: each started on
a fresh port, waited for by its health endpoint, and stopped at close, at exit, on SIGTERM and on
SIGINT, with whatever it started (its own process group).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from shared_pipeline.processes import exit_on_sigterm

HOST = "127.0.0.1"
_RUNNING: list[Service] = []
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A port nobody listens on now (the service binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # Linux: SIGTERM the service if the process that started it dies without stopping it.
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ServiceError(RuntimeError):
    """A service exited or never became healthy; the message ends with its log's last lines."""


class Service:
    """One long-running command of an engine (`prefect server start`, `airflow scheduler`)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        health: str | None = None,
    ) -> None:
        self.name, self.argv, self.env, self.log, self.health = name, list(argv), env, log, health
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, ready_s: float) -> Service:
        """Start it and wait (at most `ready_s`) until its health endpoint answers 200."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=dict(self.env),
                cwd=self.log.parent,  # nothing lands in the caller's current directory
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one
                preexec_fn=_die_with_parent,
            )
        _remember(self)
        # Beside its log: which processes to look for, for whoever checks that none is left.
        self.log.with_suffix(".pid").write_text(str(self.process.pid))
        if self.health is not None:
            self.wait_healthy(ready_s)
        return self

    def wait_healthy(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while True:
            if self.process is None or self.process.poll() is not None:
                raise ServiceError(f"{self.name} exited before it was healthy{self._tail()}")
            try:
                with urllib.request.urlopen(self.health, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise ServiceError(f"{self.name} not healthy after {limit_s:.0f} s{self._tail()}")
            time.sleep(0.2)

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM its process group; SIGKILL whatever is left after `grace_s`."""
        process, self.process = self.process, None
        if self in _RUNNING:
            _RUNNING.remove(self)
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(grace_s)
                _wait_group_gone(process.pid, grace_s)
                break
            except (subprocess.TimeoutExpired, TimeoutError):
                continue
        process.wait()

    def _tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return ":\n" + "\n".join(text.splitlines()[-lines:]) if text else ""


def _wait_group_gone(pgid: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"process group {pgid} still has processes")
        time.sleep(0.1)


def _remember(service: Service) -> None:
    if not _RUNNING:
        atexit.register(stop_all)
        exit_on_sigterm()  # SIGTERM goes through atexit; SIGINT does already (KeyboardInterrupt)
    _RUNNING.append(service)


def stop_all() -> None:
    """Every service this process started, the last started first."""
    while _RUNNING:
        _RUNNING[-1].stop()


def service_of(folder: Path, group: int | None) -> str | None:
    """Which of the services logged in `folder` a process group is: each service is a group of
    its own, led by the pid beside its log ("server" for server.pid).
    """
    leaders = {int(p.read_text()): p.stem for p in folder.glob("*.pid")}
    return leaders.get(group) if group is not None else None
