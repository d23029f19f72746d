"""Content-addressed blob storage in PostgreSQL (the ``blobs`` table): tensors for agent state.

A blob's name is its content: ``sha256:<64 hex>`` of its bytes. So storing the same content
twice keeps one row (deduplication), an event that names a digest names exactly one content
forever, and a reader checks what it got against the name it asked for.

What if the process dies half-way. A blob is written by one INSERT statement: PostgreSQL keeps
all of it or none of it, so no reader ever sees half a blob. A checkpoint writes its blob
before it appends the event that names it; dying in between leaves an unreferenced blob, which
garbage collection removes once it is older than the grace period.

Why a grace period, and why a re-put refreshes ``created_at``. Collection deletes blobs that no
event names. A blob just written, whose event is not yet appended, is unreferenced for a
moment; the grace period keeps it. A re-put of old content (an agent returning to earlier
beliefs) resets its clock, so the old row cannot be collected between that put and the append
that references it again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Self

import asyncpg

from core.errors import ChronicleError, InvalidInput
from eventstore.pg import DRIVER_ERRORS, create_pool, fetch, translate

__all__ = ["BlobCorrupt", "BlobNotFound", "BlobRef", "BlobStore", "digest_of"]

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

_PUT = """
INSERT INTO blobs (digest, data, size_bytes) VALUES ($1, $2, $3)
ON CONFLICT (digest) DO UPDATE SET created_at = now()
RETURNING (xmax = 0) AS inserted
"""
_GET = "SELECT data FROM blobs WHERE digest = $1"
# Referenced: named by any AgentBeliefsUpdated event. Events are never deleted, so every
# belief an agent ever held stays restorable (time travel of beliefs works).
_COLLECT = """
DELETE FROM blobs
WHERE created_at < now() - make_interval(secs => $1)
  AND digest NOT IN (SELECT data->>'digest' FROM events WHERE event_type = 'AgentBeliefsUpdated')
"""


class BlobNotFound(ChronicleError):
    def __init__(self, digest: str) -> None:
        self.digest = digest
        super().__init__(f"no blob is stored under {digest}")


class BlobCorrupt(ChronicleError):
    def __init__(self, digest: str, actual: str) -> None:
        self.digest = digest
        self.actual = actual
        super().__init__(f"blob {digest} holds content whose digest is {actual}")


@dataclass(frozen=True, slots=True)
class BlobRef:
    """Where a blob was stored; ``new`` is False when the same content was already there."""

    digest: str
    size_bytes: int
    new: bool


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class BlobStore:
    """Create with ``await BlobStore.connect(url)``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, database_url: str, *, pool_size: int = 2) -> Self:
        return cls(await create_pool(database_url, pool_size))

    async def close(self) -> None:
        await self._pool.close()

    async def put(self, data: bytes) -> BlobRef:
        """Store ``data`` under its digest (once, however often it is put)."""
        digest = digest_of(data)
        rows = await self._fetch(_PUT, digest, data, len(data), op="put blob")
        return BlobRef(digest, len(data), bool(rows[0][0]))

    async def get(self, digest: str) -> bytes:
        """The bytes stored under ``digest``; raises BlobNotFound, or BlobCorrupt if they do not match."""
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise InvalidInput(f"a blob digest is 'sha256:<64 hex>', got {digest!r}")
        rows = await self._fetch(_GET, digest, op="get blob")
        if not rows:
            raise BlobNotFound(digest)
        data = bytes(rows[0][0])
        actual = digest_of(data)
        if actual != digest:
            raise BlobCorrupt(digest, actual)
        return data

    async def collect_garbage(self, grace_seconds: float = 3600.0) -> int:
        """Delete blobs no event names and nobody put within ``grace_seconds``; returns how many."""
        if grace_seconds < 0:
            raise InvalidInput(f"grace_seconds must be >= 0, got {grace_seconds}")
        try:
            status = await self._pool.execute(_COLLECT, float(grace_seconds))
        except DRIVER_ERRORS as exc:
            raise translate(exc, "collect blobs") from exc
        return int(status.split()[-1])

    async def _fetch(self, sql: str, *args: Any, op: str) -> list[Any]:
        return await fetch(self._pool, op, sql, *args)
