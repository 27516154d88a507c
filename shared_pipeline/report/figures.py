"""Timelines of task attempts (matplotlib, Agg): the same records give the same PNG bytes."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from shared_pipeline.faults_plan import HANG_FAULTS  # noqa: E402
from shared_pipeline.records import FlowRunRecord, RunRecord  # noqa: E402
from shared_pipeline.settings import Settings  # noqa: E402

DPI = 100
ROW_INCHES = 0.24
WIDTH_INCHES = 11.0
# Attempt outcomes as the steps log them.
ATTEMPT_STYLE = {
    "completed": {"color": "#43a047", "hatch": None, "label": "attempt completed"},
    "failed": {"color": "#e53935", "hatch": "////", "label": "attempt failed (or stopped)"},
    "hang_cap_reached": {
        "color": "#6d1b1b",
        "hatch": "xxxx",
        "label": "attempt ran to the hang cap (not interrupted)",
    },
    None: {"color": "#fb8c00", "hatch": "....", "label": "attempt never ended"},
}
SPAN_COLOR = "#b0bec5"


def _style() -> None:
    plt.rcdefaults()
    plt.rcParams.update(
        {
            "font.family": "DejaVu Sans",  # shipped with matplotlib: the same glyphs everywhere
            "font.size": 8,
            "hatch.linewidth": 0.6,
            "svg.hashsalt": "report",
        }
    )


def figure_key(*inputs: str) -> str:
    """Names a figure by everything that draws it: its inputs, this module's code, matplotlib."""
    digest = hashlib.sha256()
    for part in (Path(__file__).read_text(), matplotlib.__version__, *inputs):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _rows(run: FlowRunRecord) -> tuple[datetime | None, list[tuple[str, list, tuple | None]]]:
    """(origin, [(task, attempts, engine span)]) for the tasks that ran or were tracked."""
    attempts: dict[str, list] = {}
    for entry in run.attempt_log:
        attempts.setdefault(entry.task, []).append(entry)
    rows = []
    times = [e.started for e in run.attempt_log]
    for task in run.tasks:
        span = (task.started_at, task.ended_at) if task.started_at and task.ended_at else None
        logged = attempts.pop(task.task, [])
        if span or logged:
            rows.append((task.task, logged, span))
            times += [span[0]] if span else []
    for task, logged in attempts.items():  # logged by a step the engine did not report
        rows.append((task, logged, None))
    return (min(times) if times else None), rows


