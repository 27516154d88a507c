"""The engine's own UI over the state its deployed session left (the `ui` nox session): each shot
of a run in the store shows that run and its task states, and an interrupted shooting leaves no
server or Chromium behind.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from process_support import interrupted_midway, processes_mentioning, wait_gone, wait_gone_all

from shared_pipeline import chromium
from shared_pipeline.headroom import over
from shared_pipeline.ui import SHOTS, take_shots

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def manifest(engine_name: str, pipeline_out: Path) -> dict[str, Any]:
    """The shots, taken once into the checkout (docs/report/screenshots/, results/ui/)."""
    return take_shots(engine_name, pipeline_out, pipeline_out)


def _shot(manifest: dict[str, Any], scenario: str) -> dict[str, Any]:
    for skipped in manifest["skipped"]:
        if skipped["scenario"] == scenario:
            pytest.skip(f"{scenario}: {skipped['why']}")
    (shot,) = [s for s in manifest["shots"] if s["scenario"] == scenario]
    return shot


@pytest.mark.parametrize("scenario", list(SHOTS))
def test_the_shot_shows_its_run_and_its_task_states(
    manifest: dict[str, Any], pipeline_out: Path, scenario: str
) -> None:
    shot = _shot(manifest, scenario)

    missing = [c for c in shot["checks"] if not c["found"]]
    assert shot["ok"] and not missing, f"{shot['url_path']} lacks {missing}"
    assert shot["run_name"] in shot["checks"][0]["text"], shot["checks"][0]
    png = (pipeline_out / shot["png"]).read_bytes()
    assert png.startswith(PNG)
    assert struct.unpack(">II", png[16:24]) == chromium.WINDOW  # IHDR: width, height
    assert len(png) < 300_000, f"{shot['png']}: {len(png):,} bytes"


def test_a_page_does_not_count_for_another_run(
    manifest: dict[str, Any], pipeline_out: Path
) -> None:
    shots = [s for s in manifest["shots"] if s["ok"]]
    if len(shots) < 2:
        pytest.skip("fewer than two runs shot")
    first, second = shots[0], shots[1]
    scratch = pipeline_out / "runs" / "ui" / manifest["engine"]
    # The DOM Chromium dumped with the first shot, read for the second run's texts.
    text = chromium.page_text((scratch / f"{Path(first['png']).stem}-0.html").read_text())

    assert second["run_name"] not in text
    assert not all(c["text"] in text for c in second["checks"] if c["page"] == second["url_path"])


def _copy_state(pipeline_out: Path, checkout: Path, engine: str) -> None:
    # A copy: this run's server never shares a database with the session's.
    for part in (Path("runs") / engine / ".services", Path("results") / engine):
        shutil.copytree(pipeline_out / part, checkout / part)


def _wait_for_chromium(process: subprocess.Popen[bytes], scratch: Path, limit_s: float) -> int:
    """Until the run has started Chromium on its first page (the server is up by then)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the run ended (status {process.returncode}) before a shot")
        for pid_file in scratch.glob("*-0.pid"):
            if pid := pid_file.read_text():
                return int(pid)
        time.sleep(0.1)
    raise AssertionError(f"no Chromium started within {limit_s:.0f} s")


def test_an_interrupted_shooting_leaves_no_server_or_chromium_behind(
    manifest: dict[str, Any], tmp_path: Path, pipeline_out: Path, engine_name: str
) -> None:
    if not manifest["shots"]:
        pytest.skip("no run of the left state to shoot: nothing to interrupt midway")
    checkout, out, home = tmp_path / "checkout", tmp_path / "out", tmp_path / "home"
    _copy_state(pipeline_out, checkout, engine_name)
    home.mkdir()
    scratch = out / "runs" / "ui" / engine_name
    # The server healthy (18 s at most for Prefect 3.x beside a busy core), then a shot.
    process, browser, text = interrupted_midway(
        [sys.executable, "-m", "shared_pipeline.ui", "--engine", engine_name]
        + ["--checkout", str(checkout), "--out", str(out)],
        tmp_path,
        {**os.environ, "HOME": str(home)},
        lambda process: _wait_for_chromium(process, scratch, over(20)),
        over(3),
    )

    assert process.returncode != 0, f"the run was not interrupted:\n{text[-3000:]}"
    assert "KeyboardInterrupt" in text, text[-3000:]
    assert wait_gone(browser), f"Chromium ({browser}) outlived the interrupted run"
    server = next(scratch.glob("*server.pid"))
    assert wait_gone(int(server.read_text())), f"{server.stem} outlived the interrupted run"
    assert wait_gone_all(tmp_path), f"processes remain: {processes_mentioning(tmp_path)}"
    assert not (out / "results").exists(), "an interrupted run wrote a manifest"
    assert list(home.iterdir()) == [], "the run wrote into HOME"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkout", "home", "out", "run.log"]
