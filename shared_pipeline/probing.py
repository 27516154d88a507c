"""`python -m shared_pipeline.probing --engine E --out OUT`: every semantics probe in engine E, in
this process, its answers written to OUT/results/probes/E/<probe>.json.

An engine joins with one module (PROBE_MODULES in engine_table.py) that provides `VERSION`,
`DOCUMENTED` (probe -> question -> the answer its documentation gives, with the link),
`start(workdir)` (homes, imports, servers), `run(probe, workdir) -> {question: Observation}`
and `stop()`.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from shared_pipeline.engine_table import PROBE_MODULES
from shared_pipeline.harness import machine_summary
from shared_pipeline.loading import load_module
from shared_pipeline.probes import PROBES, DocumentedAnswer, ProbeRecord, probe_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared_pipeline.probing",
        description="Run every semantics probe in one engine and record its answers.",
    )
    parser.add_argument("--engine", required=True, choices=sorted(PROBE_MODULES))
    parser.add_argument("--out", type=Path, required=True, help="records go to OUT/results/probes/")
    parser.add_argument("--probe", action="append", help="only this probe (repeatable)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    workdir = out / "runs" / "probes" / args.engine
    shutil.rmtree(workdir, ignore_errors=True)  # every answer from this run's flows only
    workdir.mkdir(parents=True)
    engine = load_module(PROBE_MODULES[args.engine])
    engine.start(workdir)
    try:
        for probe in PROBES:
            if args.probe and probe.id not in args.probe:
                continue
            started = time.perf_counter()
            answers = engine.run(probe.id, workdir / probe.id)
            record = ProbeRecord(
                engine=args.engine,
                engine_version=engine.VERSION,
                python_version=platform.python_version(),
                probe=probe.id,
                created_at=datetime.now(UTC),
                machine=machine_summary(),
                answers=answers,
                documented={
                    key: DocumentedAnswer(answer=said.answer, doc=said.doc)
                    for key, said in engine.DOCUMENTED[probe.id].items()
                },
            )
            path = probe_path(out / "results", args.engine, probe.id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(record.model_dump_json(indent=2) + "\n")
            took = time.perf_counter() - started
            print(f"[probe {args.engine}] {probe.id}: {took:.1f} s", flush=True)
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