def timeline(title: str, panels: list[tuple[str, RunRecord]]) -> bytes:
    """One scenario, every engine stacked (shared time axis): attempts as bars, by outcome."""
    _style()
    prepared = []
    for label, record in panels:
        for run in record.runs:
            origin, rows = _rows(run)
            suffix = f" · run {run.run}" if len(record.runs) > 1 else ""
            heading = f"{label}{suffix}: {run.native_state} ({run.wall_seconds:.2f} s)"
            budget = record.settings.get("train_timeout_s", Settings().train_timeout_s)
            prepared.append((heading, origin, rows, budget))
    heights = [max(len(rows), 1) for _, _, rows, _ in prepared]
    fig, axes = plt.subplots(
        len(prepared),
        1,
        sharex=True,
        squeeze=False,
        figsize=(WIDTH_INCHES, ROW_INCHES * (sum(heights) + 3 * len(prepared)) + 1.2),
        gridspec_kw={"height_ratios": heights},
    )
    ends = [
        (t - origin).total_seconds()
        for _, origin, rows, _ in prepared
        for _, logged, span in rows
        for t in [*(e.ended or e.started for e in logged), *(span[1:] if span else ())]
    ]
    right = max(ends, default=0.0) or 1.0
    min_width = right / 400  # a few pixels: millisecond attempts stay visible
    used = set()
    for ax, (heading, origin, rows, budget) in zip(axes[:, 0], prepared, strict=True):
        ax.set_title(heading, loc="left", fontsize=9)
        for y, (_, logged, span) in enumerate(rows):
            if span:
                left = (span[0] - origin).total_seconds()
                width = max((span[1] - span[0]).total_seconds(), min_width)
                ax.barh(y, width, left=left, height=0.8, color=SPAN_COLOR, zorder=1)
                used.add("span")
            for entry in logged:
                style = ATTEMPT_STYLE.get(entry.outcome, ATTEMPT_STYLE[None])
                left = (entry.started - origin).total_seconds()
                end = entry.ended or entry.started
                width = max((end - entry.started).total_seconds(), min_width)
                ax.barh(
                    y,
                    width,
                    left=left,
                    height=0.5,
                    color=style["color"],
                    hatch=style["hatch"],
                    edgecolor="white" if style["hatch"] else style["color"],
                    linewidth=0.4,
                    zorder=2,
                )
                used.add(entry.outcome if entry.outcome in ATTEMPT_STYLE else None)
                if entry.fault in HANG_FAULTS:  # where the timeout should have stopped it
                    # The engine's clock starts with its task run; the step's a little later.
                    start = (span[0] - origin).total_seconds() if span else left
                    ax.plot([start + budget] * 2, [y - 0.45, y + 0.45], color="black", lw=1.2)
                    used.add("budget")
        ax.set_yticks(range(len(rows)), [task for task, _, _ in rows])
        ax.set_ylim(len(rows) - 0.4 if rows else 0.6, -0.6)
        ax.grid(axis="x", color="#e0e0e0", linewidth=0.5, zorder=0)
        ax.set_axisbelow(True)
    axes[-1, 0].set_xlim(0, right * 1.02)
    axes[-1, 0].set_xlabel("seconds since the flow run's first task started")
    handles = [
        Patch(facecolor=s["color"], hatch=s["hatch"], edgecolor="white", label=s["label"])
        for outcome, s in ATTEMPT_STYLE.items()
        if outcome in used
    ]
    if "budget" in used:
        handles.append(Line2D([], [], color="black", lw=1.2, label="timeout budget expires"))
    if "span" in used:
        handles.append(Patch(facecolor=SPAN_COLOR, label="task run as the engine recorded it"))
    fig.suptitle(title, x=0.01, ha="left", fontsize=10)
    fig.legend(handles=handles, loc="upper right", ncols=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _png(fig)


def overhead_plot(
    series: dict[tuple[str, str], list[tuple[int, float | None, float | None, float | None]]],
) -> bytes:
    """Log-log: orchestration overhead per task (ms) against N, one line per engine and shape,
    through the median run, with a bar from the fastest run to the slowest.
    """
    _style()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    styles = {"chain": "-", "fanout": "--"}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = list(dict.fromkeys(label for label, _ in series))
    for (label, shape), points in series.items():
        kept = [(n, ms, lo, hi) for n, ms, lo, hi in points if ms is not None and ms > 0]
        if not kept:
            continue
        # A run faster than plain Python's median has no overhead to draw on a log axis.
        below = [ms - max(lo or ms, ms / 100) for _, ms, lo, _ in kept]
        above = [(hi or ms) - ms for _, ms, _, hi in kept]
        ax.errorbar(
            [n for n, *_ in kept],
            [ms for _, ms, *_ in kept],
            yerr=[below, above],
            fmt=styles.get(shape, ":"),
            marker="o",
            capsize=2,
            color=colours[labels.index(label) % len(colours)],
            label=f"{label}, {shape}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (tasks per flow run)")
    ax.set_ylabel("overhead per task against plain Python (ms)")
    ax.grid(which="both", color="#e0e0e0", linewidth=0.5)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


def drift_caption() -> str:
    return "Model drift: the first production model against each month's retrained model"


def drift(runs: list[tuple[str, RunRecord]]) -> bytes:
    """RMSE on each month: the seeded production model (trained on an older month) and the model
    each backfilled run trained on the month before, one line per runtime's records.
    """
    _style()
    fig, ax = plt.subplots(figsize=(WIDTH_INCHES * 0.7, 3.2), dpi=DPI)
    markers = "osD^vP*X"
    label, first = runs[0]
    base = [(r.schedule.valid_month, r.schedule.baseline_rmse) for r in first.runs if r.schedule]
    base = [(m, v) for m, v in base if v is not None]
    month = first.settings.get("production_month", "")
    ax.plot(
        [m for m, _ in base],
        [v for _, v in base],
        color="#e53935",
        linewidth=2,
        marker="o",
        label=f"the {month} model, never retrained ({label})",
    )
    for index, (name, record) in enumerate(runs):
        points = [(r.schedule.valid_month, r.schedule.rmse) for r in record.runs if r.schedule]
        points = [(m, v) for m, v in points if v is not None]
        ax.plot(
            [m for m, _ in points],
            [v for _, v in points],
            color="#1e88e5",
            alpha=0.8,
            linewidth=1,
            linestyle="--",
            marker=markers[index % len(markers)],
            markerfacecolor="none",
            label=f"retrained on the month before: {name}",
        )
    ax.set_xlabel("month the model is validated on")
    ax.set_ylabel("RMSE (minutes)")
    ax.set_ylim(bottom=0)
    ax.set_title(drift_caption())
    ax.grid(axis="y", linewidth=0.3)
    ax.legend(loc="lower left", fontsize=6, frameon=False)
    fig.tight_layout()
    return _png(fig)
