"""`python -m shared_pipeline.bench --engine NAME --out DIR`: one engine's overhead figures.

Runs in the engine's own virtualenv; writes DIR/<engine>.json. Prints progress as it goes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared_pipeline.bench import BENCH, REPEATS, REPEATS_LARGEST, SHAPES, SIZES
from shared_pipeline.bench.sampler import Sampler
from shared_pipeline.loading import load_module

PROFILED = (SHAPES[0], SIZES[1])  # where the time goes: one sampled chain of the middle size
BUDGET_S = 120.0  # noxfile.py gives each engine its share of the 30 minutes the bench may take
DEFAULT_REGIME = "back to back"


def machine_summary() -> str:
    # The harness has the same line, but importing it would pull pandas into the import timing.
    pages = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        system = platform.freedesktop_os_release()["PRETTY_NAME"]
    except (OSError, KeyError):
        system = platform.system()
    return f"{os.cpu_count()} cores, {pages / 2**30:.0f} GiB, {system} ({platform.machine()})"


def peak_rss_mb(pids: list[int]) -> float:
    """Peak resident memory of this process plus the engine's own helper processes."""
    total_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total_kb += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0
        )
    return round(total_kb / 1024, 1)


def _seconds(figure: dict) -> float:
    return figure.get("median_s", figure.get("predicted_s", 0.0))


def _predict(done: dict[str, dict], sizes: tuple[int, ...], n: int, one_task_s: float) -> float:
    """One run's time at `n`, from the two largest sizes measured so far (a flow run of one task,
    `one_task_s`, is the smallest): the larger of the straight line through them (a fixed cost
    per flow run plus a cost per task) and the power law through them (time growing faster than
    n, as when a scheduler re-reads the whole run on every pass).
    """
    points = [(1, one_task_s), *((size, _seconds(done[str(size)])) for size in sizes)]
    if len(points) < 2:
        return one_task_s * n
    (n1, t1), (n2, t2) = points[-2:]
    line = t2 + max(t2 - t1, 0.0) / (n2 - n1) * (n - n2)
    if t1 <= 0 or t2 <= t1:
        return line
    return max(line, t2 * (n / n2) ** (math.log(t2 / t1) / math.log(n2 / n1)))


def timed(run: Callable[[int], None], n: int) -> float:
    started = time.perf_counter()
    run(n)
    return time.perf_counter() - started


@dataclass
class Regime:
    """One regime's runs: times per (shape, N), predictions for skipped sizes, the engine's
    evidence per run (after()), and the wall time each run cost with its set-up.
    """

    samples: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    skipped: dict[tuple[str, int], float] = field(default_factory=dict)
    evidence: dict[tuple[str, int], list[dict]] = field(default_factory=dict)
    cost: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    def figures(self) -> dict[str, dict[str, dict]]:
        cells: dict[str, dict[str, dict]] = {shape: {} for shape in SHAPES}
        for (shape, n), runs in self.samples.items():
            cells[shape][str(n)] = {
                "median_s": round(statistics.median(runs), 9),
                "min_s": round(min(runs), 9),
                "max_s": round(max(runs), 9),
                "samples_s": [round(seconds, 9) for seconds in runs],
                **({"evidence": self.evidence[shape, n]} if (shape, n) in self.evidence else {}),
            }
        for (shape, n), predicted in self.skipped.items():
            cells[shape][str(n)] = {"skipped": True, "predicted_s": round(predicted, 1)}
        return {
            shape: dict(sorted(by_n.items(), key=lambda c: int(c[0])))
            for shape, by_n in cells.items()
            if by_n  # a shape this regime does not measure
        }


