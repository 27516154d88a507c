"""Headless Chromium from its command line: one load of a page gives its screenshot and its DOM as
rendered then; and the text a reader sees in that DOM.
"""

from __future__ import annotations

import contextlib
import ctypes
import html
import os
import re
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from shared_pipeline.headroom import over

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: apt-get install chromium
WINDOW = (1400, 900)  # wide enough for a run's header, its graph and the first rows of its tasks
# Chromium's own clock, fast-forwarded while the page idles and held while its requests are in
# flight: the single-page UIs render, ask their API and render again well inside it.
VIRTUAL_TIME_MS = 15_000
# Measured: 2-4 s for a load (screenshot and DOM at once), on the UIs of all three engines.
LOAD_S = 4.0
_PR_SET_PDEATHSIG = 1


class ChromiumError(RuntimeError):
    """Chromium failed to load a page; the message ends with its log's last lines."""


def version() -> str:
    found = subprocess.run(
        [str(CHROMIUM), "--version"], capture_output=True, text=True, check=True, timeout=over(1)
    )
    return found.stdout.strip()


def _die_with_parent() -> None:
    # Linux: Chromium goes too if the process that started it is killed before it can stop it.
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def load(url: str, png: Path, scratch: Path, name: str) -> str:
    """Load `url` once: its screenshot in `png`, its DOM returned. `scratch` holds Chromium's
    profile and HOME (it writes $HOME/.config even with --user-data-dir), its log, its pid.
    """
    home = scratch / "home"
    home.mkdir(parents=True, exist_ok=True)
    argv = [
        str(CHROMIUM),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={scratch / 'chromium-profile'}",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--virtual-time-budget={VIRTUAL_TIME_MS}",
        f"--screenshot={png}",
        "--dump-dom",
        url,
    ]
    dom, log = scratch / f"{name}.html", scratch / f"{name}.log"
    with dom.open("wb") as out, log.open("wb") as err:
        # Its own process group, stopped as one (the browser, its zygote and renderers), also
        # when this process is interrupted: a terminal's Ctrl-C never reaches it directly.
        process = subprocess.Popen(
            argv,
            env={**os.environ, "HOME": str(home)},
            cwd=scratch,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    scratch.joinpath(f"{name}.pid").write_text(str(process.pid))
    try:
        status = process.wait(over(LOAD_S))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    if status != 0 or not png.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise ChromiumError(f"chromium exited {status} on {url}:\n{tail}")
    return dom.read_text(errors="replace")


class _Text(HTMLParser):
    """The text nodes a reader sees: none of <script>, <style> or <template>."""

    HIDDEN = {"script", "style", "template"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in self.HIDDEN

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def page_text(dom: str) -> str:
    """The page's text, one space between nodes: a badge beside a name reads "extract Failed"."""
    parser = _Text()
    parser.feed(dom)
    parser.close()
    return " ".join(" ".join(parser.parts).split())


def page_title(dom: str) -> str:
    found = re.search(r"<title[^>]*>(.*?)</title>", dom, re.S)
    return " ".join(html.unescape(found[1]).split()) if found else ""
