"""Checks that commands run when they are built, so a decider only ever sees well-formed input."""

from __future__ import annotations

import re
from datetime import datetime

from core.domain.errors import InvalidCommand

__all__ = ["check_aware", "check_id", "check_same_aggregate", "check_text"]

# The id part of a stream id (core.events._STREAM_ID), so `<category>-<id>` is always valid.
_AGGREGATE_ID = re.compile(r"[A-Za-z0-9_.:@=+-]{1,190}")


def check_id(command: str, field: str, value: str) -> None:
    if not isinstance(value, str) or not _AGGREGATE_ID.fullmatch(value):
        raise InvalidCommand(command, f"{field} {value!r} must be 1-190 of letters, digits and _.:@=+-")


def check_text(command: str, field: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidCommand(command, f"{field} must be a non-empty string")


def check_aware(command: str, field: str, value: datetime) -> None:
    # Deciders compare times (lease expiry, retry back-off); a naive datetime would compare
    # wrongly across time zones or raise TypeError in the middle of a decision.
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidCommand(command, f"{field} must be a timezone-aware datetime, got {value!r}")


def check_same_aggregate(command: str, given: str, current: str) -> None:
    """A command addressed to another aggregate than the stream holds is a routing bug."""
    if current and given != current:
        raise InvalidCommand(command, f"addressed to {given!r}, but the stream holds {current!r}")
