"""Audit queries over the audit index: who did what, when, under which tenant, and what a
command caused; in keyset pages, or exported as JSON Lines or CSV.

Filters (``AuditFilter``) combine with AND: actor, tenant, event types (any of them), stream,
category, a time range on ``recorded_at`` (``since`` inclusive, ``until`` exclusive),
correlation id, and a causation chain.

The causation chain of X (``caused_by``). Command handling (``core.domain.handling``) writes
into every event's metadata the ``command_id`` of the command that appended it and a
``causation_id``: what caused that command (the caller's cause, by default the command itself).
A follow-up command names as its cause the event or the command it reacts to. The chain of X is
the smallest set of events that holds

1. every event whose ``command_id`` or ``causation_id`` is X (the command's own events, and the
   events of commands that name X as their cause), and
2. every event whose ``causation_id`` is the ``event_id`` or the ``command_id`` of an event
   already in the set (what those events, and their commands, caused in turn),

so it follows causes forward, transitively, and stops where nothing names a member as its
cause. Loops cannot make it run for ever: an event is taken once.

Pages and cursors. Results come in log order (global position), each with the event's full
data and metadata. A page's ``cursor`` is an opaque string holding the query's filter and the
position of the last event on the page; the next page is the matching events after it. The
append lock makes every reader see a prefix of the log, and the index is applied in log order,
so an event that is not visible yet can only appear later at a higher position: paging on from
a cursor never repeats or skips an event, and events that arrive meanwhile show up, in order,
on later pages. A cursor stays valid across a rebuild of the index (positions are the log's).
(For the causation chain this assumes that a cause is appended before what it causes, as
command handling does.)

Cost. Every page is an index range scan that starts at the cursor: on the audit index for
actor, stream, correlation and the causation chain, on ``events`` for tenant, type and category
(joined by position), and a time range first becomes a range of positions (see
``projections.models.audit``). A page costs what it returns, however deep the caller pages;
the causation chain is collected again for each page.

Export (``export``) writes every match that is indexed when it starts, page by page, one line
or row at a time, so memory stays constant; its cursor continues after them.
"""

from __future__ import annotations

import base64
import binascii
import csv
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TextIO

import asyncpg
import orjson

from core.errors import ChronicleError, InvalidInput
from core.events import RecordedEvent, check_event_type, check_stream_id
from eventstore.log.bulk import event_json
from eventstore.log.reads import COLUMNS
from eventstore.pg import DRIVER_ERRORS, translate
from eventstore.privacy import Privacy

__all__ = [
    "CSV_COLUMNS",
    "MAX_LIMIT",
    "AuditFilter",
    "AuditIndexNotBuilt",
    "AuditPage",
    "ExportFormat",
    "Exported",
    "InvalidCursor",
    "csv_row",
    "event_writer",
    "export",
    "query",
]

MAX_LIMIT = 10_000
_LAST = 2**63 - 1
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)
_CATEGORY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


class AuditIndexNotBuilt(ChronicleError):
    def __init__(self) -> None:
        super().__init__(
            "the audit index is not built yet: run `chronicle projections run` to build it and "
            "keep it current, or `chronicle projections rebuild audit_index`"
        )


class InvalidCursor(InvalidInput):
    pass


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What to look for; every field given must match (None and () match everything)."""

    actor: str | None = None
    tenant_id: str | None = None
    types: tuple[str, ...] = ()
    stream_id: str | None = None
    category: str | None = None
    since: datetime | None = None  # recorded_at >= since
    until: datetime | None = None  # recorded_at < until
    correlation_id: str | None = None
    caused_by: str | None = None  # a command id: its causation chain (see the module docstring)

    def __post_init__(self) -> None:
        for name in ("actor", "tenant_id", "correlation_id", "caused_by"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidInput(f"{name} must be a non-empty string, got {value!r}")
        given: object = self.types  # callers without a type checker may pass one str
        if isinstance(given, str):
            raise InvalidInput("types must be a list of event types, not a str")
        object.__setattr__(self, "types", tuple(sorted({check_event_type(t) for t in self.types})))
        if self.stream_id is not None:
            check_stream_id(self.stream_id)
        if self.category is not None and not _CATEGORY.fullmatch(str(self.category)):
            raise InvalidInput(f"category {self.category!r} is not a stream category (e.g. 'task')")
        self._check_times()

    def _check_times(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
                raise InvalidInput(f"{name} must be a datetime with a time zone, got {value!r}")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise InvalidInput(f"since ({self.since.isoformat()}) is after until ({self.until.isoformat()})")

    def to_json(self) -> dict[str, Any]:
        """The fields that are set, as JSON values (what a cursor holds)."""
        found: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if isinstance(value, datetime):
                found[name] = value.isoformat()
            elif value:
                found[name] = list(value) if isinstance(value, tuple) else value
        return found

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> AuditFilter:
        values = dict(value)
        for name in ("since", "until"):
            if name in values:
                values[name] = datetime.fromisoformat(values[name])
        values["types"] = tuple(values.get("types", ()))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Matching events in log order; ``cursor`` continues after them (or where the query
    started, when the page is empty); ``more`` says whether more matched when it was read."""

    events: tuple[RecordedEvent, ...]
    cursor: str
    more: bool


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


