"""The PostgreSQL event store: append with group commit, read, subscribe."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import asyncpg
import structlog

from core.codec import EncodedAppend, encode_append, encode_multi
from core.errors import AppendOutcomeUnknown, ChronicleError, StoreClosed, StoreUnavailable
from core.events import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    check_stream_id,
)
from core.settings import Settings
from eventstore.log.group_commit import GroupCommit, Pending
from eventstore.log.outage import Outage
from eventstore.log.outcomes import AppendOutcome, expected_code, results
from eventstore.log.reads import COLUMNS, LogFilter, read_all_sql, read_stream_sql
from eventstore.log.wakeup import Listener, Wakeup
from eventstore.migrate import check_at_head
from eventstore.pg import (
    DRIVER_ERRORS,
    close_connection,
    connect,
    create_pool,
    fetch,
    is_connection_error,
    translate,
)
from eventstore.privacy import MasterKeyFiles, Privacy, SubjectKeys
from eventstore.tenancy import TenantReader

__all__ = ["EventStore"]

log = structlog.get_logger(__name__)

_APPEND = (
    "SELECT outcome, version, first_position, last_position, detail FROM chronicle_append("
    "$1::text[], $2::int[], $3::text[], $4::int[], $5::int[], $6::uuid[], $7::text[], "
    "$8::smallint[], $9::jsonb[], $10::jsonb[])"
)
# Built from the fixed column list; the event id is a bind parameter.
_READ_EVENT = " ".join(("SELECT", COLUMNS, "FROM events WHERE event_id = $1"))


class EventStore:
    """Chronicle's event log on PostgreSQL. Create with ``await EventStore.connect(url)``."""

    def __init__(self, pool: asyncpg.Pool, database_url: str, settings: Settings) -> None:
        self._pool = pool
        self._database_url = database_url
        self._settings = settings
        self._wakeup = Wakeup()
        self._listener = Listener(database_url, self._wakeup)
        self._writer: asyncpg.Connection | None = None
        self._commit = GroupCommit(self._flush, settings.max_batch_events)
        self._closed = False
        self.privacy = Privacy(SubjectKeys(pool, MasterKeyFiles(settings.master_key_path)))

    @classmethod
    async def connect(
        cls, database_url: str, settings: Settings | None = None, *, check_schema: bool = True
    ) -> EventStore:
        settings = settings or Settings.defaults()
        # The group-commit writer has a connection of its own: the pool holds the others.
        pool = await create_pool(database_url, settings.pool_size - 1)
        if check_schema:
            try:
                async with pool.acquire() as conn:
                    await check_at_head(conn)
            except DRIVER_ERRORS as exc:
                await pool.close()
                raise translate(exc, "connect") from exc
            except BaseException:
                await pool.close()
                raise
        return cls(pool, database_url, settings)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Write what is queued, end every subscription, release the connections."""
        if self._closed:
            return
        self._closed = True
        await self._commit.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            await close_connection(writer)
        self._wakeup.notify()
        await self._listener.close()
        try:
            await asyncio.wait_for(self._pool.close(), 10)
        except TimeoutError:
            self._pool.terminate()

    # -- writing ---------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int | ExpectedVersion = ExpectedVersion.ANY,
    ) -> AppendResult:
        """Append events to one stream atomically if it is at ``expected_version``.

        Raises WrongExpectedVersion on a conflict and stores nothing. Retrying the same events
        (same ids) after any failure is safe: an append that did commit returns its result.
        """
        if self.privacy.concerns(events):
            events = await self.privacy.seal(events)
        encoded = encode_append(stream_id, events, expected_version, self._settings.max_event_bytes)
        return (await self._submit((encoded,)))[0]

    async def append_multi(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams in one transaction: all commit, or none does."""
        if any(self.privacy.concerns(a.events) for a in appends):
            appends = [
                dataclasses.replace(a, events=await self.privacy.seal(a.events))
                if self.privacy.concerns(a.events)
                else a
                for a in appends
            ]
        encoded = encode_multi(appends, self._settings.max_event_bytes)
        return await self._submit(encoded)

    async def _submit(self, appends: tuple[EncodedAppend, ...]) -> list[AppendResult]:
        if self._closed:
            raise StoreClosed("the event store is closed")
        outcomes = await self._commit.submit(appends)
        return results(appends, outcomes)

    async def _flush(self, batch: list[Pending], lost: BaseException | None = None) -> None:
        """Write one batch. ``lost``: the error that killed the previous attempt at it.

        A connection that dies with the call in flight leaves the outcome unknown: the
        transaction may have committed. The batch is then sent once more on a fresh
        connection, which is safe because every event id is fixed: requests that did commit
        come back as duplicates with their original results, the others are written now.
        Once an attempt was lost, only an outcome the database decided settles a request;
        any failure of the second attempt leaves it unknown (AppendOutcomeUnknown).
        """
        try:
            writer = await self._writer_connection()
        except ChronicleError as exc:  # could not connect: this attempt sent nothing
            for pending in batch:
                _fail(pending, _unknown(lost, exc) if lost else exc, exc)
            return
        try:
            rows = await writer.fetch(_APPEND, *_append_args(batch))
        except DRIVER_ERRORS as exc:
            if not is_connection_error(exc):
                await self._flush_refused(batch, exc, lost)
                return
            self._drop_writer()
            if lost is None:
                log.warning("append.connection_lost_retrying", error=str(exc), batch=len(batch))
                await self._flush(batch, lost=exc)
            else:
                for pending in batch:
                    _fail(pending, _unknown(lost, exc), exc)
            return
        start = 0
        for pending in batch:
            end = start + len(pending.appends)
            if not pending.future.done():
                pending.future.set_result([AppendOutcome(*row) for row in rows[start:end]])
            start = end
        self._wakeup.notify()

    async def _writer_connection(self) -> asyncpg.Connection:
        # The group-commit writer keeps one connection of its own, outside the pool. Handing a
        # pooled one back after every batch would cost a reset round trip per transaction, and
        # holding one for good does not work either: when the server closes a pooled
        # connection, asyncpg detaches it from its holder and then refuses every call on it,
        # is_closed() included, so a store that kept it could never append again.
        if self._writer is None or self._writer.is_closed():
            self._writer = await connect(self._database_url)
        return self._writer

    def _drop_writer(self) -> None:
        """Never use this connection again: after a connection error its state is unknown."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.terminate()

    async def _flush_refused(self, batch: list[Pending], exc: Exception, lost: BaseException | None) -> None:
        if len(batch) > 1:
            # Something in one request made the database refuse the whole batch. Writing each
            # request on its own fails only the request at fault.
            log.warning("append.batch_refused", error=str(exc), batch=len(batch))
            for pending in batch:
                await self._flush([pending], lost)
        else:
            _fail(batch[0], _unknown(lost, exc) if lost else translate(exc, "append"), exc)

    # -- reading ---------------------------------------------------------------------------

    async def read_stream(
        self,
        stream_id: str,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        include_archived: bool = False,
    ) -> list[RecordedEvent]:
        """The stream's events with from_version <= version <= to_version (both inclusive).

        Backwards reads start at to_version (or the end) and go down to from_version. A stream
        that does not exist reads as an empty list, and so does an archived one unless
        ``include_archived`` (eventstore.retention).
        """
        check_stream_id(stream_id)
        last = to_version if to_version is not None else 2**31 - 1  # 0 is an empty range, not "no bound"
        rows = await self._fetch(read_stream_sql(backwards, include_archived), stream_id, from_version, last)
        return await self.privacy.open([RecordedEvent(*row) for row in rows])

    async def read_all(
        self,
        from_position: int = 0,
        to_position: int | None = None,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        tenant_id: str | None = None,
        page_size: int = 5000,
        include_archived: bool = False,
    ) -> AsyncIterator[RecordedEvent]:
        """Every committed event with from_position <= position <= to_position, in order;
        with ``include_archived``, the archived ones too (eventstore.retention)."""
        flt = LogFilter.of(categories, types, tenant_id)
        last = to_position if to_position is not None else 2**63 - 1
        position = from_position
        while position <= last:
            page = await self._page(flt, position, last, page_size, include_archived)
            for event in page:
                yield event
            if len(page) < page_size:
                return
            position = page[-1].global_position + 1

    async def subscribe(
        self,
        from_position: int = 0,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        tenant_id: str | None = None,
        page_size: int = 5000,
    ) -> AsyncIterator[RecordedEvent]:
        """Every event from ``from_position`` on: first those stored, then each new one.

        Gap safety comes from the append function's lock (see chronicle_append): every
        snapshot sees a prefix of the log, so reading on from the last position seen never
        misses an event. The iterator ends when the store closes.

        When the database goes away, the subscription keeps its position and reads again
        after a short pause, so it goes on with no gap and no duplicate once the server is
        back. After ``reconnect_timeout`` seconds (setting) without the database it raises
        StoreUnavailable; subscribing again from the last position seen is then safe.
        """
        flt = LogFilter.of(categories, types, tenant_id)
        position = from_position
        outage = Outage(self._settings.reconnect_timeout)
        await self._listener.ensure()
        while not self._closed:
            seen = self._wakeup.generation
            try:
                page = await self._page(flt, position, 2**63 - 1, page_size)
            except StoreUnavailable as exc:
                await self._wakeup.wait(seen, outage.pause_after(exc))
                continue
            outage.ended()
            for event in page:
                yield event
                position = event.global_position + 1
            if len(page) < page_size and not self._closed:
                await self._wakeup.wait(seen, self._settings.poll_interval)
                await self._listener.ensure()

    @property
    def appends_seen(self) -> int:
        """A counter that moves whenever this store learns the log may have grown: an append
        through it, or a notification of another process's append.

        Read it before looking at the log, then ``wait_for_append`` with the value read: an
        append that lands in between is not missed (the projection runner tails this way).
        """
        return self._wakeup.generation

    async def wait_for_append(self, seen: int, timeout: float) -> None:
        """Return once ``appends_seen`` has moved past ``seen``, or after ``timeout`` seconds.

        Notifications are hints: a caller must look at the log itself afterwards, and polls
        when the timeout passes. The LISTEN connection is opened (or re-opened) here.
        """
        await self._listener.ensure()
        await self._wakeup.wait(seen, timeout)

    async def _page(
        self, flt: LogFilter, first: int, last: int, limit: int, include_archived: bool = False
    ) -> list[RecordedEvent]:
        sql, args = read_all_sql(flt, first, last, limit, include_archived)
        try:
            rows = await self._fetch(sql, *args)
        except StoreClosed:
            return []
        return await self.privacy.open([RecordedEvent(*row) for row in rows])

    async def read_event(self, event_id: UUID) -> RecordedEvent | None:
        """The stored event with this id, or None (one probe of the unique event_id index).

        Command handling asks this when it loaded a stream from a snapshot and so did not read
        the events a retried command may already have appended.
        """
        rows = await self._fetch(_READ_EVENT, event_id)
        return (await self.privacy.open([RecordedEvent(*rows[0])]))[0] if rows else None

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version; 0 when it does not exist."""
        check_stream_id(stream_id)
        rows = await self._fetch("SELECT version FROM streams WHERE stream_id = $1", stream_id)
        return int(rows[0][0]) if rows else 0

    async def head_position(self) -> int:
        """The highest committed global position (0 for an empty log)."""
        rows = await self._fetch("SELECT coalesce(max(global_position), 0) FROM events")
        return int(rows[0][0])

    def as_tenant(self, tenant_id: str) -> TenantReader:
        """Reads as ``tenant_id`` under row-level security: only that tenant's events show."""
        return TenantReader(self._pool, tenant_id)

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        if self._closed:
            raise StoreClosed("the event store is closed")
        try:
            return await fetch(self._pool, "read", sql, *args)
        except ChronicleError as exc:
            if self._closed:
                raise StoreClosed("the event store is closed") from exc
            raise


