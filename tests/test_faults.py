"""Planned faults through the real `step_attempt`: each one bites as the real error, then goes away.

Every test prepares its own run directory (SQLite source, attempt log, saved context) and a live
enrichment API, as harness.run_scenario does, and calls the real steps.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy.exc
from pipeline_support import SMALL, prepare_run_dir, unenriched_features

from shared_pipeline import steps
from shared_pipeline.context import RunContext, set_current_run
from shared_pipeline.enrichment_api import APIStatusError, EnrichmentAPI, Mode, get_api_mode
from shared_pipeline.faults import HangCapReached, mark_fixed, read_attempt_log
from shared_pipeline.faults_plan import FaultKind, FaultRule
from shared_pipeline.killer import Killer
from shared_pipeline.settings import Settings
from shared_pipeline.zones import zone_congestion

TRAIN, VALID = SMALL.train_month, SMALL.valid_month
LINEAR = {"key": "linear", "model": "linear"}

MakeRunDir = Callable[..., RunContext]


@pytest.fixture
def api() -> Iterator[EnrichmentAPI]:
    with EnrichmentAPI() as running:
        yield running


@pytest.fixture
def make_run_dir(tmp_path: Path, api: EnrichmentAPI) -> MakeRunDir:
    def make(*faults: FaultRule, settings: Settings = SMALL) -> RunContext:
        return prepare_run_dir(tmp_path / "run", api, settings=settings, faults=faults)

    return make


def rows(ctx: RunContext, step: str) -> list[dict]:
    return [row for row in read_attempt_log(ctx.run_dir) if row["step"] == step]


def extracted(ctx: RunContext, month: str) -> Path:
    return ctx.path / "data" / f"green_tripdata_{month}.parquet"


@pytest.mark.timeout(60)
def test_db_locked_fails_with_the_real_lock_error_until_the_unplanned_attempt(
    make_run_dir: MakeRunDir,
) -> None:
    ctx = make_run_dir(FaultRule(step="extract", kind=FaultKind.DB_LOCKED, attempts=(1, 2)))

    for _ in range(2):
        with pytest.raises(sqlalchemy.exc.OperationalError, match="database is locked"):
            steps.extract(ctx.run_dir, TRAIN)
        assert not extracted(ctx, TRAIN).exists()

    assert steps.extract(ctx.run_dir, TRAIN) == str(extracted(ctx, TRAIN))
    assert extracted(ctx, TRAIN).exists()
    log = rows(ctx, "extract")
    assert [(r["attempt"], r["fault"], r["outcome"]) for r in log] == [
        (1, "db_locked", "failed"),
        (2, "db_locked", "failed"),
        (3, None, "completed"),
    ]
    assert all("OperationalError" in r["error"] and "locked" in r["error"] for r in log[:2])
    assert log[2]["error"] is None
    # The busy timeout times only the wait for the lock: the locked attempts waited all of it.
    assert all(r["clocked"] >= SMALL.db_busy_timeout_s for r in log[:2])
    started, ended = (datetime.fromisoformat(log[2][k]) for k in ("started", "ended"))
    assert 0 <= log[2]["clocked"] <= (ended - started).total_seconds()


@pytest.mark.timeout(60)
def test_attempts_are_counted_per_step_and_key(make_run_dir: MakeRunDir) -> None:
    # Only the training month's first attempt is locked: the validation month is another task.
    ctx = make_run_dir(
        FaultRule(step="extract", key=TRAIN, kind=FaultKind.DB_LOCKED, attempts=(1,))
    )
    steps.extract(ctx.run_dir, VALID)
    with pytest.raises(sqlalchemy.exc.OperationalError, match="locked"):
        steps.extract(ctx.run_dir, TRAIN)
    steps.extract(ctx.run_dir, TRAIN)

    assert [(r["key"], r["attempt"], r["fault"]) for r in rows(ctx, "extract")] == [
        (VALID, 1, None),
        (TRAIN, 1, "db_locked"),
        (TRAIN, 2, None),
    ]


@pytest.mark.timeout(60)
def test_db_unreachable_cannot_open_the_database_and_creates_no_file(
    make_run_dir: MakeRunDir,
) -> None:
    ctx = make_run_dir(FaultRule(step="extract", kind=FaultKind.DB_UNREACHABLE))
    before = sorted(p.relative_to(ctx.path) for p in ctx.path.rglob("*"))

    for _ in range(2):
        with pytest.raises(sqlalchemy.exc.OperationalError, match="unable to open database file"):
            steps.extract(ctx.run_dir, TRAIN)

    after = sorted(p.relative_to(ctx.path) for p in ctx.path.rglob("*"))
    # Nothing new: no stand-in database in the "unmounted" folder, no data/ output.
    assert after == before
    assert not (ctx.path / "unmounted-volume").exists()
    assert [(r["attempt"], r["fault"], r["outcome"]) for r in rows(ctx, "extract")] == [
        (1, "db_unreachable", "failed"),
        (2, "db_unreachable", "failed"),
    ]


def _is_http_503(exc: BaseException) -> bool:
    # A real 503 response, with the server's Retry-After, as a picklable error.
    return isinstance(exc, APIStatusError) and (exc.status, exc.retry_after) == (503, "1")


def _is_refused(exc: BaseException) -> bool:
    return (
        isinstance(exc, urllib.error.URLError)
        and not isinstance(exc, urllib.error.HTTPError)
        and isinstance(exc.reason, ConnectionRefusedError)
    )


def _is_timeout(exc: BaseException) -> bool:
    # urllib raises the socket timeout as is when it hits while reading the response.
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, TimeoutError)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("kind", "is_expected_error", "server_saw"),
    [
        pytest.param(FaultKind.API_503, _is_http_503, {Mode.HTTP_503: 1, Mode.OK: 1}, id="api_503"),
        # A refused connection never reaches the server.
        pytest.param(FaultKind.API_REFUSED, _is_refused, {Mode.OK: 1}, id="api_refused"),
        pytest.param(FaultKind.API_HANG, _is_timeout, {Mode.HANG: 1, Mode.OK: 1}, id="api_hang"),
    ],
)
def test_api_fault_raises_the_real_network_error_and_the_api_recovers(
    make_run_dir: MakeRunDir,
    api: EnrichmentAPI,
    kind: FaultKind,
    is_expected_error: Callable[[BaseException], bool],
    server_saw: dict[Mode, int],
) -> None:
    ctx = make_run_dir(FaultRule(step="enrich", kind=kind, attempts=(1,)))

    with pytest.raises((APIStatusError, urllib.error.URLError, OSError)) as caught:
        steps.enrich(ctx.run_dir, [TRAIN])
    assert is_expected_error(caught.value), repr(caught.value)
    # Engines pickle a failed task's exception to store it or pass it between processes.
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is type(caught.value) and str(copy) == str(caught.value)
    assert get_api_mode(ctx.api_control_url) == "ok"

    # The next attempt has no fault planned and gets the real answer.
    assert steps.enrich(ctx.run_dir, [TRAIN]) == {
        TRAIN: {str(zone): value for zone, value in zone_congestion(TRAIN).items()}
    }
    assert api.requests_by_mode() == server_saw
    log = rows(ctx, "enrich")
    assert [(r["attempt"], r["fault"], r["outcome"]) for r in log] == [
        (1, str(kind), "failed"),
        (2, None, "completed"),
    ]
    assert log[0]["error"].startswith(type(caught.value).__name__)


@pytest.mark.timeout(60)
def test_hang_runs_to_the_cap_and_is_logged_as_such(make_run_dir: MakeRunDir) -> None:
    cap = 0.4
    ctx = make_run_dir(
        FaultRule(step="train", kind=FaultKind.HANG),
        settings=SMALL.model_copy(update={"hang_cap_s": cap}),
    )
    features = unenriched_features(ctx)

    started = time.monotonic()
    with pytest.raises(HangCapReached, match="hung for 0.4 s"):
        steps.train(ctx.run_dir, features, LINEAR)
    elapsed = time.monotonic() - started

    assert elapsed >= cap  # it really waited for the cap ...
    assert elapsed < 30  # ... and then ended on its own
    assert not (ctx.path / "models" / "linear.pkl").exists()
    (row,) = rows(ctx, "train")
    assert (row["key"], row["fault"], row["outcome"]) == ("linear", "hang", "hang_cap_reached")
    assert row["error"].startswith("HangCapReached: ")


@pytest.mark.timeout(60)
def test_corrupt_features_make_scikit_learn_refuse_to_fit_only_that_branch(
    make_run_dir: MakeRunDir,
) -> None:
    ctx = make_run_dir(FaultRule(step="train", key="ridge_heavy", kind=FaultKind.CORRUPT_FEATURES))
    features = unenriched_features(ctx)

    with pytest.raises(ValueError, match="NaN"):
        steps.train(ctx.run_dir, features, {"key": "ridge_heavy", "model": "ridge", "alpha": 2.0})
    trained = steps.train(ctx.run_dir, features, LINEAR)

    assert Path(trained["model_path"]).exists()
    assert not (ctx.path / "models" / "ridge_heavy.pkl").exists()
    assert [(r["key"], r["fault"], r["outcome"]) for r in rows(ctx, "train")] == [
        ("ridge_heavy", "corrupt_features", "failed"),
        ("linear", None, "completed"),
    ]
    assert "ValueError" in rows(ctx, "train")[0]["error"]


@pytest.mark.timeout(60)
def test_until_fixed_fault_lasts_on_every_attempt_until_mark_fixed(
    make_run_dir: MakeRunDir,
) -> None:
    ctx = make_run_dir(FaultRule(step="train", kind=FaultKind.CORRUPT_FEATURES, until_fixed=True))
    features = unenriched_features(ctx)

    for _ in range(3):
        with pytest.raises(ValueError, match="NaN"):
            steps.train(ctx.run_dir, features, LINEAR)
    mark_fixed(ctx.run_dir)
    set_current_run(ctx.run_dir, 2)
    trained = steps.train(ctx.run_dir, features, LINEAR)

    assert Path(trained["model_path"]).exists()
    assert [(r["run"], r["attempt"], r["fault"], r["outcome"]) for r in rows(ctx, "train")] == [
        (1, 1, "corrupt_features", "failed"),
        (1, 2, "corrupt_features", "failed"),
        (1, 3, "corrupt_features", "failed"),
        (2, 4, None, "completed"),
    ]


CHILD_ATTEMPT = textwrap.dedent(
    """
    import os, sys
    from shared_pipeline import steps
    from shared_pipeline.enrichment_api import APIStatusError
    try:
        steps.enrich(sys.argv[1], [sys.argv[2]])
    except APIStatusError as exc:
        print(os.getpid(), exc.status)
    """
)


@pytest.mark.timeout(120)
def test_attempt_numbers_and_faults_carry_across_processes(make_run_dir: MakeRunDir) -> None:
    ctx = make_run_dir(FaultRule(step="enrich", kind=FaultKind.API_503, attempts=(2,)))

    steps.enrich(ctx.run_dir, [TRAIN])  # attempt 1, here
    child = subprocess.run(
        [sys.executable, "-c", CHILD_ATTEMPT, ctx.run_dir, TRAIN],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    child_pid, status = (int(word) for word in child.stdout.split())
    assert status == 503  # the child's attempt was number 2, so its planned fault bit there
    steps.enrich(ctx.run_dir, [TRAIN])  # attempt 3, here again

    log = rows(ctx, "enrich")
    assert [(r["attempt"], r["pid"], r["fault"], r["outcome"]) for r in log] == [
        (1, os.getpid(), None, "completed"),
        (2, child_pid, "api_503", "failed"),
        (3, os.getpid(), None, "completed"),
    ]
    assert child_pid != os.getpid()
    for row in log:
        assert row["run"] == 1
        started = datetime.fromisoformat(row["started"])
        ended = datetime.fromisoformat(row["ended"])
        assert started.tzinfo is not None and started <= ended
    assert log[1]["error"].startswith("APIStatusError: HTTP 503")
    assert log[0]["error"] is None and log[2]["error"] is None


CHILD_TRAIN = textwrap.dedent(
    """
    import pickle, sys
    from shared_pipeline import steps
    features = pickle.loads(bytes.fromhex(sys.argv[2]))
    steps.train(sys.argv[1], features, {"key": "linear", "model": "linear"})
    """
)


@pytest.mark.timeout(120)
def test_a_killed_attempt_loses_its_process_to_sigkill_from_outside(
    make_run_dir: MakeRunDir,
) -> None:
    ctx = make_run_dir(FaultRule(step="train", kind=FaultKind.KILLED, attempts=(1,)))
    features = pickle.dumps(unenriched_features(ctx)).hex()
    with Killer(ctx.run_dir, 1) as killer:
        child = subprocess.run(
            [sys.executable, "-c", CHILD_TRAIN, ctx.run_dir, features], timeout=90
        )
    assert child.returncode == -signal.SIGKILL  # no exception, no finally: the process is gone
    (row,) = rows(ctx, "train")
    assert (row["fault"], row["ended"], row["outcome"]) == ("killed", None, None)
    (kill,) = killer.kills
    assert (kill.task, kill.attempt, kill.pid, kill.step_pid) == (
        "train[linear]",
        1,
        row["pid"],
        row["pid"],
    )
    assert kill.at >= datetime.fromisoformat(row["started"])

    steps.train(ctx.run_dir, unenriched_features(ctx), LINEAR)  # attempt 2: no kill planned
    assert [r["outcome"] for r in rows(ctx, "train")] == [None, "completed"]
