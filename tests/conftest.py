"""Fixtures shared by the suites: which engine this nox session tests, and where records go."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared_pipeline.cli import load_adapter
from shared_pipeline.harness import EngineAdapter


@pytest.fixture(scope="session")
def engine_name() -> str:
    return os.environ.get("PIPELINE_ENGINE", "python")


@pytest.fixture(scope="session")
def adapter(engine_name: str, pipeline_out: Path) -> Iterator[EngineAdapter]:
    adapter = load_adapter(engine_name, pipeline_out)
    yield adapter
    adapter.close()


@pytest.fixture(scope="session")
def pipeline_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The nox sessions point this at the checkout, so the records they assert on are kept."""
    configured = os.environ.get("PIPELINE_OUT")
    return Path(configured) if configured else tmp_path_factory.mktemp("pipeline-out")
