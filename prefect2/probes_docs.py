"""What Prefect 2.x and 3.x document for each probe question, with the page or source that says it.

Source links name the installed version's tag, so they show the code that gave the answer.
"""

from __future__ import annotations

from shared_pipeline.probes import DEPENDS, NOT_EXPRESSIBLE, Documented

DOCS2 = "https://docs-2.prefect.io/latest"
DOCS3 = "https://docs.prefect.io/v3"


def documented(major: int, version: str) -> dict[str, dict[str, Documented]]:
    src = f"https://github.com/PrefectHQ/prefect/blob/{version}/src/prefect"
    two = major == 2

    def d(answer2: str, doc2: str, answer3: str, doc3: str) -> Documented:
        return Documented(answer2, doc2) if two else Documented(answer3, doc3)

    # 2.x: a flow returning None takes the states of all its task runs; 3.x: None is data.
    final2 = f"{DOCS2}/concepts/flows/#final-state-determination"
    final3 = f"{src}/states.py"  # return_value_to_state: "If data is returned ... 'COMPLETED'"
    return {
        "handled_failure": {
            "return_none": d("failed", final2, "completed", final3),
            "return_value": d("completed", final2, "completed", final3),
            "cleanup_leaf": d("failed", final2, "completed", final3),
        },
        "two_hops_down": {
            # Upstream not COMPLETED -> Pending "NotReady", which passes on down the chain.
            "after_failure": d(
                "not run (upstream failed)",
                f"{src}/engine.py",
                "not run (upstream failed)",
                f"{src}/task_engine.py",
            ),
            # Orchestration follows the state type: a COMPLETED state named Skipped is a success.
            "after_skip": d(
                "ran",
                f"{DOCS2}/concepts/states/#state-types",
                "ran",
                f"{DOCS3}/concepts/states#state-types",
            ),
            # resolve_inputs: "Do not allow uncompleted upstreams" -> UpstreamTaskError, which
            # the engine turns into Pending "NotReady" before the body is called.
            "failed_argument": d(
                "not run (upstream failed)",
                f"{src}/utilities/engine.py",
                "not run (upstream failed)",
                f"{src}/utilities/engine/__init__.py",
            ),
            # allow_failure lets through what is_failed(); 2.x stops there, so a NotReady (a
            # PENDING type) upstream still blocks c. 3.x also lets through "failure-derived
            # (PENDING/NotReady) states" (#21305, questioned in #22918).
            "tolerant_grandchild": d(
                "not run (upstream failed)",
                f"{src}/utilities/engine.py",
                "ran",
                f"{src}/utilities/engine/__init__.py",
            ),
            # A join waits on its parents' futures: one failed -> NotReady; allow_failure lets
            # a Failed through. No trigger rules: the flow tests states in Python.
            "join_default": d(
                "not run (upstream failed)",
                f"{src}/utilities/engine.py",
                "not run (upstream failed)",
                f"{src}/utilities/engine/__init__.py",
            ),
            "join_none_failed": d(
                NOT_EXPRESSIBLE,
                f"{DOCS2}/concepts/flows/",
                NOT_EXPRESSIBLE,
                f"{DOCS3}/concepts/flows",
            ),
            "join_one_failed": d(
                NOT_EXPRESSIBLE,
                f"{DOCS2}/concepts/flows/",
                NOT_EXPRESSIBLE,
                f"{DOCS3}/concepts/flows",
            ),
            "join_all_done": d(
                "ran",
                f"{src}/utilities/annotations.py",
                "ran",
                f"{src}/utilities/annotations.py",
            ),
        },
        "retry_semantics": {
            "delay_waited": d(
                "waited",
                f"{DOCS2}/concepts/tasks/#retries",
                "waited",
                f"{DOCS3}/how-to-guides/workflows/retries",
            ),
            "retry_some_errors": d(
                "expressible",
                f"{DOCS2}/concepts/tasks/#custom-retry-behavior",
                "expressible",
                f"{DOCS3}/how-to-guides/workflows/retries#retry-with-a-custom-condition",
            ),
            # A failed try with retries left becomes AwaitingRetry/Retrying, not Failed.
            "hook_on_retries": d(
                "last only",
                f"{src}/engine.py",
                "last only",
                # "the on_failure hook will not run until all retries have completed"
                f"{DOCS3}/how-to-guides/workflows/state-change-hooks",
            ),
        },
        # Both cancel sync calls the same way: an alarm signal in the main thread (it interrupts
        # a sleep), else an exception injected into the thread, which "cannot interrupt calls".
        # 2.x runs sync tasks and flows in worker threads; 3.x runs them on the caller's thread,
        # here the main one (a .submit()-ted task in 3.x would run on in a pool thread).
        "blocking_timeout": {
            "sleep_in_task": d(
                "ran on",
                f"{src}/_internal/concurrency/cancellation.py",
                "interrupted",
                f"{src}/_internal/concurrency/cancellation.py",
            ),
            # Submitted, the task runs in a pool thread in both: the alarm cannot reach it. 3.x
            # also ships ProcessPoolTaskRunner: there the task runs on its process's main thread.
            "sleep_submitted": d(
                "ran on",
                f"{src}/_internal/concurrency/cancellation.py",
                DEPENDS,
                f"{src}/task_runners.py",
            ),
            # An async task's timeout is a cancel scope around the awaited call: cancelled at
            # the await, in any thread.
            "sleep_async": d(
                "interrupted",
                f"{src}/_internal/concurrency/cancellation.py",
                "interrupted",
                f"{src}/_internal/concurrency/cancellation.py",
            ),
        },
        "run_timeout": {
            "task_stopped": d(
                "ran on",
                f"{src}/_internal/concurrency/cancellation.py",
                "stopped",
                f"{src}/_internal/concurrency/cancellation.py",
            ),
        },
        # allow_failure: "If the input is from a failed run, the attached exception will be
        # passed to your function", in its place in the list.
        "map_then_reduce": {
            "reducer_receives": d(
                "every position, the failure in its place",
                f"{src}/utilities/annotations.py",
                "every position, the failure in its place",
                f"{src}/utilities/annotations.py",
            ),
        },
        "rerun_completed": {
            # 2.x finds the retried flow run's completed task runs by their keys; 3.x makes new
            # task runs and reuses results only when they are persisted (cache policies).
            "first_again": d(
                "not again",
                f"{src}/engine.py",
                "runs again",
                f"{DOCS3}/concepts/caching",
            ),
            # A flow retry calls the flow function again: what failed and what never ran run now.
            "after_the_fixed": d(
                "runs",
                f"{src}/engine.py",
                "runs",
                f"{DOCS3}/how-to-guides/workflows/retries",
            ),
        },
        "hooks_in_test_mode": {
            "task_hook": d(
                "fires",
                f"{DOCS2}/guides/state-change-hooks/",
                "fires",
                f"{DOCS3}/how-to-guides/workflows/state-change-hooks",
            ),
            "flow_hook": d(
                "fires",
                f"{DOCS2}/guides/state-change-hooks/",
                "fires",
                f"{DOCS3}/how-to-guides/workflows/state-change-hooks",
            ),
        },
    }
