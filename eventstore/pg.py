"""asyncpg plumbing: pools with Chronicle's codecs, and the translation of driver errors.

Driver exceptions stop here; callers see only core.errors types, raised ``from`` the original.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from core.errors import ChronicleError, StoreUnavailable

__all__ = ["APPEND_LOCK", "StorageError", "connect", "create_pool", "is_connection_error", "translate"]

# The advisory lock every writer of `events` holds until it commits (see chronicle_append in
# revision 0001, which keeps its own frozen copy of the key).
APPEND_LOCK = 7_291_033_451

# SQLSTATE classes that mean "the connection or the server went away", not "your data is bad".
_CONNECTION_STATES = ("08", "57P01", "57P02", "57P03", "53300")
_RETRIABLE_STATES = ("40001", "40P01", "57014")


class StorageError(ChronicleError):
    """The database refused an operation for a reason that is not the caller's input."""

    def __init__(self, operation: str, sqlstate: str | None, message: str) -> None:
        self.operation = operation
        self.sqlstate = sqlstate
        super().__init__(f"{operation} failed in the database ({sqlstate}): {message}")


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError | asyncio.TimeoutError | asyncpg.InterfaceError):
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
            **kwargs,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise translate(exc, "connect") from exc
    assert pool is not None
    return pool


async def connect(database_url: str) -> asyncpg.Connection:
    """A single connection with Chronicle's codecs (listeners, bulk COPY)."""
    try:
        conn = await asyncpg.connect(database_url)
        await _init_connection(conn)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise translate(exc, "connect") from exc
    return conn
