"""The SQL of reads: one stream by version, or the whole log by position with filters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from core.errors import InvalidInput

__all__ = ["COLUMNS", "LogFilter", "read_all_sql", "read_stream_sql"]

# The order of RecordedEvent's constructor arguments.
COLUMNS = (
    "event_id, stream_id, stream_version, global_position, event_type, schema_version, "
    "data, metadata, tenant_id, recorded_at"
)


@dataclass(frozen=True, slots=True)
class LogFilter:
    categories: tuple[str, ...] | None = None
    types: tuple[str, ...] | None = None
    tenant_id: str | None = None

    @classmethod
    def of(
        cls, categories: Sequence[str] | None, types: Sequence[str] | None, tenant_id: str | None
    ) -> LogFilter:
        for name, value in (("categories", categories), ("types", types)):
            if isinstance(value, str):
                raise InvalidInput(f"{name} must be a list of str, not a str")
        return cls(
            tuple(categories) if categories is not None else None,
            tuple(types) if types is not None else None,
            tenant_id,
        )


def _source(include_archived: bool) -> str:
    """The hot table, or the hot table and the archive (migration 0007)."""
    return "all_events" if include_archived else "events"


@cache
def read_stream_sql(backwards: bool, include_archived: bool = False) -> str:
    order = "DESC" if backwards else "ASC"
    return (
        f"SELECT {COLUMNS} FROM {_source(include_archived)} WHERE stream_id = $1 "
        f"AND stream_version BETWEEN $2 AND $3 ORDER BY stream_version {order}"
    )


@cache
def _read_all_sql(by_category: bool, by_type: bool, by_tenant: bool, include_archived: bool) -> str:
    where = ["global_position BETWEEN $1 AND $2"]
    n = 4
    if by_category:
        where.append(f"split_part(stream_id, '-', 1) = ANY(${n}::text[])")
        n += 1
    if by_type:
        where.append(f"event_type = ANY(${n}::text[])")
        n += 1
    if by_tenant:
        where.append(f"tenant_id = ${n}")
    source = _source(include_archived)
    return f"SELECT {COLUMNS} FROM {source} WHERE {' AND '.join(where)} ORDER BY global_position LIMIT $3"


def read_all_sql(
    flt: LogFilter, first: int, last: int, limit: int, include_archived: bool = False
) -> tuple[str, list[Any]]:
    args: list[Any] = [first, last, limit]
    for value in (flt.categories, flt.types, flt.tenant_id):
        if value is not None:
            args.append(list(value) if isinstance(value, tuple) else value)
    sql = _read_all_sql(
        flt.categories is not None, flt.types is not None, flt.tenant_id is not None, include_archived
    )
    return sql, args