@dataclass(frozen=True, slots=True)
class Exported:
    events: int
    cursor: str


Progress = Callable[[int, int, int], None]  # (events written, position reached, last position)


# -- cursors ----------------------------------------------------------------------------------


def _encode_cursor(flt: AuditFilter, after: int) -> str:
    body = orjson.dumps({"v": 1, "after": after, "filter": flt.to_json()})
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[AuditFilter, int]:
    try:
        body = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        after, filter_json = body["after"], body["filter"]
        if body.get("v") != 1 or not isinstance(after, int) or after < 0:
            raise ValueError("unknown version or position")
        return AuditFilter.from_json(filter_json), after
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        shown = text if len(text) <= 24 else text[:24] + "..."
        raise InvalidCursor(f"cursor {shown!r} is not a cursor of an audit query") from exc


def _start(flt: AuditFilter | None, cursor: str | None) -> tuple[AuditFilter, int]:
    """The filter and the position a query starts after; a cursor must belong to the filter."""
    if cursor is None:
        return flt or AuditFilter(), 0
    found, after = _decode_cursor(cursor)
    if flt is not None and flt != found:
        raise InvalidCursor(
            f"the cursor belongs to another query ({_describe(found)}), not to ({_describe(flt)}); "
            "pass the cursor alone or with the filter it was made for"
        )
    return found, after


def _describe(flt: AuditFilter) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in flt.to_json().items()) or "no filter"


# -- SQL --------------------------------------------------------------------------------------
# Statements are assembled from the fixed fragments below (hence the S608 markers); every value
# from a caller is a bind parameter.


