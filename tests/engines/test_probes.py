"""The semantics probes, in the engine of this nox session: each answer read back from the
engine's own store, recorded under results/probes/, and equal to the answer its documentation
gives (a new engine version that answers otherwise fails here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared_pipeline.engine_table import PROBE_MODULES
from shared_pipeline.headroom import over
from shared_pipeline.loading import load_module
from shared_pipeline.probes import NOT_EXPRESSIBLE, PROBES, ProbeRecord, probe_path, read_probe

ENGINE = os.environ.get("PIPELINE_ENGINE", "python")
# One worker runs every probe (one probing process for all of them), while under `pytest -n 2`
# the other runs the engine's own-process checks beside it.
pytestmark = [pytest.mark.probe, pytest.mark.xdist_group("probes")]


@pytest.fixture(scope="module")
def answered(pipeline_out: Path) -> dict[str, ProbeRecord]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared_pipeline.probing",
            "--engine",
            ENGINE,
            "--out",
            str(pipeline_out),
        ],
        capture_output=True,
        text=True,
        # A whole probe run took at most about 60 s (Prefect 2.x, beside other sessions).
        timeout=over(90),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return {p.id: read_probe(probe_path(pipeline_out / "results", ENGINE, p.id)) for p in PROBES}


@pytest.mark.parametrize("probe", PROBES, ids=[p.id for p in PROBES])
def test_the_engine_answers_as_its_documentation_says(answered, probe) -> None:
    record = answered[probe.id]
    documented = load_module(PROBE_MODULES[ENGINE]).DOCUMENTED[probe.id]

    assert record.engine == ENGINE and record.engine_version
    assert set(record.answers) == {q.key for q in probe.questions}
    for question in probe.questions:
        seen = record.answers[question.key]
        assert seen.answer in (*question.answers, NOT_EXPRESSIBLE), (question.key, seen.answer)
        if seen.answer == NOT_EXPRESSIBLE:
            assert seen.note, f"{question.key}: not expressible, but no reason given"
        else:
            assert seen.native, f"{question.key}: no native state read from the engine's store"
        assert documented[question.key].doc.startswith("https://"), question.key
    answers = {key: seen.answer for key, seen in record.answers.items()}
    assert answers == {key: d.answer for key, d in documented.items()}
