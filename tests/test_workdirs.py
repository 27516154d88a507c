"""Templates are built once however many processes ask at the same time; each process gets an
engine home of its own, and the homes of ended processes are removed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from shared_pipeline.workdirs import build_once, database_from_cli, process_home

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
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    stale = tmp_path / ended.stdout.strip()
    stale.mkdir()
    (stale / "prefect.db").write_text("left by an ended process")
    mine = tmp_path / str(os.getpid())
    mine.mkdir()
    (mine / "old").write_text("from an earlier process with this pid")

    home = process_home(tmp_path)

    assert home == mine
    assert list(home.iterdir()) == []
    assert not stale.exists()
