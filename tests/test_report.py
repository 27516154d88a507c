"""The report generator: deterministic, driven by records only, and every link and excerpt real.

Needs no engine: it reads the records under results/ (copied, so the tests never touch them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shared_pipeline import engine_table
from shared_pipeline.control import ControlAdapter
from shared_pipeline.engine_table import RUNTIME_OF
from shared_pipeline.harness import run_scenario
from shared_pipeline.probes import PROBE_IDS, read_probe
from shared_pipeline.records import DEFAULT_BACKEND, read_record
from shared_pipeline.report import engines
from shared_pipeline.report.engines import ENGINES, FEATURES, WIRINGS, runtime_label
from shared_pipeline.report.graphs import flowchart
from shared_pipeline.report.lessons import worker_died
from shared_pipeline.report.markers import MarkerError, parse_file, wiring_blocks
from shared_pipeline.report.render import build
from shared_pipeline.scenarios import SCENARIOS, get_scenario
from shared_pipeline.settings import Settings
from shared_pipeline.wiring import wiring_of

ROOT = Path(__file__).resolve().parents[1]


def run_records(results: Path) -> list[Path]:
    """The run records under `results` (results/bench/ holds benchmark figures, results/ui/ the
    screenshots' manifests, not records).
    """
    return sorted(p for p in results.glob("*/*.json") if p.parent.name not in ("bench", "ui"))


# One test worker runs them all: the report (about 25 s from the records) is then built once.
pytestmark = [pytest.mark.xdist_group("report")]

EXCERPT = re.compile(r"\[([\w./-]+\.py):(\d+)\]\(([^)#]+)#L(\d+)-L(\d+)\)")
LINK = re.compile(r"\]\(([^)\s]+)\)|(?:src|href)=\"([^\"]+)\"")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's records (one control run if it has none yet)."""
    results = tmp_path_factory.mktemp("records") / "results"
    if run_records(ROOT / "results"):
        shutil.copytree(ROOT / "results", results)
    else:
        out = results.parent
        run_scenario(
            ControlAdapter(),
            get_scenario("db_down"),
            out,
            base_settings=Settings(trips_per_month=2000),
        )
    return results


@pytest.fixture(scope="module")
def report(results: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report")
    files = build(ROOT, out, results)
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    return out, files


def test_regenerating_from_the_same_records_is_byte_identical(results: Path, report) -> None:
    out, first = report
    again = build(ROOT, out, results, cached=False)  # every figure drawn again

    assert again.keys() == first.keys()
    assert [p for p in first if again[p] != first[p]] == []
    assert any(p.suffix == ".png" for p in first)


def test_altering_a_record_changes_the_report(results: Path, report, tmp_path: Path) -> None:
    _, before = report
    altered = tmp_path / "results"
    shutil.copytree(results, altered)
    path = run_records(altered)[0]
    record = json.loads(path.read_text())
    record["runs"][0]["wall_seconds"] = 4321.987
    record["runs"][0]["native_state"] = "StateNobodyTyped"
    for entry in record["runs"][0]["attempt_log"]:
        entry["outcome"] = "failed"  # the timeline's bars change colour
    path.write_text(json.dumps(record))

    after = build(ROOT, tmp_path, altered)

    text = "\n".join(_pages(after).values())
    assert "4321.99" in text and "StateNobodyTyped" in text
    assert "4321.99" not in "\n".join(_pages(before).values())
    png = Path("docs", "report", f"timeline-{record['scenario']}.png")
    assert after[png] != before[png]


def test_every_code_excerpt_sits_between_its_markers(report) -> None:
    out, files = report
    text = files[Path("REPORT.md")].decode()
    excerpts = EXCERPT.findall(text)

    assert excerpts, "the report shows no code excerpt"
    for path, first, link, start, end in excerpts:
        source = (out / link).resolve()
        assert source == (ROOT / path).resolve()
        lines = source.read_text().splitlines()
        assert int(first) == int(start)
        assert re.match(r"\s*# report: begin \w+$", lines[int(start) - 2]), (path, start)
        assert re.match(r"\s*# report: end \w+$", lines[int(end)]), (path, end)


def test_markers_pair_up_in_every_wiring_and_control_and_prefect_mark_every_feature() -> None:
    for wiring in WIRINGS.values():
        blocks = wiring_blocks(ROOT, wiring.sources, set(FEATURES))  # raises if unbalanced
        if wiring.key in {"python", "prefect2"}:
            assert sorted(blocks) == sorted(FEATURES), wiring.key


def test_markers_must_pair_and_name_known_features(tmp_path: Path) -> None:
    source = tmp_path / "wiring.py"
    source.write_text(
        "# report: begin retries\n\nx = 1  # counted\n# a comment\n# report: end retries\n"
    )
    (block,) = parse_file(source, "wiring.py", {"retries"})["retries"]
    assert (block.first, block.last, block.code_lines) == (2, 4, 1)

    for broken in (
        "# report: begin retries\n",
        "# report: end retries\n",
        "# report: begin retry\n# report: end retry\n",
        # Blocks never nest or overlap: a line is counted for one feature only.
        "# report: begin retries\n# report: begin timeout\nx = 1\n# report: end timeout\n"
        "# report: end retries\n",
    ):
        source.write_text(broken)
        with pytest.raises(MarkerError):
            parse_file(source, "wiring.py", {"retries", "timeout"})


def _anchors(text: str) -> set[str]:
    """Explicit anchors, and the ones GitHub gives headings (lower case, spaces to hyphens)."""
    headings = re.findall(r"^#+ (.+)$", text, re.M)
    slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
    return set(re.findall(r'<a id="([^"]+)"></a>', text)) | slugs


def test_every_relative_link_and_image_exists(report) -> None:
    out, files = report
    pages = _pages(files)
    assert len(pages) > 1, "REPORT.md has no evidence pages"
    for page, text in pages.items():
        targets = [a or b for a, b in LINK.findall(text)]
        for target in targets:
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            assert not Path(path).is_absolute(), (page, target)
            file = (out / page).parent / path if path else out / page
            assert file.exists(), (page, target)
            if anchor and file.suffix == ".md":
                linked = file.resolve().relative_to(out.resolve())
                assert anchor in _anchors(pages[linked]), (page, target)
    images = [a or b for a, b in LINK.findall(pages[Path("REPORT.md")])]
    assert any(image.endswith(".png") for image in images)


def test_an_engine_that_lands_later_appears_with_its_label(results: Path, tmp_path: Path) -> None:
    later = tmp_path / "results"
    shutil.copytree(results, later)
    source = run_records(later)[0]
    record = json.loads(source.read_text())
    record["engine"] = "airflow"
    (later / "airflow").mkdir(exist_ok=True)
    (later / "airflow" / source.name).write_text(json.dumps(record))

    text = build(ROOT, tmp_path, later)[Path("REPORT.md")].decode()

    assert f"| {ENGINES['airflow'].label} |" in text or f" {ENGINES['airflow'].label} |" in text


def test_committed_records_name_no_absolute_path() -> None:
    for path in sorted((ROOT / "results").glob("**/*.json")):
        text = path.read_text()
        assert str(ROOT) not in text, path
        if "probes" in path.relative_to(ROOT / "results").parts:
            assert read_probe(path).machine, path
        elif path.parent.name not in ("bench", "ui"):
            record = read_record(path)
            assert not Path(record.run_dir).is_absolute(), path
            assert record.machine, path


def test_runs_on_another_database_get_their_own_matrix(results: Path, tmp_path: Path) -> None:
    other = tmp_path / "results"
    shutil.copytree(results, other)
    source = run_records(other)[0]
    record = json.loads(source.read_text())
    record["db_backend"] = "postgresql"
    (source.parent / "postgresql").mkdir(exist_ok=True)
    (source.parent / "postgresql" / source.name).write_text(json.dumps(record))

    text = build(ROOT, tmp_path, other)[Path("REPORT.md")].decode()

    assert "with the source database on postgresql" in text


@pytest.mark.timeout(180)
def test_the_report_command_writes_nothing_in_home(results: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # One engine's records: enough for every kind of figure the command draws.
    shutil.copytree(results / "python", tmp_path / "root" / "results" / "python")
    env = {k: v for k, v in os.environ.items() if k != "MPLCONFIGDIR"} | {"HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "shared_pipeline.report", "--root", "root", "--out", "out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "REPORT.md").is_file()
    assert list(home.iterdir()) == []  # matplotlib's font cache went under root/runs/
    assert (tmp_path / "root" / "runs" / ".cache" / "mpl").is_dir()


def test_graphs_do_not_depend_on_the_order_tasks_were_recorded(results: Path) -> None:
    """Engines list tasks in run order (Prefect 1's sort differs per process): same chart."""
    charted = 0
    for path in run_records(results):
        for run in read_record(path).runs:
            chart = flowchart(run)
            if chart is None:
                continue
            shuffled = run.model_copy(update={"tasks": run.tasks[::-1], "graph": run.graph[::-1]})
            assert flowchart(shuffled) == chart, path.name
            charted += 1
    assert charted > 0


def test_each_explanation_is_said_once(report, results: Path) -> None:
    _, files = report
    text = "\n".join(_pages(files).values())  # REPORT.md and its pages
    said = set()
    for engine in engine_table.WIRINGS:
        declared = wiring_of(engine)
        assert declared is not None
        said |= {item.reason for item in (*declared.rules, *declared.deviations)}
        said |= {declared.graph_note} - {""}
    for path in run_records(results):
        said |= {limitation.reason for limitation in read_record(path).limitations}
    assert said
    for explanation in said:
        assert text.count(explanation) <= 1, explanation


def _pages(files: dict) -> dict[Path, str]:
    """REPORT.md and its pages under docs/report/, as text."""
    return {p: data.decode() for p, data in files.items() if p.suffix == ".md"}


PROSE_WORDS = 8  # shorter lines (a heading's words, "Registry: ...") may well recur


def _prose(text: str) -> list[str]:
    """The paragraphs and bullets of prose: not tables, code, headings, images or HTML."""
    found, current, fenced = [], [], False

    def close() -> None:
        if current:
            found.append(" ".join(" ".join(current).split()))
            current.clear()

    for line in text.splitlines():
        if line.startswith("```"):
            close()
            fenced = not fenced
            continue
        if fenced or not line.strip() or line.startswith(("|", "<", "#", "!")):
            close()
            continue
        if line.startswith("- "):
            close()
        current.append(line.removeprefix("- "))
    close()
    return [p for p in found if len(p.split()) >= PROSE_WORDS]


def test_the_report_is_short_enough_to_read_in_one_sitting(results: Path) -> None:
    # Built where it lives (its links to the wirings' code are as long as in the checkout).
    lines = build(ROOT, ROOT, results)[Path("REPORT.md")].decode().splitlines()

    assert len(lines) <= 1200
    assert max(len(line) for line in lines) <= 400


def test_every_lesson_is_in_the_summary_and_every_scenario_page_in_a_lesson(report) -> None:
    _, files = report
    text = files[Path("REPORT.md")].decode()
    summary = text.split('<a id="answers"></a>')[1].split("\n## ", 2)[1]
    lessons = re.findall(r'<a id="(lesson-[\w-]+)"></a>', text)
    scenario_pages = [p for p in _pages(files) if p.stem in set(SCENARIOS)]

    assert len(lessons) >= 10 and scenario_pages
    for anchor in lessons:
        assert f"](#{anchor})" in summary, anchor
    lesson_text = text.split('<a id="trade-offs"></a>')[0]
    for page in scenario_pages:
        assert f"]({page.as_posix()})" in lesson_text, page


def test_no_paragraph_of_prose_appears_twice(report) -> None:
    _, files = report
    said = Counter(p for text in _pages(files).values() for p in _prose(text))

    assert said, "no prose found"
    assert [p for p, n in said.items() if n > 1] == []


def test_every_probe_answer_in_the_report_comes_from_its_record(report, results: Path) -> None:
    _, files = report
    text = files[Path("REPORT.md")].decode()
    page = files.get(Path("docs", "report", "probes.md"), b"").decode()
    records = sorted(results.glob("probes/*/*.json"))

    assert records, "no probe records"
    for path in records:
        record = read_probe(path)
        assert f"probes/{record.engine}/{record.probe}.json" in page, path
        questions = {q.key: q for q in PROBE_IDS[record.probe].questions}
        for key, seen in record.answers.items():
            asks = questions[key].asks
            row = next(line for line in text.splitlines() if line.startswith(f"| {asks} |"))
            assert seen.answer in row, (path, key)


def test_a_deployed_runtime_is_compared_with_its_test_mode_not_given_columns(
    results: Path, tmp_path: Path
) -> None:
    files = build(ROOT, tmp_path, _with_deployed(results, tmp_path, "happy_path"))
    text = files[Path("REPORT.md")].decode()

    header = next(line for line in text.splitlines() if line.startswith("| question |"))
    assert "deployed" not in header
    row = next(
        line for line in text.splitlines() if line.startswith("| Prefect 3.x") and "1 of 1" in line
    )
    assert "[1 of 1 scenarios alike](docs/report/deployed.md#prefect3)" in row
    page = files[Path("docs", "report", "deployed.md")].decode()
    assert "deployed: a server and a worker" in page and "[happy_path](happy_path.md)" in page


def test_the_deployed_lesson_says_what_changed_aspect_by_aspect(
    results: Path, tmp_path: Path
) -> None:
    def retries_wait_longer(record: dict) -> None:
        # As if each retry had waited 2 s longer for a worker: the same states, a longer delay.
        for run in record["runs"]:
            for entry in run["attempt_log"]:
                if entry["attempt"] > 1:
                    late = 2.0 * (entry["attempt"] - 1)
                    entry["started"] = _later(entry["started"], late)
                    entry["ended"] = entry["ended"] and _later(entry["ended"], late)

    both = _with_deployed(results, tmp_path, "db_maintenance", retries_wait_longer)
    files = build(ROOT, tmp_path, both)
    text = files[Path("REPORT.md")].decode()

    row = next(
        line for line in text.splitlines() if line.startswith("| Prefect 3.x") and "1 of 1" in line
    )
    delay = re.search(r"retry delay ([\d.]+) → ([\d.]+) s to the next try", row)
    assert delay, row
    before, after = float(delay[1]), float(delay[2])
    assert after == pytest.approx(before + 2.0, abs=0.05)
    page = files[Path("docs", "report", "deployed.md")].decode()
    assert "| retry delay | [db_maintenance](db_maintenance.md) |" in page


def _with_deployed(
    results: Path, tmp_path: Path, scenario: str, edit: Callable[[dict], None] | None = None
) -> Path:
    """The records, with Prefect 3.x's record of `scenario` (edited) as if run deployed too."""
    both = tmp_path / "results"
    shutil.copytree(results, both, ignore=shutil.ignore_patterns("*-deployed"))
    record = json.loads((both / "prefect3" / f"{scenario}.json").read_text())
    if edit is not None:
        edit(record)
    record |= {"engine": "prefect3-deployed", "runtime": "deployed: a server and a worker"}
    (both / "prefect3-deployed").mkdir(exist_ok=True)
    (both / "prefect3-deployed" / f"{scenario}.json").write_text(json.dumps(record))
    return both


def _later(stamp: str, seconds: float) -> str:
    return (datetime.fromisoformat(stamp) + timedelta(seconds=seconds)).isoformat()


def test_every_runtime_that_lost_a_worker_has_its_row_and_no_column(report, results: Path) -> None:
    _, files = report
    text = files[Path("REPORT.md")].decode()
    header = next(line for line in text.splitlines() if line.startswith("| question |"))
    lesson = text.split('<a id="lesson-worker"></a>')[1].split("<a id=")[0]
    killed = [read_record(p) for p in sorted(results.glob("*/worker_killed.json"))]
    assert killed, "no worker_killed record"
    for record in killed:
        assert record.engine not in header
        label = engines.engine(RUNTIME_OF.get(record.engine, record.engine)).label
        where = runtime_label(record)
        rows = [line for line in lesson.splitlines() if line.startswith(f"| {label}")]
        assert any((f"{label}, {where} " if where else f"{label} ") in row for row in rows), label
        noticed = worker_died(record)
        assert noticed is not None and noticed.detail in lesson


def test_the_drift_picture_and_its_table_come_from_the_backfill_records(
    results: Path, report
) -> None:
    """Every figure the schedule lesson's table gives is a record's: the first production model's
    RMSE on each month, and each runtime's retrained model's, both as the backfill stored them.
    """
    _, files = report
    text = files[Path("REPORT.md")].decode()
    # The default database's records (the control also runs the backfill on PostgreSQL).
    found = [read_record(p) for p in results.rglob("monthly_backfill.json")]
    records = [r for r in found if r.db_backend == DEFAULT_BACKEND]
    assert records, "results/ holds no monthly_backfill record"
    assert Path("docs", "report", "drift.png") in files
    assert "](docs/report/drift.png)" in text
    header = next(line for line in text.splitlines() if line.startswith("| validated on |"))
    months = header.strip("| ").split(" | ")[1:]
    rows = {
        line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ")[1:]
        for line in text.splitlines()
        if line.startswith(("| the ", "| retrained the month before:"))
    }
    baseline = next(cells for label, cells in rows.items() if label.startswith("the "))
    retrained = [cells for label, cells in rows.items() if label.startswith("retrained")]
    assert len(retrained) == len(records)
    for record in records:
        scored = {r.schedule.valid_month: r.schedule for r in record.runs if r.schedule}
        assert [f"{scored[m].baseline_rmse:.2f}" for m in months] == baseline
        assert [f"{scored[m].rmse:.2f}" for m in months] in retrained
        # The drift the lesson is about: the old model gets worse, the retrained ones do not.
        assert scored[months[-1]].baseline_rmse > scored[months[0]].baseline_rmse
        assert all(s.rmse < s.baseline_rmse for s in scored.values())
