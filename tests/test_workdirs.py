"""Templates are built once however many processes ask at the same time; a shared service is
started by one process, used by the others and stopped after the last; each process gets an
engine home of its own, and the homes of ended processes are removed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from shared_pipeline.workdirs import SharedService, build_once, database_from_cli, process_home

# Asks for the same template as the other processes; the build is slow enough to overlap them.
BUILDER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from shared_pipeline.workdirs import build_once

    target, log = Path(sys.argv[1]), Path(sys.argv[2])

    def build(tmp):
        with log.open("a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(0.5)
        tmp.write_text("template")

    print(build_once(target, build).read_text())
    """
)


def test_processes_asking_at_once_build_the_template_once(tmp_path: Path) -> None:
    target, log = tmp_path / "cache" / "template.db", tmp_path / "builds.log"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(target), str(log)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=60)[0].strip() for process in processes]

    assert outputs == ["template"] * 3
    assert len(log.read_text().split()) == 1
    # Only the template and its lock file remain: no half-built temporary beside it.
    assert sorted(p.name for p in target.parent.iterdir()) == ["template.db", "template.db.lock"]


def test_a_failed_build_leaves_no_template_and_is_retried(tmp_path: Path) -> None:
    target = tmp_path / "template"

    def broken(tmp: Path) -> None:
        tmp.mkdir()
        raise RuntimeError("migration failed")

    try:
        build_once(target, broken)
    except RuntimeError:
        pass
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["template.lock"]
    assert build_once(target, lambda tmp: tmp.write_text("ok")).read_text() == "ok"


def test_a_cli_builds_a_database_in_a_scratch_home_that_then_goes(tmp_path: Path) -> None:
    # An engine's migration command: writes its database into its home, and a file into its
    # current directory (which must be the scratch home too, never the caller's).
    migrate = (
        "import os, pathlib; pathlib.Path(os.environ['ENGINE_HOME'], 'engine.db').write_text"
        "('migrated'); pathlib.Path('engine.log').write_text('')"
    )
    target = tmp_path / "cache" / "engine-1.0.db"

    built = database_from_cli(
        target,
        [sys.executable, "-c", migrate],
        lambda home: {**os.environ, "ENGINE_HOME": str(home)},
        "engine.db",
    )

    assert built == target and target.read_text() == "migrated"
    assert not (Path.cwd() / "engine.log").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "engine-1.0.db",
        "engine-1.0.db.lock",
    ]


def test_each_process_gets_a_fresh_home_and_ended_ones_go(tmp_path: Path) -> None:
    stale = tmp_path / str(_ended_pid())
    stale.mkdir()
    (stale / "prefect.db").write_text("left by an ended process")
    mine = tmp_path / str(os.getpid())
    mine.mkdir()
    (mine / "old").write_text("from an earlier process with this pid")

    home = process_home(tmp_path)

    assert home == mine
    assert list(home.iterdir()) == []
    assert not stale.exists()


# Joins the service in FOLDER (its start would give "second"), says the address, waits until
# GO exists, then leaves and notes when.
USER = textwrap.dedent(
    """
    import pathlib, sys, time
    from shared_pipeline.workdirs import SharedService

    folder, go, left = (pathlib.Path(a) for a in sys.argv[1:4])
    service = SharedService(folder)
    print(service.join(lambda: "second"), service.owner, flush=True)
    while not go.exists():
        time.sleep(0.05)
    left.write_text(str(time.time()))
    service.leave(lambda: None)
    """
)


def _ended_pid() -> int:
    """The pid of a process that has ended."""
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(ended.stdout)


def test_one_process_starts_a_shared_service_and_stops_it_after_the_last_user(
    tmp_path: Path,
) -> None:
    folder, go, left = tmp_path / "service", tmp_path / "go", tmp_path / "left"
    service = SharedService(folder)
    assert service.join(lambda: "first") == "first" and service.owner
    user = subprocess.Popen(
        [sys.executable, "-c", USER, str(folder), str(go), str(left)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert user.stdout is not None
    assert user.stdout.readline().split() == ["first", "False"]  # it used the running one

    stopped: list[float] = []
    go.write_text("")
    service.leave(lambda: stopped.append(time.time()))  # waits for the other user to leave

    assert user.wait(timeout=30) == 0
    assert stopped and stopped[0] >= float(left.read_text())
    # Stopped and forgotten: the next process to join starts a new one.
    assert SharedService(folder).join(lambda: "third") == "third"


def test_a_service_whose_starter_ended_is_started_anew_and_ended_users_are_not_waited_for(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "service"
    folder.mkdir()
    (folder / "service.json").write_text(f'{{"address": "gone", "owner": {_ended_pid()}}}')
    (folder / "users").mkdir()
    (folder / "users" / str(_ended_pid())).touch()  # a user that ended without leaving

    service = SharedService(folder)
    assert service.join(lambda: "new") == "new" and service.owner
    stopped: list[str] = []
    service.leave(lambda: stopped.append("stopped"))
    assert stopped == ["stopped"]
