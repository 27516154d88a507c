"""The scenario catalogue's override mechanism: an engine's documented deviations, applied."""

from __future__ import annotations

import pytest

from shared_pipeline.scenarios import (
    CATALOGUE,
    SCENARIOS,
    Override,
    RunExpectation,
    Scenario,
    ScenarioError,
)
from shared_pipeline.vocabulary import FlowOutcome, RegistryEffect, StepState

C = StepState.COMPLETED


def _scenario(*overrides: Override) -> Scenario:
    return Scenario(
        id="demo",
        title="demo",
        description="demo",
        runs=(
            RunExpectation(
                steps={"a": C, "b[1]": C, "b[2]": C, "c": C},
                outcome=FlowOutcome.COMPLETED,
                registry=RegistryEffect.PROMOTED,
            ),
        ),
        overrides={"engine": overrides},
    )


def test_an_override_can_replace_tasks_with_the_engines_own() -> None:
    scenario = _scenario(
        Override(
            steps={"b_loop": C, "c": StepState.SKIPPED},
            absent=("b[1]", "b[2]"),
            executed=("a", "b[1]", "b[2]"),
            reason="one looping task runs the b rounds",
            doc="https://example.org/loop",
        )
    )
    (expected,) = scenario.expected("engine")
    assert expected.steps == {"a": C, "b_loop": C, "c": StepState.SKIPPED}
    assert expected.engine_tasks == ("b_loop",)  # added by the override, not a spec step
    assert expected.executed == ("a", "b[1]", "b[2]")
    (unchanged,) = scenario.expected("another-engine")
    assert unchanged == scenario.runs[0]


def test_an_override_cannot_drop_a_task_the_spec_does_not_have() -> None:
    scenario = _scenario(Override(absent=("nope",), reason="r", doc="https://example.org"))
    with pytest.raises(ScenarioError, match="nope"):
        scenario.expected("engine")


@pytest.mark.parametrize("scenario", CATALOGUE, ids=lambda s: s.id)
def test_every_override_applies_and_says_why_with_a_link(scenario: Scenario) -> None:
    for engine, overrides in scenario.overrides.items():
        assert len(scenario.expected(engine)) == len(scenario.runs)
        for override in overrides:
            assert override.reason.strip()
            assert override.doc.startswith("https://"), (engine, override.doc)


def test_prefect1_on_dask_differs_from_the_local_executor_only_in_timeouts() -> None:
    for scenario in CATALOGUE:
        local = scenario.overrides.get("prefect1", ())
        dask = scenario.overrides.get("prefect1-dask", ())
        assert dask[: len(local)] == local
        assert all(o.timeouts_interrupt is False for o in dask[len(local) :])
    for scenario_id in ("train_hangs", "train_blocks"):
        assert SCENARIOS[scenario_id].expected("prefect1")[0].timeouts_interrupt is True
        assert SCENARIOS[scenario_id].expected("prefect1-dask")[0].timeouts_interrupt is False
    retrain = SCENARIOS["retrain_until_good"].expected("prefect1")[0]
    assert "train_until_good" in retrain.engine_tasks
    assert not any(task.startswith(("train[", "evaluate[")) for task in retrain.steps)
