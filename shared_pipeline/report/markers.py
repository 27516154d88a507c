"""Code excerpts pulled from the wirings between `# report: begin <feature>` / `end` markers."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(r"^\s*# report: (begin|end) (\S+)\s*$")


class MarkerError(ValueError):
    """Markers that do not pair up, or name a feature the report does not know."""


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository root, POSIX
    first: int  # 1-based line numbers of the code between the markers
    last: int
    lines: tuple[str, ...]  # the code, without marker lines

    @property
    def code_lines(self) -> int:
        """Lines of code: blank lines and comment-only lines are not counted."""
        return sum(1 for line in self.lines if line.strip() and not line.strip().startswith("#"))


def parse_file(path: Path, rel: str, features: set[str]) -> dict[str, list[Block]]:
    """Every marked block of `path`, by feature (a feature may have several blocks)."""
    open_at: dict[str, int] = {}
    blocks: dict[str, list[Block]] = {}
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        match = MARKER.match(line)
        if not match:
            continue
        verb, feature = match.groups()
        if feature not in features:
            raise MarkerError(f"{rel}:{number}: unknown feature {feature!r}")
        if verb == "begin":
            if open_at:
                # Nested or overlapping blocks would count their shared lines twice.
                inside = next(iter(open_at))
                raise MarkerError(f"{rel}:{number}: {feature} begins inside {inside}")
            open_at[feature] = number
            continue
        if feature not in open_at:
            raise MarkerError(f"{rel}:{number}: {feature} ends without a begin")
        start = open_at.pop(feature)
        body = [text for text in lines[start : number - 1] if not MARKER.match(text)]
        blocks.setdefault(feature, []).append(Block(rel, start + 1, number - 1, tuple(body)))
    if open_at:
        feature, number = next(iter(open_at.items()))
        raise MarkerError(f"{rel}:{number}: {feature} never ends")
    return blocks


def wiring_blocks(root: Path, patterns: tuple[str, ...], features: set[str]) -> dict:
    """All blocks of a wiring's source files (sorted by path), by feature."""
    found: dict[str, list[Block]] = {}
    paths = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    for path in paths:
        rel = path.relative_to(root).as_posix()
        for feature, blocks in parse_file(path, rel, features).items():
            found.setdefault(feature, []).extend(blocks)
    return found


def excerpt(blocks: list[Block], limit: int | None = None) -> str:
    """The blocks as one snippet: each block dedented, the ones after the first headed by their
    file and line (the links beside it name the first); past `limit` lines, the rest is left to
    the links.
    """
    parts = []
    for number, block in enumerate(blocks):
        body = textwrap.dedent("\n".join(block.lines)).strip("\n")
        parts.append(f"# … {block.path}:{block.first}\n{body}" if number else body)
    lines = "\n".join(parts).splitlines()
    if limit is not None and len(lines) > limit:
        kept = lines[:limit]
        while kept and (not kept[-1].strip() or kept[-1].startswith("# … ") and ".py:" in kept[-1]):
            kept.pop()  # never end on a blank line or on the next block's heading
        rest = len(lines) - len(kept)
        lines = [*kept, f"# … {rest} more lines: follow the links above"]
    return "\n".join(lines)


def line_count(blocks: list[Block]) -> int:
    return sum(block.code_lines for block in blocks)
