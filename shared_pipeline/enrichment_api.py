"""Local HTTP enrichment API serving zone congestion, able to fail on cue with real network faults.

Modes (ok, http_503, refuse, hang) are switched synchronously, in-process or via a control port.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from shared_pipeline.zones import zone_congestion

__all__ = [
    "APIStatusError",
    "EnrichmentAPI",
    "Mode",
    "fetch_zone_congestion",
    "get_api_mode",
    "set_api_mode",
]

log = logging.getLogger(__name__)


class APIStatusError(Exception):
    """The API answered with an error status (a real response, e.g. 503 with Retry-After).

    urllib's HTTPError holds the open response and cannot be pickled; engines pickle a failed
    task's exception to persist its state or to send it between processes (Prefect 2.x crashed).
    """

    def __init__(self, url: str, status: int, reason: str, retry_after: str | None = None) -> None:
        super().__init__(url, status, reason, retry_after)
        self.url, self.status, self.reason, self.retry_after = url, status, reason, retry_after

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.reason} from {self.url}"


HOST = "127.0.0.1"
# A path the data server always holds open without answering: a call that blocks, in any mode.
STALL_PATH = "/v1/stall"
_MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# serve_forever() notices shutdown() only between polls: this bounds every mode switch and stop().
_POLL_INTERVAL = 0.02
# How long closing a server waits for its in-flight handlers; keeps stop() well under a second.
_HANDLER_JOIN_TIMEOUT = 0.5
# A client that connects but never sends a full request must not pin a handler thread forever.
_REQUEST_READ_TIMEOUT = 10.0

# The API is always on loopback: never send it through an http_proxy taken from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Mode(StrEnum):
    """How the data server answers; a str, so "refuse" == Mode.REFUSE."""

    OK = "ok"
    HTTP_503 = "http_503"
    REFUSE = "refuse"
    HANG = "hang"
    BAD_BODY = "bad_body"  # 200 OK, and an HTML maintenance page where the JSON should be


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload).encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    """Common plumbing of both servers: JSON replies, logging through `logging`, read timeout."""

    server: _APIServer
    timeout = _REQUEST_READ_TIMEOUT

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = _json_bytes(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes every request to stderr, which floods orchestrator task logs.
        log.debug("%s %s", self.address_string(), format % args)


class _DataHandler(_Handler):
    def do_GET(self) -> None:
        api = self.server.api
        path = urlsplit(self.path).path
        if path == STALL_PATH:
            # Whatever the mode: the request is read, and no byte ever comes back until stop().
            api._stall()
            self.close_connection = True
            return
        mode, release = api._begin_request(path)
        if mode is Mode.HANG:
            # The request has been read in full; hold the connection without sending a byte.
            try:
                release.wait(api.max_hang)
            finally:
                api._end_hang()
            # Then close without any response: the client sees the connection drop.
            self.close_connection = True
        elif mode is Mode.REFUSE:
            # Accepted just before the listener closed: drop it, a refused server never answers.
            self.close_connection = True
        elif mode is Mode.BAD_BODY:
            body = b"<html><body>Down for maintenance</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")  # says JSON, is not
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif mode is Mode.HTTP_503:
            self._reply(
                503,
                {"error": "service unavailable", "mode": str(mode)},
                {"Retry-After": str(api.retry_after)},
            )
        else:
            self._serve(path)

    def _serve(self, path: str) -> None:
        if path == "/health":
            self._reply(200, {"status": "ok"})
        elif path == "/v1/zones":
            months = parse_qs(urlsplit(self.path).query).get("month", [])
            if len(months) != 1 or not _MONTH_RE.match(months[0]):
                self._reply(400, {"error": "query parameter month=YYYY-MM is required"})
                return
            month = months[0]
            zones = [
                {"LocationID": zone, "congestion": value}
                for zone, value in zone_congestion(month).items()
            ]
            self._reply(200, {"month": month, "zones": zones})
        else:
            self._reply(404, {"error": f"unknown path {path}"})


class _ControlHandler(_Handler):
    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/mode":
            self._reply(200, {"mode": str(self.server.api.mode)})
        else:
            self._reply(404, {"error": "unknown path"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/mode":
            self._reply(404, {"error": "unknown path"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            mode = Mode(body["mode"])
        except (ValueError, TypeError, KeyError) as exc:
            valid = [str(m) for m in Mode]
            self._reply(400, {"error": f"body must be {{'mode': one of {valid}}}: {exc!r}"})
            return
        try:
            self.server.api.set_mode(mode)
        except (OSError, RuntimeError) as exc:
            self._reply(500, {"error": f"could not switch to {mode}: {exc!r}"})
            return
        # Only now: the data server already behaves in the new mode when the client reads this.
        self._reply(200, {"mode": str(mode)})


class _APIServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer over an already bound socket, so the data port survives refuse mode."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    # The stdlib would join every handler thread without a bound in server_close(); we track
    # our own and join them with a deadline instead, so a stuck client cannot stall stop().
    block_on_close = False

    def __init__(self, sock: socket.socket, handler: type[_Handler], api: EnrichmentAPI) -> None:
        super().__init__(sock.getsockname(), handler, bind_and_activate=False)
        # Swap in our bound socket; HTTPServer.server_bind would also call getfqdn (slow DNS).
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        self.server_name, self.server_port = HOST, self.server_address[1]
        self.api = api
        self._handler_threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        try:
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._threads_lock:
            self._handler_threads = [t for t in self._handler_threads if t.is_alive()]
            self._handler_threads.append(thread)
        thread.start()

    def server_close(self) -> None:
        super().server_close()
        deadline = time.monotonic() + _HANDLER_JOIN_TIMEOUT
        with self._threads_lock:
            threads, self._handler_threads = self._handler_threads, []
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _bound_socket(port: int) -> socket.socket:
    """TCP socket bound to HOST:port but not listening: holds the port, connects are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Lets us re-bind the port at once despite TIME_WAIT or still-open accepted connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
    except BaseException:
        sock.close()
        raise
    return sock