def _unknown(lost: BaseException, then: BaseException) -> AppendOutcomeUnknown:
    return AppendOutcomeUnknown(
        f"append: the connection failed with the append in flight ({lost}), and sending it again "
        f"failed too ({then}); retry with the same events: an append that did commit returns "
        "its original result"
    )


def _fail(pending: Pending, error: Exception, cause: BaseException) -> None:
    error.__cause__ = cause
    if not pending.future.done():
        pending.future.set_exception(error)


def _append_args(batch: list[Pending]) -> tuple[list[Any], ...]:
    streams: list[str] = []
    expected: list[int] = []
    tenants: list[str | None] = []
    groups: list[int] = []
    counts: list[int] = []
    ids: list[Any] = []
    types: list[str] = []
    versions: list[int] = []
    data: list[bytes] = []
    metadata: list[bytes] = []
    for group, pending in enumerate(batch):
        for append in pending.appends:
            streams.append(append.stream_id)
            expected.append(expected_code(append.expected_version))
            tenants.append(append.tenant_id)
            groups.append(group)
            counts.append(len(append.events))
            for event in append.events:
                ids.append(event.event_id)
                types.append(event.type)
                versions.append(event.schema_version)
                data.append(event.data)
                metadata.append(event.metadata)
    return streams, expected, tenants, groups, counts, ids, types, versions, data, metadata
