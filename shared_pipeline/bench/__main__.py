"""`python -m shared_pipeline.bench --engine NAME --out DIR`: one engine's overhead figures.

Runs in the engine's own virtualenv; writes DIR/<engine>.json. Prints progress as it goes.
"""

from __future__ import annotations

import argparse
import importlib
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
from datetime import UTC, datetime
from pathlib import Path

from shared_pipeline.bench import BENCH, REPEATS, SHAPES, SIZES
from shared_pipeline.bench.sampler import Sampler

PROFILED = (SHAPES[0], SIZES[1])  # where the time goes: one sampled chain of the middle size
# Five engines with orchestration overhead share the 15 minutes `nox -s bench` may take.
BUDGET_S = 130.0


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


def _predict(done: dict[str, dict], sizes: tuple[int, ...], n: int) -> float:
    """One run's time at `n`, from the smaller sizes: linear in n, or steeper if the last two
    sizes grew faster than linearly (a scheduler that re-reads the whole run on every pass).
    """
    if not sizes:
        return 0.0
    last = _seconds(done[str(sizes[-1])])
    exponent = 1.0
    if len(sizes) >= 2:
        before = _seconds(done[str(sizes[-2])])
        if before > 0 and last > 0:
            exponent = max(1.0, math.log(last / before) / math.log(sizes[-1] / sizes[-2]))
    return last * (n / sizes[-1]) ** exponent


def timed(run: Callable[[int], None], n: int) -> float:
    started = time.perf_counter()
    run(n)
    return time.perf_counter() - started


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
        help="time this engine may take; larger sizes get fewer repeats (at least 1) or are "
        f"skipped when even one run would not fit (default {BUDGET_S:g})",
    )
    args = parser.parse_args(argv)

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    t0 = time.perf_counter()
    engine = importlib.import_module(BENCH[args.engine])
    engine.start(args.workdir.resolve())
    import_s = time.perf_counter() - t0
    first_s = timed(engine.chain, 1)
    say = lambda text: print(f"[bench {args.engine}] {text}", flush=True)  # noqa: E731
    say(f"import {import_s:.2f} s, first flow run {first_s:.2f} s")

    figures: dict[str, dict[str, dict]] = {shape: {} for shape in SHAPES}
    profile: dict[str, float] = {}
    deadline = time.perf_counter() + args.budget_s
    try:
        for index, n in enumerate(SIZES):
            # Time grows about linearly with n: predict one run from the last size's median, and
            # give every shape of this size the same number of repeats the budget still allows.
            one = {shape: _predict(figures[shape], SIZES[:index], n) for shape in SHAPES}
            left = deadline - time.perf_counter()
            level = sum(one.values())
            repeats = args.repeats if level * args.repeats <= left else int(left // level)
            for shape in SHAPES:
                if repeats < 1 and one[shape] > deadline - time.perf_counter():
                    figures[shape][str(n)] = {"skipped": True, "predicted_s": round(one[shape], 1)}
                    say(f"{shape} n={n}: skipped, one run would take ~{one[shape]:.0f} s")
                    continue
                run = getattr(engine, shape)
                samples = []
                for _ in range(max(repeats, 1)):
                    if (shape, n) == PROFILED and not profile:
                        with Sampler() as sampler:
                            samples.append(timed(run, n))
                        profile = sampler.shares()
                    else:
                        samples.append(timed(run, n))
                figures[shape][str(n)] = {
                    "median_s": round(statistics.median(samples), 9),
                    "min_s": round(min(samples), 9),
                    "max_s": round(max(samples), 9),
                    "samples_s": [round(s, 9) for s in samples],
                }
                say(f"{shape} n={n}: median {statistics.median(samples):.3f} s ×{len(samples)}")
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
        "startup": {"import_s": round(import_s, 3), "first_flow_s": round(first_s, 3)},
        "peak_rss_mb": peak,
        "profile": {"shape": PROFILED[0], "n": PROFILED[1], "busy_shares": profile},
        "runs": figures,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.engine}.json").write_text(json.dumps(record, indent=2) + "\n")
    say(f"wrote {args.out / (args.engine + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