class EnrichmentAPI:
    """Data server + control server on 127.0.0.1; `set_mode` changes how the data server fails."""

    def __init__(
        self, mode: Mode | str = Mode.OK, *, max_hang: float = 120.0, retry_after: int = 1
    ) -> None:
        self.max_hang = max_hang
        self.retry_after = retry_after
        # _switch_lock serialises mode switches (they open/close sockets and may take a poll tick);
        # _state_lock guards the small shared state that handler threads read and update.
        self._switch_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._mode = Mode(mode)
        self._release = threading.Event()
        self._closing = threading.Event()  # set by stop(): frees stalled requests
        self._hanging = 0
        self._seen: list[tuple[Mode, str]] = []
        self._port: int | None = None
        self._control_port: int | None = None
        self._placeholder: socket.socket | None = None
        self._data: tuple[_APIServer, threading.Thread] | None = None
        self._control: tuple[_APIServer, threading.Thread] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> EnrichmentAPI:
        with self._switch_lock:
            if self._control is not None:
                raise RuntimeError("EnrichmentAPI is already running")
            with self._state_lock:
                self._release = threading.Event()
                self._closing = threading.Event()
            try:
                self._placeholder = _bound_socket(0)
                self._port = self._placeholder.getsockname()[1]
                if self._mode is not Mode.REFUSE:
                    self._open_data()
                self._control = self._serve(_bound_socket(0), _ControlHandler, "control")
                self._control_port = self._control[0].server_port
            except BaseException:
                self._teardown()
                raise
        log.info(
            "enrichment API on %s (control %s), mode %s", self.url, self.control_url, self._mode
        )
        return self

    def stop(self) -> None:
        """Release hanging requests and close every socket; idempotent, well under a second."""
        with self._switch_lock:
            self._teardown()

    def _teardown(self) -> None:
        with self._state_lock:
            # Wakes every hanging handler; later ones grab this same set event and return at once.
            self._release.set()
            self._closing.set()
        for attr in ("_control", "_data"):
            served = getattr(self, attr)
            setattr(self, attr, None)
            if served is not None:
                self._shutdown(served)
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    def __enter__(self) -> EnrichmentAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(
        self, sock: socket.socket, handler: type[_Handler], name: str
    ) -> tuple[_APIServer, threading.Thread]:
        server = _APIServer(sock, handler, self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"enrichment-api-{name}-{server.server_port}",
            daemon=True,
        )
        thread.start()
        return server, thread

    def _shutdown(self, served: tuple[_APIServer, threading.Thread]) -> None:
        server, thread = served
        server.shutdown()  # waits for serve_forever() to leave its loop
        server.server_close()  # closes the listening socket: from here connects are refused
        thread.join(timeout=1.0)

    def _open_data(self) -> None:
        """Listen on the data port again, reusing the socket that kept the port reserved."""
        assert self._port is not None
        sock = self._placeholder
        self._placeholder = None
        if sock is None:
            sock = _bound_socket(self._port)
        self._data = self._serve(sock, _DataHandler, "data")

    def _close_data(self) -> None:
        """Close the listener (real ECONNREFUSED from now on) but keep the port reserved."""
        assert self._data is not None and self._port is not None
        served, self._data = self._data, None
        self._shutdown(served)
        try:
            # A bound, non-listening socket refuses connections yet stops the kernel from
            # handing the port out as someone's ephemeral port while we are in refuse mode.
            self._placeholder = _bound_socket(self._port)
        except OSError as exc:
            log.warning("could not reserve port %s during refuse mode: %r", self._port, exc)

    # -- modes -----------------------------------------------------------------------------------

    def set_mode(self, mode: Mode | str) -> None:
        """Switch synchronously: on return the data server already behaves in the new mode."""
        new = Mode(mode)
        with self._switch_lock:
            running = self._control is not None
            # Mode first: leaving hang must free blocked handlers before closing the server
            # joins its handler threads. A request read between the two steps is dropped.
            with self._state_lock:
                old, self._mode = self._mode, new
                if old is Mode.HANG and new is not Mode.HANG:
                    # Leaving hang frees every blocked handler so threads do not pile up.
                    self._release.set()
                elif new is Mode.HANG and old is not Mode.HANG:
                    self._release = threading.Event()
            if running and new is Mode.REFUSE and self._data is not None:
                self._close_data()
            elif running and new is not Mode.REFUSE and self._data is None:
                try:
                    self._open_data()
                except OSError:
                    # Not listening is exactly refuse mode: report that rather than a lie.
                    with self._state_lock:
                        self._mode = Mode.REFUSE
                    raise
        log.info("enrichment API mode %s -> %s", old, new)

    @property
    def mode(self) -> Mode:
        with self._state_lock:
            return self._mode

    def _begin_request(self, path: str) -> tuple[Mode, threading.Event]:
        # Mode, event and the record are read together, so a switch cannot slip in between.
        with self._state_lock:
            self._seen.append((self._mode, path))
            if self._mode is Mode.HANG:
                self._hanging += 1
            return self._mode, self._release

    def _stall(self) -> None:
        with self._state_lock:
            self._seen.append((self._mode, STALL_PATH))
            closing = self._closing
        closing.wait(self.max_hang)

    def _end_hang(self) -> None:
        with self._state_lock:
            self._hanging -= 1

    # -- introspection ---------------------------------------------------------------------------

    # Both URLs stay readable after stop(), so callers can check the ports really went away.
    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("EnrichmentAPI was never started")
        return f"http://{HOST}:{self._port}"

    @property
    def control_url(self) -> str:
        if self._control_port is None:
            raise RuntimeError("EnrichmentAPI was never started")
        return f"http://{HOST}:{self._control_port}"

    @property
    def requests_seen(self) -> list[tuple[Mode, str]]:
        """(mode, path) of every request the data server read, in order; refused ones never are."""
        with self._state_lock:
            return list(self._seen)

    def requests_by_mode(self) -> Counter[Mode]:
        return Counter(mode for mode, _ in self.requests_seen)

    @property
    def hanging(self) -> int:
        """Number of data requests currently held open by hang mode."""
        with self._state_lock:
            return self._hanging


