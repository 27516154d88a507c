"""The clocks' rule: healthy work is cheap and steady (one BLAS thread per process), and each
step clock's headroom is read from the attempts the steps logged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared_pipeline.headroom import MIN_HEADROOM, headrooms, healthy_seconds, over
from shared_pipeline.records import AttemptLogEntry, read_record

RECORD = Path(__file__).resolve().parents[1] / "results" / "python" / "happy_path.json"
T0 = datetime(2024, 2, 1, tzinfo=UTC)


def entry(step: str, seconds: float, **fields: object) -> AttemptLogEntry:
    base = dict(run=1, step=step, key=None, attempt=1, fault=None, pid=1, started=T0)
    base.update(ended=T0 + timedelta(seconds=seconds), outcome="completed", error=None)
    return AttemptLogEntry(**{**base, **fields})


def test_a_healthy_attempt_counts_its_clocked_part_or_all_of_it() -> None:
    assert healthy_seconds(entry("train", 0.5)) == 0.5
    assert healthy_seconds(entry("extract", 0.5, clocked=0.01)) == 0.01
    assert healthy_seconds(entry("extract", 0.5, fault="db_locked", outcome="failed")) is None
    assert healthy_seconds(entry("train", 0.5, outcome="failed")) is None
    assert healthy_seconds(entry("train", 0.5, ended=None)) is None


def test_headroom_is_the_clock_over_its_slowest_healthy_attempt() -> None:
    record = read_record(RECORD)
    run = record.runs[0].model_copy(
        update={
            "attempt_log": [
                entry("train", 0.05),
                entry("train", 0.1),
                entry("train", 9.0, fault="hang", outcome="hang_cap_reached"),
                entry("extract", 1.0, clocked=0.004),
            ]
        }
    )
    settings = {**record.settings, "train_timeout_s": 2.0, "db_busy_timeout_s": 0.2}
    found = {
        h.clock.step: h
        for h in headrooms([record.model_copy(update={"runs": [run], "settings": settings})])
    }

    assert set(found) == {"train", "extract"}  # no healthy enrich attempt: no figure
    assert (found["train"].slowest_s, found["train"].limit_s) == (0.1, 2.0)
    assert round(found["train"].ratio) == 20 and found["train"].enough
    assert round(found["extract"].ratio) == 50
    assert found["train"].line().startswith("train: slowest healthy attempt 0.100 s (python,")
    assert found["train"].line().endswith("train_timeout_s 2 s, headroom 20×")
    assert over(1.5) == 1.5 * MIN_HEADROOM


def test_a_process_that_trains_uses_one_blas_thread_and_so_do_its_children() -> None:
    code = (
        "import json, os, subprocess, sys; import shared_pipeline.ml; "
        "from threadpoolctl import threadpool_info; "
        "child = subprocess.run([sys.executable, '-c', 'import os; "
        'print(os.environ["OPENBLAS_NUM_THREADS"])\'], capture_output=True, text=True); '
        "print(json.dumps([[p['internal_api'], p['num_threads']] for p in threadpool_info()]));"
        "print(child.stdout.strip())"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )

    assert result.returncode == 0, result.stderr
    pools, child = result.stdout.splitlines()
    pools = json.loads(pools)
    assert {api for api, _ in pools} >= {"openblas", "openmp"}
    assert all(threads == 1 for _, threads in pools)
    assert child == "1"