def run_regime(
    engine: Any,
    name: str,
    sizes: tuple[int, ...],
    shapes: tuple[str, ...],
    repeats: int,
    budget_s: float,
    one_task_s: float,
    profile: dict[str, float],
    say: Callable[[str], None],
    predict: bool = True,
) -> Regime:
    """Every size once, smallest first (while one run is predicted to fit what is left, if
    `predict`), then repeats, smallest sizes first, while one more run (as it cost, with its
    set-up) still fits: the budget buys the widest range of sizes, then the small sizes' 5
    repeats, then the largest size's 3. Samples one run into `profile` if it is empty.
    """
    regime = Regime()
    deadline = time.perf_counter() + budget_s
    before = getattr(engine, "before", None)
    after = getattr(engine, "after", None)

    def measure(shape: str, n: int) -> float:
        began = time.perf_counter()
        if before:
            before(name)
        run = getattr(engine, shape)
        if (shape, n) == PROFILED and not profile:
            with Sampler() as sampler:
                seconds = timed(run, n)
            profile.update(sampler.shares())
        else:
            seconds = timed(run, n)
        if after:
            regime.evidence.setdefault((shape, n), []).append(after())
        regime.samples.setdefault((shape, n), []).append(seconds)
        regime.cost.setdefault((shape, n), []).append(time.perf_counter() - began)
        return seconds

    for index, n in enumerate(sizes):
        for shape in shapes:
            smaller = sizes[:index]
            if predict and smaller and (shape, smaller[-1]) in regime.skipped:
                # At least linear in n: a size larger than a skipped one is skipped too.
                regime.skipped[shape, n] = regime.skipped[shape, smaller[-1]] * n / smaller[-1]
                say(f"{shape} n={n}: skipped, one run would take ~{regime.skipped[shape, n]:.0f} s")
                continue
            done = {str(m): {"median_s": regime.samples[shape, m][0]} for m in smaller}
            predicted = _predict(done, smaller, n, one_task_s)
            if predict and predicted > deadline - time.perf_counter():
                regime.skipped[shape, n] = predicted
                say(f"{shape} n={n}: skipped, one run would take ~{predicted:.0f} s")
                continue
            say(f"{shape} n={n}: {measure(shape, n):.3f} s")
    # Then repeats, smallest sizes first, while one more run (as it cost) still fits.
    for shape, n in sorted(regime.samples, key=lambda cell: cell[1]):
        runs = regime.samples[shape, n]
        wanted = min(repeats, REPEATS_LARGEST) if n == max(SIZES) else repeats
        while len(runs) < wanted and min(regime.cost[shape, n]) <= deadline - time.perf_counter():
            measure(shape, n)
    for (shape, n), runs in regime.samples.items():
        say(f"{shape} n={n}: median {statistics.median(runs):.3f} s ×{len(runs)}")
    return regime


def regimes(engine: Any) -> dict[str, tuple[str, tuple[int, ...], tuple[str, ...]]]:
    """The engine's regimes (what each is, its sizes and shapes), or the one every engine has:
    runs back to back.
    """
    return getattr(engine, "REGIMES", None) or {
        DEFAULT_REGIME: ("back to back, after a first warm-up run", SIZES, SHAPES)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared_pipeline.bench")
    parser.add_argument("--engine", required=True, choices=sorted(BENCH))
    parser.add_argument("--out", type=Path, required=True, help="writes OUT/<engine>.json")
    parser.add_argument("--workdir", type=Path, required=True, help="engine state (emptied)")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=BUDGET_S,
        help="time this engine may take (its regimes share it); larger sizes get fewer repeats "
        f"(at least 1) or are skipped when even one run would not fit (default {BUDGET_S:g})",
    )
    args = parser.parse_args(argv)

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    t0 = time.perf_counter()
    engine = load_module(BENCH[args.engine])
    loaded_s = time.perf_counter() - t0
    parts = dict(engine.start(args.workdir.resolve()) or {})
    # What start() did not split off is its import (with the engine module's own).
    import_s = loaded_s + parts.pop(
        "import", time.perf_counter() - t0 - loaded_s - sum(parts.values())
    )
    parts["first flow run"] = timed(engine.chain, 1)
    one_task_s = timed(engine.chain, 1)  # warm: where the predictions of larger sizes start
    say = lambda text: print(f"[bench {args.engine}] {text}", flush=True)  # noqa: E731
    split = ", ".join(f"{part} {seconds:.2f} s" for part, seconds in parts.items())
    say(f"import {import_s:.2f} s; to the first flow run's end: {split}; then {one_task_s:.2f} s")

    profile: dict[str, float] = {}
    measured: dict[str, dict] = {}
    spent = time.perf_counter()
    try:
        ways = regimes(engine)
        for index, (name, (about, sizes, shapes)) in enumerate(ways.items()):
            # Each regime gets an equal share of what is left: what one leaves, the next gets.
            left = args.budget_s - (time.perf_counter() - spent)
            say(f"regime {name!r}: {about}")
            regime = run_regime(
                engine,
                name,
                sizes,
                shapes,
                args.repeats,
                left / (len(ways) - index),
                one_task_s,
                profile,
                say,
                # A later regime's cost is its set-up's, not N's: each size it names runs.
                predict=index == 0,
            )
            measured[name] = {"about": about, "runs": regime.figures()}
        peak = peak_rss_mb(engine.pids())
    finally:
        engine.stop()
    record = {
        "engine": args.engine,
        "engine_version": engine.VERSION,
        "python_version": platform.python_version(),
        "machine": machine_summary(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "repeats_largest": min(args.repeats, REPEATS_LARGEST),
        "startup": {
            "import_s": round(import_s, 3),
            "first_flow_s": round(sum(parts.values()), 3),
            "first_flow_parts_s": {part: round(seconds, 3) for part, seconds in parts.items()},
        },
        "peak_rss_mb": peak,
        "profile": {"shape": PROFILED[0], "n": PROFILED[1], "busy_shares": profile},
        "regimes": measured,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.engine}.json").write_text(json.dumps(record, indent=2) + "\n")
    say(f"wrote {args.out / (args.engine + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
