"""The kill -9 of the `killed` fault: from outside, the process the steps' attempt log names for a
killed attempt (or the one its runtime says runs it) gets SIGKILL as soon as the attempt begins.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from shared_pipeline.faults import read_attempt_log
from shared_pipeline.faults_plan import FaultKind
from shared_pipeline.records import Kill

# Which process to kill for a step attempt's pid, and what that process is: an adapter may name
# another one (the supervisor of Airflow's task process).
Target = Callable[[int], tuple[int, str]]
POLL_S = 0.05  # the killed attempt waits for the kill up to the hang cap: 100 times this


def the_step_process(pid: int) -> tuple[int, str]:
    return pid, "the process running the step"


def parent_of(pid: int) -> int:
    """The parent pid, from /proc (the field after the command name, which may hold spaces)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


class Killer:
    """While open, kills the target of every `killed` attempt of flow run `run` once; `kills`
    says what it killed and when.
    """

    def __init__(self, run_dir: str | Path, run: int, target: Target = the_step_process) -> None:
        self.run_dir, self.run, self.target = run_dir, run, target
        self.kills: list[Kill] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="killer", daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        done: set[tuple[str, int]] = set()
        while not self._stop.wait(POLL_S):
            for entry in read_attempt_log(self.run_dir, self.run):
                task = f"{entry['step']}[{entry['key']}]" if entry["key"] else entry["step"]
                due = entry["fault"] == FaultKind.KILLED and entry["ended"] is None
                if not due or (task, entry["attempt"]) in done:
                    continue
                done.add((task, entry["attempt"]))
                pid, what = self.target(entry["pid"])
                os.kill(pid, signal.SIGKILL)
                self.kills.append(
                    Kill(
                        task=task,
                        attempt=entry["attempt"],
                        step_pid=entry["pid"],
                        pid=pid,
                        what=what,
                        at=datetime.now(UTC),
                    )
                )
