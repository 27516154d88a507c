"""The spec knows no engine; each wiring's declaration (wiring.py) is applied to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared_pipeline.conformance import check_record
from shared_pipeline.engine_table import ENGINES, WIRINGS
from shared_pipeline.faults_plan import FaultKind, FaultRule
from shared_pipeline.records import read_record, record_path
from shared_pipeline.scenarios import CATALOGUE, SCENARIOS, RunExpectation, Scenario
from shared_pipeline.vocabulary import FlowOutcome, NotificationEvent, RegistryEffect, StepState
from shared_pipeline.wiring import Deviation, Graph, Rule, Wiring, expected, joins, wiring_of

C, FAILED, NOT_RUN = StepState.COMPLETED, StepState.FAILED, StepState.NOT_RUN_UPSTREAM_FAILED
ROOT = Path(__file__).resolve().parents[1]


def _scenario(**run: object) -> Scenario:
    base = dict(
        steps={"a": C, "b[1]": C, "b[2]": FAILED, "c": StepState.TIMED_OUT},
        outcome=FlowOutcome.DEGRADED,
        notifications=((NotificationEvent.TASK_FAILED, "b[2]"),),
        registry=RegistryEffect.PROMOTED,
        timeouts_interrupt=True,
    )
    return Scenario(
        id="demo",
        title="demo",
        description="demo",
        faults=(FaultRule(step="c", kind=FaultKind.BLOCK),),
        runs=(RunExpectation(**{**base, **run}),),
    )


def test_a_wiring_adds_control_tasks_from_rules_and_its_deviations_add_to_the_spec() -> None:
    wiring = Wiring(
        graph=lambda flow, steps: Graph({"join": joins(steps, "b")}, folded=("b[1]",)),
        rules=(
            Rule(
                name="no degraded state",
                outcomes={FlowOutcome.DEGRADED: FlowOutcome.COMPLETED},
                states={StepState.TIMED_OUT: FAILED},
                interrupts={FaultKind.BLOCK: False},
                reason="r",
                doc="https://example.org",
            ),
        ),
        deviations=(
            Deviation(
                scenario="demo",
                steps={"a": FAILED},
                notifications=((NotificationEvent.TASK_FAILED, "a"),),
                reason="r",
                doc="https://example.org",
            ),
        ),
    )
    (run,) = expected(_scenario(), wiring)

    assert run.steps == {"a": FAILED, "b[2]": FAILED, "c": FAILED, "join": C}
    assert run.engine_tasks == ("join",)
    assert run.executed == ("a", "b[1]", "b[2]", "c")  # folded tasks: checked by the step log
    assert run.outcome is FlowOutcome.COMPLETED and run.timeouts_interrupt is False
    assert [task for _, task in run.notifications] == ["b[2]", "a"]  # added, not restated
    assert run.may_be_absent == ()  # failed tasks are created, even by a dynamic flow
    (plain,) = expected(_scenario(), None)
    assert plain == _scenario().runs[0]


def test_a_join_is_not_run_when_no_branch_completed() -> None:
    assert joins({"b[1]": FAILED, "b[2]": StepState.TIMED_OUT}, "b") is NOT_RUN
    assert joins({"b[1]": FAILED, "b[2]": StepState.COMPLETED_AFTER_RETRY}, "b") is C


def test_the_spec_names_no_engine_and_no_wiring_task() -> None:
    spec = ("scenarios.py", "faults_plan.py", "settings.py", "vocabulary.py")  # and its imports
    text = "\n".join((ROOT / "shared_pipeline" / name).read_text() for name in spec)
    # "python" names the plain-Python control, and the spec says Python for the language.
    engine_names = {"prefect", "airflow", "dask", *ENGINES} - {"python"}
    control_tasks = set()
    for engine in WIRINGS:
        wiring = wiring_of(engine)
        for scenario in CATALOGUE:
            for run in expected(scenario, wiring):
                control_tasks |= {re.sub(r"\[.*", "", t) for t in run.engine_tasks}
    control_tasks -= {"train", "evaluate"}  # the steps a graph may declare rounds of
    for name in sorted(engine_names):
        assert not re.search(rf"\b{re.escape(name)}", text, re.IGNORECASE), name
    for name in sorted(control_tasks):  # identifiers: `candidates`, not the constant CANDIDATES
        assert not re.search(rf"\b{re.escape(name)}\b", text), name


@pytest.mark.parametrize("engine", list(WIRINGS))
def test_every_declaration_applies_says_why_with_a_link(engine: str) -> None:
    wiring = wiring_of(engine)
    assert wiring is not None
    for item in (*wiring.rules, *wiring.deviations):
        assert item.reason.strip() and item.doc.startswith("https://"), (engine, item)
    for deviation in wiring.deviations:
        assert deviation.scenario in SCENARIOS, deviation.scenario
        assert deviation.run <= len(SCENARIOS[deviation.scenario].runs)
    for scenario in CATALOGUE:
        assert len(expected(scenario, wiring)) == len(scenario.runs)


def test_prefect1_on_dask_differs_from_the_local_executor_in_timeouts_and_a_killed_worker() -> None:
    local, dask = wiring_of("prefect1"), wiring_of("prefect1-dask")
    assert local is not None and dask is not None
    for scenario in CATALOGUE:
        if scenario.id == "worker_killed":  # the cluster runs the work again, flow.run() dies
            (killed,) = expected(scenario, dask)
            assert killed.outcome is FlowOutcome.COMPLETED
            assert expected(scenario, local)[0].outcome is FlowOutcome.LOST
            continue
        ours, theirs = expected(scenario, local), expected(scenario, dask)
        for a, b in zip(ours, theirs, strict=True):
            assert a.model_copy(update={"timeouts_interrupt": None}) == b.model_copy(
                update={"timeouts_interrupt": None}
            )
    for scenario_id in ("train_hangs", "train_blocks"):
        assert expected(SCENARIOS[scenario_id], local)[0].timeouts_interrupt is True
        assert expected(SCENARIOS[scenario_id], dask)[0].timeouts_interrupt is False
    retrain = expected(SCENARIOS["retrain_until_good"], local)[0]
    assert "train_until_good" in retrain.engine_tasks
    assert not any(task.startswith(("train[", "evaluate[")) for task in retrain.steps)


def _runs(engine: str, scenario_id: str) -> bool:
    wiring = wiring_of(engine)
    return wiring is None or wiring.scenarios is None or scenario_id in wiring.scenarios


# Every engine whose wiring runs it (a second runtime of an engine may run only some scenarios).
@pytest.mark.parametrize("engine", [e for e in ENGINES if _runs(e, "api_bad_body")])
def test_a_scenario_with_no_engine_specific_behaviour_needs_no_change_in_any_wiring(
    engine: str,
) -> None:
    # api_bad_body was added as the README's recipe says: the spec and the fault layer only.
    # Under a name no wiring has heard of, each wiring derives its whole expectation (its control
    # tasks included) from the spec, and the engine's recorded run of it still conforms.
    declarations = {ROOT / declared.where for e in WIRINGS if (declared := wiring_of(e))}
    assert not any("api_bad_body" in path.read_text() for path in declarations)
    unheard_of = SCENARIOS["api_bad_body"].model_copy(update={"id": "added_by_the_recipe"})
    wiring = wiring_of(engine)
    assert expected(unheard_of, wiring) == expected(SCENARIOS["api_bad_body"], wiring)
    record = read_record(record_path(ROOT / "results", engine, "api_bad_body"))
    problems = check_record(record, unheard_of)
    assert not problems, "\n".join(problems)
