"""The engines' own UIs as screenshots under a lesson: Markdown read off the manifests that
`nox -s ui` writes (results/ui/<engine>.json), only for shots whose page showed their run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MANIFESTS = Path("results/ui")


def screenshot_lines(root: Path, scenario: str, page_dir: Path | None = None) -> list[str]:
    """Each engine's shot of `scenario` as an image and its caption, image paths relative to
    `page_dir` (the folder of the page they go in; the root, for REPORT.md). None: no lines.
    """
    lines: list[str] = []
    for manifest in _manifests(root):
        for shot in manifest["shots"]:
            if shot["scenario"] != scenario or not shot["ok"]:
                continue
            png = Path(os.path.relpath(root / shot["png"], page_dir or root)).as_posix()
            image = f"![{manifest['ui']}: {shot['run_name']}]({png})"
            lines += [image, "", _caption(manifest, shot), ""]
    return lines


def thumbnail_lines(
    root: Path, scenario: str, page: str, page_dir: Path | None = None
) -> list[str]:
    """The shots of `scenario` side by side (a line of images, a line that names the UIs and
    sends the reader to `page`, where `screenshot_lines` gives each its caption), image paths
    relative to `page_dir` (as in `screenshot_lines`).
    """
    shots = [
        (manifest, shot)
        for manifest in _manifests(root)
        for shot in manifest["shots"]
        if shot["scenario"] == scenario and shot["ok"]
    ]
    if not shots:
        return []
    width = f"{96 // len(shots)}%"
    images = "".join(
        f'<img src="{Path(os.path.relpath(root / shot["png"], page_dir or root)).as_posix()}" '
        f'width="{width}" alt="{manifest["ui"]}">'
        for manifest, shot in shots
    )
    uis = ", ".join(manifest["ui"] for manifest, _ in shots)
    return [
        images,
        f"*{scenario} in the engines' own UIs ({uis}), over the state the deployed runs left, "
        f"each page checked to show the run and its tasks' states: [captions]({page}#ui).*",
    ]


def _manifests(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((root / MANIFESTS).glob("*.json"))]


def _caption(manifest: dict[str, Any], shot: dict[str, Any]) -> str:
    source = (MANIFESTS / f"{manifest['engine']}.json").as_posix()
    others = len({c["page"] for c in shot["checks"]} - {shot["url_path"]})
    # A UI may hold a run's task states where its DOM cannot be read (a canvas): then the shot
    # was checked on the pages of those tasks too.
    where = f"it and {others} page(s) of its tasks showed" if others else "it showed"
    return (
        f"*{manifest['ui']}, run `{shot['run_name']}` ({shot['scenario']}: {shot['shows']}), over "
        f"the state its deployed session left: {where} the run, its state and its tasks' states "
        f"({len(shot['checks'])} texts checked, `{source}`).*"
    )
