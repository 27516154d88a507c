"""Enrichment API faults over real loopback sockets: 503, refused, hung, cross-process control.

No mocks: every failure is what urllib really raises against the live server.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from shared_pipeline.enrichment_api import (
    APIStatusError,
    EnrichmentAPI,
    Mode,
    fetch_zone_congestion,
    get_api_mode,
    set_api_mode,
)
from shared_pipeline.zones import ZONE_IDS, zone_congestion

MONTH = "2024-02"
# Proxies from the environment must not intercept loopback requests made by the tests either.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def api() -> Iterator[EnrichmentAPI]:
    with EnrichmentAPI() as running:
        yield running


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a state the server reports, instead of sleeping for a guessed duration."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def assert_refused(url: str) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port_of(url)), timeout=2).close()


def _own_socket_inodes() -> set[str]:
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # the fd closed while we were listing
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def own_socket_count() -> int:
    return len(_own_socket_inodes())


def own_listening_ports() -> set[int]:
    """Ports of TCP sockets in LISTEN state that this process holds (Linux /proc)."""
    inodes = _own_socket_inodes()
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and inode in inodes:  # 0A is TCP_LISTEN
            ports.add(int(local.split(":")[1], 16))
    return ports


def get_json(url: str) -> tuple[int, dict]:
    try:
        with OPENER.open(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


class BackgroundFetch:
    """A fetch_zone_congestion call on its own thread, to observe a hanging request from outside."""

    def __init__(self, url: str, timeout: float) -> None:
        self.error: BaseException | None = None
        self.result: dict[int, float] | None = None
        self._thread = threading.Thread(target=self._run, args=(url, timeout), daemon=True)
        self._thread.start()

    def _run(self, url: str, timeout: float) -> None:
        try:
            self.result = fetch_zone_congestion(url, MONTH, timeout=timeout)
        except BaseException as exc:  # handed to the test thread, which asserts on it
            self.error = exc

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "request still hanging"


@pytest.mark.timeout(20)
def test_ok_serves_zone_congestion(api: EnrichmentAPI) -> None:
    got = fetch_zone_congestion(api.url, MONTH, timeout=5)
    assert sorted(got) == sorted(ZONE_IDS)
    assert got == zone_congestion(MONTH)
    assert api.requests_seen == [(Mode.OK, "/v1/zones")]


@pytest.mark.timeout(20)
def test_health_bad_month_and_unknown_path(api: EnrichmentAPI) -> None:
    assert get_json(f"{api.url}/health") == (200, {"status": "ok"})
    for query in ("", "?month=2024-13", "?month=24-02", "?month=2024-02&month=2024-03"):
        status, body = get_json(f"{api.url}/v1/zones{query}")
        assert status == 400 and "error" in body, query
    assert get_json(f"{api.url}/nope")[0] == 404


@pytest.mark.timeout(20)
def test_bad_body_is_a_200_whose_body_is_not_json(api: EnrichmentAPI) -> None:
    api.set_mode("bad_body")
    with OPENER.open(f"{api.url}/v1/zones?month={MONTH}", timeout=5) as response:
        assert response.status == 200 and response.read().startswith(b"<html>")
    with pytest.raises(ValueError, match="answered 200 with a body that is not JSON") as caught:
        fetch_zone_congestion(api.url, MONTH, timeout=5)
    assert pickle.loads(pickle.dumps(caught.value)).args == caught.value.args
    api.set_mode("ok")
    assert fetch_zone_congestion(api.url, MONTH, timeout=5) == zone_congestion(MONTH)


@pytest.mark.timeout(20)
def test_http_503_is_a_real_http_error(api: EnrichmentAPI) -> None:
    api.set_mode("http_503")
    with pytest.raises(APIStatusError) as caught:
        fetch_zone_congestion(api.url, MONTH, timeout=5)
    assert caught.value.status == 503
    assert caught.value.retry_after == "1"
    # Engines persist or ship a failed task's exception: it must survive pickling.
    assert pickle.loads(pickle.dumps(caught.value)).status == 503
    assert api.requests_seen == [(Mode.HTTP_503, "/v1/zones")]


@pytest.mark.timeout(20)
def test_refuse_closes_the_socket_and_ok_rebinds_the_same_port(api: EnrichmentAPI) -> None:
    url = api.url
    for _ in range(3):  # repeatedly, so the re-bind is not a one-off
        api.set_mode(Mode.REFUSE)
        with pytest.raises(urllib.error.URLError) as caught:
            fetch_zone_congestion(url, MONTH, timeout=5)
        reason = caught.value.reason
        assert isinstance(reason, ConnectionRefusedError)
        assert reason.errno == errno.ECONNREFUSED
        assert_refused(url)

        api.set_mode(Mode.OK)
        assert api.url == url
        assert fetch_zone_congestion(url, MONTH, timeout=5) == zone_congestion(MONTH)
    # Refused connections never reach the server, so only the ok requests were seen.
    assert api.requests_by_mode() == {Mode.OK: 3}


@pytest.mark.timeout(20)
def test_hang_times_out_the_client(api: EnrichmentAPI) -> None:
    api.set_mode("hang")
    started = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)) as caught:
        fetch_zone_congestion(api.url, MONTH, timeout=0.3)
    elapsed = time.monotonic() - started
    error = caught.value
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    assert isinstance(reason, TimeoutError)
    assert 0.25 <= elapsed < 5
    # The server really read the request; it just never answered it.
    assert api.requests_seen == [(Mode.HANG, "/v1/zones")]
    api.set_mode("ok")
    wait_until(lambda: api.hanging == 0)


@pytest.mark.timeout(20)
def test_leaving_hang_releases_hanging_requests(api: EnrichmentAPI) -> None:
    api.set_mode("hang")
    baseline_threads = threading.active_count()
    fetches = [BackgroundFetch(api.url, timeout=15) for _ in range(3)]
    wait_until(lambda: api.hanging == 3)

    api.set_mode("ok")
    for fetch in fetches:
        # Far below the client timeout: it was the mode switch that ended the request.
        fetch.join(timeout=5)
        assert isinstance(fetch.error, http.client.RemoteDisconnected)
    wait_until(lambda: api.hanging == 0)
    # Handler threads are gone too (the 3 client threads have ended as well).
    wait_until(lambda: threading.active_count() <= baseline_threads)
    assert fetch_zone_congestion(api.url, MONTH, timeout=5) == zone_congestion(MONTH)


@pytest.mark.timeout(20)
def test_hang_is_capped_by_max_hang() -> None:
    with EnrichmentAPI(mode="hang", max_hang=0.2) as api:
        fetch = BackgroundFetch(api.url, timeout=15)
        fetch.join(timeout=5)
        assert isinstance(fetch.error, http.client.RemoteDisconnected)
        assert api.hanging == 0


@pytest.mark.timeout(20)
def test_hang_then_refuse_releases_and_refuses(api: EnrichmentAPI) -> None:
    api.set_mode("hang")
    fetch = BackgroundFetch(api.url, timeout=15)
    wait_until(lambda: api.hanging == 1)
    api.set_mode("refuse")
    fetch.join(timeout=5)
    assert isinstance(fetch.error, http.client.RemoteDisconnected)
    assert_refused(api.url)


@pytest.mark.timeout(20)
def test_stop_returns_quickly_while_a_request_hangs() -> None:
    api = EnrichmentAPI().start()
    try:
        api.set_mode("hang")
        fetch = BackgroundFetch(api.url, timeout=15)
        wait_until(lambda: api.hanging == 1)
    finally:
        started = time.monotonic()
        api.stop()
        stop_took = time.monotonic() - started
    assert stop_took < 1.0
    fetch.join(timeout=5)
    assert isinstance(fetch.error, http.client.RemoteDisconnected)
    assert api.hanging == 0
    assert_refused(api.url)
    assert_refused(api.control_url)


@pytest.mark.timeout(20)
def test_control_port_over_http(api: EnrichmentAPI) -> None:
    assert get_api_mode(api.control_url) == "ok"
    set_api_mode(api.control_url, "http_503")
    assert api.mode is Mode.HTTP_503
    assert get_api_mode(api.control_url) == "http_503"
    with pytest.raises(urllib.error.HTTPError) as caught:
        set_api_mode(api.control_url, "explode")
    with caught.value as error:
        assert error.code == 400
    assert api.mode is Mode.HTTP_503
    with pytest.raises(ValueError):
        api.set_mode("explode")


@pytest.mark.timeout(30)
def test_control_from_a_separate_process(api: EnrichmentAPI) -> None:
    # The pipeline step's view: switch mode, then immediately query, from another interpreter.
    script = textwrap.dedent(
        """
        import sys, urllib.error
        from shared_pipeline.enrichment_api import (
            APIStatusError, fetch_zone_congestion, set_api_mode,
        )
        control_url, url, mode = sys.argv[1:]
        set_api_mode(control_url, mode)
        try:
            print(len(fetch_zone_congestion(url, "2024-02", timeout=5)))
        except APIStatusError as exc:
            print(exc.status)
        except urllib.error.URLError as exc:
            print(type(exc.reason).__name__)
        """
    )

    def step(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, api.control_url, api.url, mode],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return done.stdout.strip()

    assert step("refuse") == "ConnectionRefusedError"
    assert api.mode is Mode.REFUSE
    assert_refused(api.url)
    assert step("ok") == str(len(ZONE_IDS))
    assert api.mode is Mode.OK


@pytest.mark.timeout(30)
def test_start_stop_cycles_leave_nothing_listening() -> None:
    baseline_threads = threading.active_count()
    baseline_sockets = own_socket_count() if sys.platform == "linux" else 0
    urls: list[str] = []
    for cycle in range(20):
        with EnrichmentAPI() as api:
            assert get_json(f"{api.url}/health")[0] == 200
            if cycle % 2:
                api.set_mode("refuse")  # stopping from refuse must free the reserved port too
            urls += [api.url, api.control_url]
        assert_refused(api.url)
        assert_refused(api.control_url)
    wait_until(lambda: threading.active_count() <= baseline_threads)
    # Re-connecting now could reach another process that got a freed port; ask the kernel instead.
    if sys.platform == "linux":
        assert not own_listening_ports() & {port_of(url) for url in urls}
        wait_until(lambda: own_socket_count() <= baseline_sockets)
