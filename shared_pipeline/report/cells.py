"""Small pieces of the report read from one record: inline code, timeouts, histories, wrapping."""

from __future__ import annotations

import textwrap

from shared_pipeline.records import RunRecord, TaskRecord
from shared_pipeline.timeouts import record_verdicts
from shared_pipeline.timeouts import summary as timeout_summary
from shared_pipeline.vocabulary import RegistryEffect

WIDTH = 320  # prose is wrapped here, under the 400 characters a line may have (not a table row)

REGISTRY_WORDS = {
    RegistryEffect.PROMOTED: "production replaced",
    RegistryEffect.REGISTERED_NOT_PROMOTED: "new version left unpromoted",
    RegistryEffect.UNCHANGED: "production kept",
}


def code(text: str) -> str:
    """Inline code that survives a Markdown table cell."""
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def timeout_lines(record: RunRecord) -> list[str]:
    """Per flow run: "interrupted ×3" or "labelled late by N s", for runs that met a hang."""
    return [timeout_summary(verdicts) for verdicts in record_verdicts(record)]


def interrupted(record: RunRecord, run_index: int) -> bool | None:
    """Did the engine's timeouts stop the hanging work in this run? None if nothing hung."""
    verdicts = record_verdicts(record)[run_index]
    return all(v.interrupted for v in verdicts) if verdicts else None


def history(task: TaskRecord) -> str:
    names: list[str] = []
    for state in task.native_history:
        if not names or names[-1] != state.name:
            names.append(state.name)
    return " → ".join(names)


def wrap(text: str, bullet: bool = False) -> list[str]:
    """A paragraph (or a bullet) as lines of at most WIDTH characters, links left whole."""
    first, rest = ("- ", "  ") if bullet else ("", "")
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