# -- client helpers, usable from any process ---------------------------------------------------


def set_api_mode(control_url: str, mode: str, timeout: float = 5.0) -> None:
    """Switch a running API's mode via its control port; returns once the switch has happened."""
    request = urllib.request.Request(
        f"{control_url.rstrip('/')}/mode",
        data=_json_bytes({"mode": str(mode)}),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    # Non-2xx raises urllib.error.HTTPError (400 for an unknown mode); let it propagate.
    with _OPENER.open(request, timeout=timeout) as response:
        answer = json.load(response)
    if answer.get("mode") != str(mode):
        raise RuntimeError(f"control port answered {answer!r} when asked for mode {mode!r}")


def get_api_mode(control_url: str, timeout: float = 5.0) -> str:
    """Current mode of a running API, read via its control port."""
    with _OPENER.open(f"{control_url.rstrip('/')}/mode", timeout=timeout) as response:
        return str(json.load(response)["mode"])


def fetch_zone_congestion(url: str, month: str, timeout: float) -> dict[int, float]:
    """GET /v1/zones for `month` ("YYYY-MM") as {LocationID: congestion}.

    Errors are left as urllib raises them, for the caller's retry logic to classify, except that an
    error status becomes APIStatusError (picklable): URLError wrapping ConnectionRefusedError,
    TimeoutError when the server hangs, http.client.RemoteDisconnected when it drops the request;
    a body that is not JSON is a ValueError that says so.
    """
    full = f"{url.rstrip('/')}/v1/zones?{urlencode({'month': month})}"
    try:
        with _OPENER.open(full, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            raise APIStatusError(
                full, exc.code, str(exc.reason), exc.headers["Retry-After"]
            ) from None
    if status != 200:
        # urllib only raises for >= 400; any other non-200 is just as unusable here.
        raise APIStatusError(full, status, "unexpected status")
    try:
        payload = json.loads(body)
    except ValueError:
        raise ValueError(
            f"{full} answered 200 with a body that is not JSON: {body[:40]!r}"
        ) from None
    if payload.get("month") != month:
        raise ValueError(f"asked for month {month!r}, API answered {payload.get('month')!r}")
    return {int(zone["LocationID"]): float(zone["congestion"]) for zone in payload["zones"]}