@dataclass
class _Sql:
    """A query being built: bind values in order, and the pieces that refer to them."""

    args: list[Any] = field(default_factory=list)

    def bind(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


# The causation chain, as a recursive CTE over the index. UNION (not UNION ALL) drops rows it
# has produced before, which is what ends a loop.
_CHAIN = """chain (global_position, event_id, command_id) AS (
    SELECT global_position, event_id::text, command_id FROM audit_index
    WHERE causation_id = {x} OR command_id = {x}
  UNION
    SELECT a.global_position, a.event_id::text, a.command_id
    FROM chain c JOIN audit_index a ON a.causation_id = ANY(ARRAY[c.event_id, c.command_id])
)"""

# The positions a time range can occupy (projections.models.audit explains why they are exact).
# No row reaching `since`: nothing is recorded that late; no row before `until` + the largest
# lateness: nothing is recorded that early. Either way the range is empty. Each is one probe of
# the recorded_max index.
_TIME_SPAN = """
SELECT coalesce((SELECT global_position FROM audit_index WHERE recorded_max >= $1
                 ORDER BY recorded_max, global_position LIMIT 1), $3::bigint),
       coalesce((SELECT global_position FROM audit_index
                 WHERE recorded_max < $2::timestamptz
                     + (SELECT lateness_max FROM audit_index ORDER BY global_position DESC LIMIT 1)
                 ORDER BY recorded_max DESC, global_position DESC LIMIT 1), 0)
"""


def _page_sql(flt: AuditFilter, lo: int, hi: int, limit: int) -> tuple[str, list[Any]]:
    """One page: the positions of at most ``limit`` matches in [lo, hi], then their events.

    The range is bound as numbers (not computed inside the statement), so the planner sees how
    wide it is and picks the ordered index scan that stops after ``limit`` rows.
    """
    sql = _Sql()
    span = (sql.bind(lo), sql.bind(hi))
    chain = f"WITH RECURSIVE {_CHAIN.format(x=sql.bind(flt.caused_by))} " if flt.caused_by else ""
    conditions, joins_events = _conditions(sql, flt)
    limit_mark = sql.bind(limit)
    if flt.types:
        # One ordered scan per type, merged: an index scan for several values of its leading
        # column would come back unordered and be sorted whole, for every page.
        typed = _hits(conditions, True, span, limit_mark, "e.event_type = wanted.event_type")
        hits = (
            f"SELECT hit.global_position FROM unnest({sql.bind(list(flt.types))}::text[]) "  # noqa: S608
            f"AS wanted(event_type) CROSS JOIN LATERAL ({typed}) AS hit "
            f"ORDER BY hit.global_position LIMIT {limit_mark}"
        )
    else:
        hits = _hits(conditions, joins_events, span, limit_mark, "")
    columns = ", ".join(f"e.{c.strip()}" for c in COLUMNS.split(","))
    text = (
        f"{chain}SELECT {columns} FROM ({hits}) AS page "  # noqa: S608
        "JOIN all_events e ON e.global_position = page.global_position ORDER BY e.global_position"
    )
    return text, sql.args


def _conditions(sql: _Sql, flt: AuditFilter) -> tuple[list[str], bool]:
    """The WHERE conditions (on the index ``a`` and the log ``e``) and whether ``e`` is needed."""
    on_index = {"a.actor": flt.actor, "a.stream_id": flt.stream_id, "a.correlation_id": flt.correlation_id}
    on_log = {"e.tenant_id": flt.tenant_id, "split_part(e.stream_id, '-', 1)": flt.category}
    found = [f"{column} = {sql.bind(value)}" for column, value in on_index.items() if value is not None]
    log = [f"{column} = {sql.bind(value)}" for column, value in on_log.items() if value is not None]
    if flt.since is not None:
        found.append(f"a.recorded_at >= {sql.bind(flt.since)}")
    if flt.until is not None:
        found.append(f"a.recorded_at < {sql.bind(flt.until)}")
    if flt.caused_by is not None:
        found.append("a.global_position IN (SELECT global_position FROM chain)")
    return found + log, bool(log)


def _hits(
    conditions: list[str], joins_events: bool, span: tuple[str, str], limit_mark: str, extra: str
) -> str:
    """Matching positions in order. The range is stated on both tables so that whichever index
    drives the scan (the index's or the log's) starts and stops at it."""
    where = [f"a.global_position BETWEEN {span[0]} AND {span[1]}", *conditions]
    source = "audit_index a"
    if joins_events:
        source += " JOIN all_events e ON e.global_position = a.global_position"
        where.append(f"e.global_position BETWEEN {span[0]} AND {span[1]}")
    if extra:
        where.append(extra)
    return (
        f"SELECT a.global_position FROM {source} WHERE {' AND '.join(where)} "  # noqa: S608
        f"ORDER BY a.global_position LIMIT {limit_mark}"
    )


# -- queries ----------------------------------------------------------------------------------


async def query(
    conn: asyncpg.Connection,
    flt: AuditFilter | None = None,
    *,
    cursor: str | None = None,
    limit: int = 100,
    privacy: Privacy | None = None,
) -> AuditPage:
    """The first ``limit`` events matching ``flt``, or the next ones after ``cursor``.

    Raises InvalidInput (a bad limit; InvalidCursor for a cursor that is malformed or belongs
    to another filter), AuditIndexNotBuilt, and StoreUnavailable or StorageError. With
    ``privacy``, personal fields read as their values or redaction markers; without, as stored
    (sealed envelopes).
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    flt, after = _start(flt, cursor)
    events = await _fetch(conn, flt, after, _LAST, limit + 1)
    if not events:
        await _require_index(conn)
    if privacy is not None:
        events = await privacy.open(events)
    page = tuple(events[:limit])
    last = page[-1].global_position if page else after
    return AuditPage(page, _encode_cursor(flt, last), len(events) > limit)


async def _fetch(
    conn: asyncpg.Connection, flt: AuditFilter, after: int, up_to: int, limit: int
) -> list[RecordedEvent]:
    """At most ``limit`` matches in (after, up_to], in order."""
    lo, hi = after + 1, up_to
    if flt.since is not None or flt.until is not None:
        start, end = await _fetchrow(conn, _TIME_SPAN, flt.since or _EARLIEST, flt.until or _LATEST, _LAST)
        lo, hi = max(lo, start), min(hi, end)
    if lo > hi:
        return []
    text, args = _page_sql(flt, lo, hi, limit)
    try:
        rows = await conn.fetch(text, *args)
    except DRIVER_ERRORS as exc:
        raise translate(exc, "audit query") from exc
    return [RecordedEvent(*row) for row in rows]


async def _fetchrow(conn: asyncpg.Connection, text: str, *args: Any) -> asyncpg.Record:
    try:
        return await conn.fetchrow(text, *args)
    except DRIVER_ERRORS as exc:
        raise translate(exc, "audit query") from exc


async def _require_index(conn: asyncpg.Connection) -> int:
    """The last position in the index; raises AuditIndexNotBuilt if it has no live generation."""
    row = await _fetchrow(
        conn,
        "SELECT active_generation, (SELECT max(global_position) FROM audit_index) "
        "FROM projections WHERE name = 'audit_index'",
    )
    if row is None or row[0] is None:
        raise AuditIndexNotBuilt
    return int(row[1] or 0)


# -- export -----------------------------------------------------------------------------------

CSV_COLUMNS = (
    "global_position",
    "recorded_at",
    "tenant_id",
    "actor",
    "event_type",
    "stream_id",
    "stream_version",
    "event_id",
    "schema_version",
    "correlation_id",
    "causation_id",
    "command_id",
    "data",
    "metadata",
)


async def export(
    conn: asyncpg.Connection,
    sink: TextIO,
    fmt: ExportFormat,
    flt: AuditFilter | None = None,
    *,
    cursor: str | None = None,
    limit: int | None = None,
    page_size: int = 1000,
    progress: Progress | None = None,
    privacy: Privacy | None = None,
) -> Exported:
    """Write the events matching ``flt`` (after ``cursor``) to ``sink``, at most ``limit``.

    It writes what the index holds when it starts, up to its last position then; the cursor it
    returns continues after that position (or after the last event written, when ``limit``
    stopped it). JSON Lines are ``chronicle export``'s lines (``chronicle import`` reads them);
    CSV has a header and the columns of ``CSV_COLUMNS``, data and metadata as JSON.
    """
    if limit is not None and limit < 1:
        raise InvalidInput(f"limit must be at least 1, got {limit}")
    flt, after = _start(flt, cursor)
    through = await _require_index(conn)
    write = event_writer(sink, fmt)
    written = 0
    while limit is None or written < limit:
        size = page_size if limit is None else min(page_size, limit - written)
        events = await _fetch(conn, flt, after, through, size)
        for event in await privacy.open(events) if privacy is not None else events:
            write(event)
        written += len(events)
        after = events[-1].global_position if events else after
        if len(events) < size:
            after = max(after, through)  # every match up to `through` is written
        if progress is not None:
            progress(written, after, through)
        if len(events) < size:
            break
    return Exported(written, _encode_cursor(flt, after))


def event_writer(sink: TextIO, fmt: ExportFormat) -> Callable[[RecordedEvent], None]:
    """A function that writes one event to ``sink`` (CSV: the header is written now)."""
    if fmt is ExportFormat.JSONL:

        def line(event: RecordedEvent) -> None:
            sink.write(orjson.dumps(event_json(event)).decode())
            sink.write("\n")

        return line
    rows = csv.writer(sink)
    rows.writerow(CSV_COLUMNS)
    return lambda event: rows.writerow(csv_row(event))


def csv_row(event: RecordedEvent) -> list[Any]:
    """An event as a CSV row (``CSV_COLUMNS``); metadata fields that are not strings as JSON."""
    metadata = event.metadata
    return [
        event.global_position,
        event.recorded_at.isoformat(),
        event.tenant_id or "",
        _text(metadata.get("actor")),
        event.type,
        event.stream_id,
        event.stream_version,
        str(event.event_id),
        event.schema_version,
        *(_text(metadata.get(k)) for k in ("correlation_id", "causation_id", "command_id")),
        orjson.dumps(event.data).decode(),
        orjson.dumps(metadata).decode(),
    ]


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()
