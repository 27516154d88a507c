"""Each engine's own UI over the state its deployed session left: the runs that matter shot with
Chromium, each shot kept only if its page's text shows the run and its task states.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from shared_pipeline import chromium
from shared_pipeline.engine_table import UIS
from shared_pipeline.headroom import over
from shared_pipeline.loading import load_module
from shared_pipeline.processes import exit_on_sigterm
from shared_pipeline.records import record_path

# Scenario -> which flow run of its record to show (0 the first, -1 the last), and what it shows.
SHOTS = {
    "db_down": (0, "a dead database"),
    "api_down": (0, "the fallback while the enrichment API is down"),
    "fanout_partial": (0, "a failed fan-out branch"),
    "resume_after_fix": (-1, "the resumed run, after the fix"),
    "worker_killed": (0, "a killed worker"),
}
SCREENSHOTS = Path("docs/report/screenshots")
MANIFESTS = Path("results/ui")


@dataclass(frozen=True)
class Page:
    path: str  # on the UI's server, with its query
    texts: tuple[str, ...]  # what its text must contain


@dataclass(frozen=True)
class RunPages:
    """Where an engine's UI shows one run: its page (the shot), and any page that holds what
    the run's page cannot show in its DOM (Prefect 2.x draws its task runs on a canvas only).
    """

    run_id: str
    run_name: str
    page: Page
    more: tuple[Page, ...] = ()


class EngineUI(Protocol):
    """An engine's UI server over a deployed session's state (prefect2/ui.py, airflow/ui.py).

    `find` raises LookupError (saying why) when the engine's store has no such run.
    """

    version: str
    label: str  # which UI, for a caption: "Prefect 3.9.1 server UI (its v2 UI)"

    def state(self, services: Path) -> Path: ...
    def start(self, services: Path, scratch: Path) -> str: ...
    def stop(self) -> None: ...
    def find(self, base: str, record: dict[str, Any], run: int) -> RunPages: ...


def call(url: str, body: dict[str, Any] | None = None) -> Any:
    """An API's JSON answer: GET, or POST of `body`."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=over(2)) as answer:
        return json.loads(answer.read())


def engine_ui(engine: str) -> EngineUI:
    target, name = UIS[engine].split(":")
    return getattr(load_module(target), name)(engine)


def take_shots(
    engine: str, checkout: Path, out: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Shoot each of SHOTS' runs that `checkout`'s records name and its left state holds: PNGs
    under `out`/docs/report/screenshots, the manifest `out`/results/ui/<engine>.json (returned).
    """
    exit_on_sigterm()  # SIGTERM through the finally clauses that stop the server and Chromium
    ui = engine_ui(engine)
    services = checkout / "runs" / engine / ".services"
    if not ui.state(services).exists():
        raise FileNotFoundError(f"no state of {engine} in {services}: run its deployed session")
    scratch = out / "runs" / "ui" / engine
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    (out / SCREENSHOTS).mkdir(parents=True, exist_ok=True)
    shots: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    try:
        base = ui.start(services, scratch)
        for scenario, (run, shows) in SHOTS.items():
            try:
                pages = ui.find(base, _record(checkout, engine, scenario, run), run)
            except LookupError as why:
                log(f"{engine} {scenario}: no shot: {why.args[0]}")
                skipped.append({"scenario": scenario, "why": why.args[0]})
                continue
            shot = _shoot(base, pages, out / SCREENSHOTS / f"{engine}-{scenario}.png", scratch)
            shots.append({"scenario": scenario, "shows": shows, **shot})
            log(f"{engine} {scenario}: {shot['png']}, {shot['png_bytes']:,} bytes, ok {shot['ok']}")
    finally:
        ui.stop()
    manifest = {
        "engine": engine,
        "engine_version": ui.version,
        "ui": ui.label,
        "chromium": chromium.version(),
        "window": f"{chromium.WINDOW[0]}x{chromium.WINDOW[1]}",
        "state": services.relative_to(checkout).as_posix(),
        "shots": [{**s, "png": _relative(s["png"], out)} for s in shots],
        "skipped": skipped,
    }
    _drop_stale_pngs(out, engine, {s["png"] for s in manifest["shots"] if s["ok"]})
    path = out / MANIFESTS / f"{engine}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _record(checkout: Path, engine: str, scenario: str, run: int) -> dict[str, Any]:
    """The scenario's record, if it has flow run `run`. Read as JSON, not validated: a record of
    a newer schema still names its runs.
    """
    path = record_path(checkout / "results", engine, scenario)
    if not path.exists():
        raise LookupError(f"no record {path.relative_to(checkout)} yet")
    record = json.loads(path.read_text())
    if not -len(record["runs"]) <= run < len(record["runs"]):
        raise LookupError(f"{path.relative_to(checkout)} has {len(record['runs'])} flow runs")
    return record


# Where a page was, in a manifest: the UI's address (a fresh loopback port each session) stands
# as this placeholder, so a manifest names no address or path of the machine that shot it.
UI = "<ui>"


def _shoot(base: str, pages: RunPages, png: Path, scratch: Path) -> dict[str, Any]:
    """The run's page shot and checked, and the other pages checked; a shot that fails its
    check stays in the scratch folder, never in the report's folder.
    """
    taken_at = datetime.now(UTC).isoformat()
    trial = scratch / png.name
    checks, title = [], ""
    for number, page in enumerate((pages.page, *pages.more)):
        target = trial if number == 0 else scratch / f"{png.stem}-{number}.png"
        dom = chromium.load(base + page.path, target, scratch, f"{png.stem}-{number}")
        text = chromium.page_text(dom)
        title = title or chromium.page_title(dom)
        checks += [{"page": UI + page.path, "text": t, "found": t in text} for t in page.texts]
    ok = all(c["found"] for c in checks)
    if ok:
        shutil.move(trial, png)
    return {
        "run_id": pages.run_id,
        "run_name": pages.run_name,
        "url_path": UI + pages.page.path,
        "title": title,
        "png": png if ok else trial,
        "png_bytes": (png if ok else trial).stat().st_size,
        "checks": checks,
        "ok": ok,
        "taken_at": taken_at,
    }


def _relative(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def _drop_stale_pngs(out: Path, engine: str, kept: set[str]) -> None:
    """This engine's older shots the new manifest does not list (a run gone, a failed check)."""
    for png in (out / SCREENSHOTS).glob(f"{engine}-*.png"):
        if _relative(png, out) not in kept:
            png.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", required=True, choices=list(UIS))
    parser.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--out", type=Path, help="where the shots go (default: the checkout)")
    args = parser.parse_args(argv)
    checkout = args.checkout.resolve()
    try:
        manifest = take_shots(args.engine, checkout, (args.out or checkout).resolve())
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 2
    return 0 if all(shot["ok"] for shot in manifest["shots"]) else 1


if __name__ == "__main__":
    sys.exit(main())
