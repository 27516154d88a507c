"""A local HTTP sink for the engines' own notifications (webhooks): every request it receives is
one JSON line in a file, with when it arrived and from which process.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from shared_pipeline.services import HOST


def _sender(port: int) -> int | None:
    """The pid holding the client end of a loopback connection (from /proc/net/tcp)."""
    wanted = f":{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        inodes |= {line.split()[9] for line in lines if line.split()[1].endswith(wanted)}
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                link = str(fd.readlink()) if fd.is_symlink() else ""
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(fd_dir.parent.name)
        except OSError:
            continue
    return None


def _group(pid: int | None) -> int | None:
    try:
        return os.getpgid(pid) if pid is not None else None
    except ProcessLookupError:
        return None


class WebhookSink:
    """Receives POSTs on a free loopback port (a thread of this process) into `log`."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.receive(self.path, body, self.client_address[1])
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the file is the record

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self._server.server_address[1]}/notify"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()

    def start(self) -> WebhookSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def receive(self, path: str, body: bytes, client_port: int) -> None:
        text = body.decode(errors="replace")
        try:
            payload: Any = json.loads(text)
            if isinstance(payload, str):  # some engines send their JSON as a quoted string
                payload = json.loads(payload)
        except ValueError:
            payload = text
        pid = _sender(client_port)
        line = {
            "received_at": datetime.now(UTC).isoformat(),
            "path": path,
            "sender_pid": pid,
            # Its process group, while it still runs: which service it belongs to (the sender may
            # be a short-lived child of one, gone by the time anyone asks).
            "sender_group": _group(pid),
            "payload": payload,
        }
        with self._lock, self.log.open("a") as f:
            f.write(json.dumps(line) + "\n")


def received(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def wait_for(log: Path, match: Any, limit_s: float) -> list[dict[str, Any]]:
    """The requests in `log` for which `match(request)` holds, once there is one (or the limit)."""
    deadline = time.monotonic() + limit_s
    while True:
        found = [r for r in received(log) if match(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
