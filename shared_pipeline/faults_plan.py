"""Fault plans: which step, on which attempt, meets which real fault."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class FaultKind(StrEnum):
    DB_LOCKED = "db_locked"  # another connection holds BEGIN EXCLUSIVE on the SQLite file
    DB_UNREACHABLE = "db_unreachable"  # the database cannot be opened at all
    API_503 = "api_503"  # the enrichment API answers HTTP 503
    API_REFUSED = "api_refused"  # nothing listens on the API's port: connection refused
    API_HANG = "api_hang"  # the API accepts the request and never answers
    API_BAD_BODY = "api_bad_body"  # the API answers 200 with a body that is not JSON
    HANG = "hang"  # the step's own work stops making progress (until the hang cap)
    BLOCK = "block"  # the step blocks in one socket read on a server that never answers
    CORRUPT_FEATURES = "corrupt_features"  # NaNs reach scikit-learn, which refuses to fit
    KILLED = "killed"  # its process gets SIGKILL midway, from outside (shared_pipeline/killer.py)


HANG_FAULTS = frozenset({FaultKind.HANG, FaultKind.BLOCK})  # end at the hang cap if not stopped
DB_FAULTS = frozenset({FaultKind.DB_LOCKED, FaultKind.DB_UNREACHABLE})
API_FAULTS = {
    FaultKind.API_503: "http_503",
    FaultKind.API_REFUSED: "refuse",
    FaultKind.API_HANG: "hang",
    FaultKind.API_BAD_BODY: "bad_body",
}


class FaultRule(BaseModel):
    """`step` (and `key`, if given) meets `kind` on the listed attempts (all attempts if None).

    With `until_fixed`, the fault lasts until the harness applies the fix between flow runs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str
    kind: FaultKind
    key: str | None = None
    attempts: tuple[int, ...] | None = None
    until_fixed: bool = False

    def applies(self, step: str, key: str | None, attempt: int, fixed: bool) -> bool:
        if self.step != step or (self.key is not None and self.key != key):
            return False
        if self.until_fixed and fixed:
            return False
        return self.attempts is None or attempt in self.attempts


def planned_fault(
    rules: tuple[FaultRule, ...], step: str, key: str | None, attempt: int, fixed: bool
) -> FaultKind | None:
    for rule in rules:
        if rule.applies(step, key, attempt, fixed):
            return rule.kind
    return None
