"""`python -m shared_pipeline.report`: regenerate REPORT.md and its figures from results/."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared_pipeline.report",
        description="Regenerate REPORT.md and its pages and figures (docs/report/) from "
        "results/**/*.json.",
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository (default: .)")
    parser.add_argument(
        "--out", type=Path, default=None, help="where REPORT.md goes (default: the root)"
    )
    args = parser.parse_args(argv)
    if not (args.root / "results").is_dir():
        print(f"error: no results/ under {args.root}: run an engine session first", file=sys.stderr)
        return 2
    # Before matplotlib is imported: it caches its font list under ~/.cache unless told where.
    os.environ.setdefault("MPLCONFIGDIR", str(args.root.resolve() / "runs" / ".cache" / "mpl"))
    from shared_pipeline.report.markers import MarkerError
    from shared_pipeline.report.render import write

    started = time.perf_counter()
    try:
        written = write(args.root, args.out)
    except MarkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    print(f"wrote {written[0]} and {len(written) - 1} page(s) and figure(s) in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
