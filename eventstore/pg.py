"""asyncpg plumbing: pools with Chronicle's codecs, and the translation of driver errors.

Driver exceptions stop here; callers see only core.errors types, raised ``from`` the original.

Which driver errors mean what (docs/architecture.md, "Riding through the database going away"):

- **connection errors** (``is_connection_error``): the connection broke or the server is
  going away, starting up or out of connections (OSError, timeouts, asyncpg's InterfaceError
  and InternalClientError, SQLSTATE classes 08, 57P01-57P03, 53300), or the server rolled the
  transaction back for a transient reason (serialisation failure, deadlock, cancelled
  statement). The connection is not used again. A call that was never sent, or that was
  rolled back, becomes StoreUnavailable; an append whose call was in flight may have
  committed, which the store reports as AppendOutcomeUnknown. Both are retriable.
- **everything else** the database refused on its merits: StorageError, not retriable.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from asyncpg.exceptions import (
    ClientConfigurationError,
    UnsupportedClientFeatureError,
    UnsupportedServerFeatureError,
)

from core.errors import ChronicleError, StoreUnavailable

__all__ = [
    "APPEND_LOCK",
    "CONNECT_TIMEOUT",
    "DRIVER_ERRORS",
    "StorageError",
    "close_connection",
    "connect",
    "create_pool",
    "fetch",
    "is_connection_error",
    "translate",
]

# The advisory lock every writer of `events` holds until it commits (see chronicle_append in
# revision 0001, which keeps its own frozen copy of the key).
APPEND_LOCK = 7_291_033_451

# Seconds to open a connection. A server that accepts TCP but does not answer (stopped with
# SIGSTOP, swapping) would otherwise hold a caller for asyncpg's default of a minute.
CONNECT_TIMEOUT = 10.0

# Everything the driver raises at us. InternalClientError is a bare Exception subclass that
# asyncpg raises when a connection's protocol state is broken, as when the server's FATAL has
# arrived but the close has not been seen yet.
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)

# SQLSTATE classes that mean "the connection or the server went away", not "your data is bad".
_CONNECTION_STATES = ("08", "57P01", "57P02", "57P03", "53300")
_RETRIABLE_STATES = ("40001", "40P01", "57014")
# InterfaceErrors that are about the caller's configuration, not about a broken connection.
_NOT_CONNECTION = (ClientConfigurationError, UnsupportedClientFeatureError, UnsupportedServerFeatureError)


class StorageError(ChronicleError):
    """The database refused an operation for a reason that is not the caller's input."""

    def __init__(self, operation: str, sqlstate: str | None, message: str) -> None:
        self.operation = operation
        self.sqlstate = sqlstate
        super().__init__(f"{operation} failed in the database ({sqlstate}): {message}")


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` says the connection or server is away, or the failure was transient."""
    if isinstance(exc, _NOT_CONNECTION):
        return False
    if isinstance(exc, OSError | asyncio.TimeoutError | asyncpg.InterfaceError | asyncpg.InternalClientError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        return state.startswith(_CONNECTION_STATES) or state in _RETRIABLE_STATES
    return False


def translate(exc: BaseException, operation: str) -> ChronicleError:
    if is_connection_error(exc):
        return StoreUnavailable(f"{operation}: the database is unreachable: {exc}")
    sqlstate = getattr(exc, "sqlstate", None)
    return StorageError(operation, sqlstate, str(exc))


async def fetch(pool: asyncpg.Pool, operation: str, sql: str, *args: Any) -> list[Any]:
    """Run one read on a pooled connection, translating driver errors.

    After the server restarts, every idle connection in the pool is dead, and the first
    query on one may fail before the driver has noticed (a read is not ambiguous: it changed
    nothing). So on a connection error every pooled connection is retired (they are
    reopened on demand) and the read is tried once more on a fresh one. If that fails too,
    the server is really away: StoreUnavailable.
    """
    try:
        return list(await pool.fetch(sql, *args))
    except DRIVER_ERRORS as exc:
        if not is_connection_error(exc) or pool.is_closing():
            raise translate(exc, operation) from exc
    await pool.expire_connections()
    try:
        return list(await pool.fetch(sql, *args))
    except DRIVER_ERRORS as exc:
        raise translate(exc, operation) from exc


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb travels as the bytes orjson produced: binary jsonb is one version byte and the text.
    # Decoding is left to RecordedEvent, which does it on first access.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        format="binary",
    )


def _encode_jsonb(value: bytes) -> bytes:
    return b"\x01" + value


def _decode_jsonb(value: bytes) -> bytes:
    return value[1:]


async def create_pool(database_url: str, size: int, **kwargs: Any) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            database_url,
            min_size=1,
            max_size=size,
            init=_init_connection,
            command_timeout=None,
            timeout=CONNECT_TIMEOUT,
            **kwargs,
        )
    except DRIVER_ERRORS as exc:
        raise translate(exc, "connect") from exc
    assert pool is not None
    return pool


async def connect(database_url: str, *, application_name: str | None = None) -> asyncpg.Connection:
    """A single connection with Chronicle's codecs (the group-commit writer, listeners, COPY,
    leases). ``application_name`` is what pg_stat_activity shows for it."""
    conn: asyncpg.Connection | None = None
    settings = {"application_name": application_name} if application_name else None
    try:
        conn = await asyncpg.connect(database_url, timeout=CONNECT_TIMEOUT, server_settings=settings)
        await _init_connection(conn)
    except DRIVER_ERRORS as exc:
        if conn is not None:
            conn.terminate()
        raise translate(exc, "connect") from exc
    except BaseException:  # cancelled while setting the codecs up: nobody else can close it
        if conn is not None:
            conn.terminate()
        raise
    return conn


async def close_connection(conn: asyncpg.Connection) -> None:
    """Close politely if the server answers within a few seconds, otherwise just drop it."""
    try:
        await conn.close(timeout=5)
    except DRIVER_ERRORS:
        conn.terminate()
    except BaseException:  # cancelled half-way through the goodbye
        conn.terminate()
        raise
