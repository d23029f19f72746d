"""What an append's outcome means to its caller: a result, or the error that explains it.

Both stores (PostgreSQL and in memory) decide appends into the same outcome rows, so the
caller sees the same results and errors from either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from core.codec import EncodedAppend
from core.errors import ChronicleError, EventIdConflict, TenantMismatch, WrongExpectedVersion
from core.events import AppendResult, ExpectedVersion, Version

__all__ = ["AppendOutcome", "expected_code", "results"]

_CODES = {ExpectedVersion.ANY: -1, ExpectedVersion.NO_STREAM: -2, ExpectedVersion.STREAM_EXISTS: -3}


class AppendOutcome(NamedTuple):
    outcome: str  # ok | duplicate | wrong_version | id_conflict | tenant_mismatch | aborted
    version: int
    first_position: int | None
    last_position: int | None
    detail: str | None


def expected_code(expected: Version) -> int:
    return _CODES[expected] if isinstance(expected, ExpectedVersion) else expected


def results(appends: Sequence[EncodedAppend], outcomes: Sequence[AppendOutcome]) -> list[AppendResult]:
    """The results of one caller's appends, or the error of the first one that failed."""
    failure = next(
        (
            (append, outcome)
            for append, outcome in zip(appends, outcomes, strict=True)
            if outcome.outcome not in ("ok", "duplicate", "aborted")
        ),
        None,
    )
    if failure is not None:
        raise _error(*failure)
    out = []
    for append, outcome in zip(appends, outcomes, strict=True):
        assert outcome.first_position is not None and outcome.last_position is not None
        out.append(
            AppendResult(
                append.stream_id,
                outcome.version,
                outcome.first_position,
                outcome.last_position,
                duplicate=outcome.outcome == "duplicate",
            )
        )
    return out


def _error(append: EncodedAppend, outcome: AppendOutcome) -> ChronicleError:
    if outcome.outcome == "wrong_version":
        return WrongExpectedVersion(append.stream_id, append.expected_version, outcome.version)
    if outcome.outcome == "id_conflict":
        return EventIdConflict(append.stream_id, [e.event_id for e in append.events])
    if outcome.outcome == "tenant_mismatch":
        return TenantMismatch(append.stream_id, outcome.detail, append.tenant_id)
    raise AssertionError(f"unknown append outcome {outcome.outcome!r}")
