"""What several processes of one session share (`pytest -n 2` runs two): templates built once
under a file lock, a service one of them runs for all, and an engine home of its own for each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """`target`, made by `build(tmp)` the first time any process asks; the others wait for it.

    `build` writes a file or a directory at `tmp`, a path of its own beside `target`, which
    then replaces `target` in one rename: nobody ever sees a half-built template.
    """
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.with_name(f"{target.name}.lock")):
        if not target.exists():
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            _remove(tmp)
            try:
                build(tmp)
                tmp.replace(target)
            finally:
                _remove(tmp)
    return target


def database_from_cli(
    target: Path, command: list[str], env: Callable[[Path], dict[str, str]], name: str
) -> Path:
    """`target`, built once: the engine's own CLI (`command`, e.g. a migration) run with
    `env(home)` in a scratch home and folder of its own, whose database file `name` is kept.
    """

    def build(tmp: Path) -> None:
        home = tmp.with_suffix(".home")
        _remove(home)
        home.mkdir()
        try:
            subprocess.run(
                command,
                env=env(home),
                cwd=home,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            (home / name).replace(tmp)
        finally:
            _remove(home)

    return build_once(target, build)


class SharedService:
    """A service (a cluster, a server) that the processes of one session share (`pytest -n 2`
    runs two): the first to join starts it, the others use its address, and the one that
    started it stops it once every other user has left or ended. A file lock orders them.
    """

    def __init__(self, folder: Path) -> None:
        self.users = folder / "users"
        self.users.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(folder / "lock")
        self._state = folder / "service.json"
        self.owner = False

    def join(self, start: Callable[[], str]) -> str:
        """The running service's address; if none runs (or its owner has ended), `start()`'s,
        and this process owns it.
        """
        with self._lock:
            state = json.loads(self._state.read_text()) if self._state.exists() else None
            if state is not None and _alive(state["owner"]):
                address = state["address"]
            else:
                address = start()
                self._state.write_text(json.dumps({"address": address, "owner": os.getpid()}))
                self.owner = True
            (self.users / str(os.getpid())).touch()
        return address

    def leave(self, stop: Callable[[], None]) -> None:
        """Leave; the owner first waits for the other users to leave or end, then `stop()`s.

        No clock: a user still at work keeps the service (beside another nox session, one test
        worker finished 10 minutes before the other, which a 600 s wait cut off); a stuck one is
        ended by pytest's own timeout.
        """
        (self.users / str(os.getpid())).unlink(missing_ok=True)
        if not self.owner:
            return
        while True:
            with self._lock:
                others = [p for p in self.users.iterdir() if _alive(int(p.name))]
                if not others:
                    self._state.unlink(missing_ok=True)  # from now on, a newcomer starts its own
                    break
            time.sleep(0.2)
        stop()


def process_home(parent: Path) -> Path:
    """A fresh `parent/<pid>` for this process's engine state; homes of ended processes go."""
    parent.mkdir(parents=True, exist_ok=True)
    for other in parent.iterdir():
        if other.name.isdigit() and not _alive(int(other.name)):
            _remove(other)
    home = parent / str(os.getpid())
    _remove(home)
    home.mkdir()
    return home


def engine_home(
    parent: Path,
    modules: tuple[str, ...],
    env: Callable[[Path], dict[str, str]],
    database: tuple[Path, str] | None = None,
) -> Path:
    """This process's fresh engine home under `parent` (see process_home), with the engine's
    settings `env(home)` in os.environ and a copy of a migrated `database` (template, file name).

    Engines read their settings when first imported: refuses if one of `modules` already is.
    """
    imported = [module for module in modules if module in sys.modules]
    if imported:
        raise RuntimeError(f"{', '.join(imported)} imported before its settings were made")
    home = process_home(parent)
    if database is not None:
        template, name = database
        shutil.copyfile(template, home / name)
    os.environ.update(env(home))
    return home


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's process
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
