"""The difference between two states, as the JSON a snapshot would store: what time travel shows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Change", "diff_json"]

_ABSENT = "<absent>"


@dataclass(frozen=True, slots=True)
class Change:
    """``path`` (dotted keys, list indexes in brackets) went from ``before`` to ``after``.

    A key that exists on one side only shows the other side as ``"<absent>"``.
    """

    path: str
    before: Any
    after: Any


def diff_json(before: Any, after: Any, path: str = "") -> list[Change]:
    """Every leaf that differs between two JSON values, in key order; [] when they are equal."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        changes: list[Change] = []
        for key in sorted(set(before) | set(after), key=str):
            where = f"{path}.{key}" if path else str(key)
            changes.extend(diff_json(before.get(key, _ABSENT), after.get(key, _ABSENT), where))
        return changes
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        changes = []
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            changes.extend(diff_json(old, new, f"{path}[{index}]"))
        return changes
    return [] if before == after else [Change(path or "$", before, after)]
