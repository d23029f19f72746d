"""Data keys: one AES-256 key per (tenant, subject), wrapped by the current master key.

Concurrency. Creating a data key locks the current master key's row (``FOR SHARE``) in the
same transaction as the insert, and a rotation retires that row with an ``UPDATE`` before it
re-wraps: so a rotation waits for every creation under the old key to commit, and then sees
(and re-wraps) what they created, while a creation that waited for a rotation finds no
current row and looks again. A subject has one live key (a partial unique index); two
processes creating it at once both end up with the one that committed first.

Unwrapped keys are cached for ``ttl`` seconds: a subject forgotten by another process reads
as redacted here within that time, and read models scrub what they copied when they apply
the ``SubjectForgotten`` event, whatever they read before it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from uuid import UUID

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import KeyUnavailable
from eventstore.privacy.masterkeys import KEY_BYTES, MasterKeyFiles

__all__ = ["SubjectKeys"]

_LIVE = (
    "SELECT key_id, wrapped_key, master_key_id FROM subject_keys "
    "WHERE tenant_id = $1 AND subject = $2 AND forgotten_at IS NULL"
)
_CREATE = (
    "INSERT INTO subject_keys (key_id, tenant_id, subject, wrapped_key, master_key_id) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, subject) WHERE forgotten_at IS NULL DO NOTHING "
    "RETURNING key_id, wrapped_key, master_key_id"
)
_BY_ID = "SELECT key_id, wrapped_key, master_key_id FROM subject_keys WHERE key_id = ANY($1::uuid[])"
_CACHE_LIMIT = 100_000


def _wrap(master: bytes, key: bytes, key_id: UUID) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(master).encrypt(nonce, key, key_id.bytes)


class SubjectKeys:
    def __init__(self, pool: asyncpg.Pool, files: MasterKeyFiles, ttl: float = 1.0) -> None:
        self._pool = pool
        self.files = files
        self._ttl = ttl
        self._live: dict[tuple[str, str], tuple[float, UUID, bytes]] = {}
        self._by_id: dict[UUID, tuple[float, bytes | None]] = {}

    def _unwrap(self, key_id: UUID, wrapped: bytes, master_id: str) -> bytes:
        master = self.files.load(master_id)
        try:
            return AESGCM(master).decrypt(wrapped[:12], wrapped[12:], key_id.bytes)
        except InvalidTag as exc:
            raise KeyUnavailable(f"data key {key_id} does not open with master key {master_id}") from exc

    async def live_key(self, tenant_id: str, subject: str) -> tuple[UUID, bytes]:
        """The subject's key for new data, created on first use."""
        now = time.monotonic()
        hit = self._live.get((tenant_id, subject))
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_LIVE, tenant_id, subject) or await self._create(
                conn, tenant_id, subject
            )
        key_id = row["key_id"]
        key = self._unwrap(key_id, row["wrapped_key"], row["master_key_id"])
        self._remember(now, key_id, key, (tenant_id, subject))
        return key_id, key

    async def _create(self, conn: asyncpg.Connection, tenant_id: str, subject: str) -> asyncpg.Record:
        for _ in range(5):
            async with conn.transaction():
                master_id = await self._current_master(conn)
                if master_id is None:
                    continue  # a rotation retired it while we waited: look again
                key_id, key = uuid.uuid4(), os.urandom(KEY_BYTES)
                wrapped = _wrap(self.files.load(master_id), key, key_id)
                row = await conn.fetchrow(_CREATE, key_id, tenant_id, subject, wrapped, master_id)
            if row is None:  # another process created it first
                row = await conn.fetchrow(_LIVE, tenant_id, subject)
            if row is not None:
                return row
        raise KeyUnavailable(
            f"could not create a data key for subject {subject!r}: master keys keep changing"
        )

    async def _current_master(self, conn: asyncpg.Connection) -> str | None:
        """The current master key's id, locked against rotation until this transaction ends;
        the first call on a new database creates the first master key."""
        current: str | None = await conn.fetchval(
            "SELECT id FROM master_keys WHERE retired_at IS NULL FOR SHARE"
        )
        if current is not None:
            return current
        if await conn.fetchval("SELECT count(*) FROM master_keys"):
            return None  # retired under us by a rotation that has not committed its new key yet
        created = self.files.create()
        async with conn.transaction():  # a savepoint: losing the race must not end the outer one
            inserted = await conn.fetchval(
                "INSERT INTO master_keys (id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id", created
            )
        if inserted is None:
            self.files.remove(created)
            return None
        return str(inserted)

    async def keys(self, key_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        """Each data key by id, or None where it was destroyed; one query for the ones not cached."""
        now = time.monotonic()
        found: dict[UUID, bytes | None] = {}
        missing: list[UUID] = []
        for key_id in set(key_ids):
            hit = self._by_id.get(key_id)
            if hit is not None and hit[0] > now:
                found[key_id] = hit[1]
            else:
                missing.append(key_id)
        if missing:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(_BY_ID, missing)
            for row in rows:
                wrapped = row["wrapped_key"]
                key = None if wrapped is None else self._unwrap(row["key_id"], wrapped, row["master_key_id"])
                self._remember(now, row["key_id"], key)
                found[row["key_id"]] = key
            unknown = set(missing) - found.keys()
            if unknown:
                raise KeyUnavailable(f"data keys {sorted(map(str, unknown))} are not in subject_keys")
        return found

    def _remember(
        self, now: float, key_id: UUID, key: bytes | None, live: tuple[str, str] | None = None
    ) -> None:
        if len(self._by_id) > _CACHE_LIMIT or len(self._live) > _CACHE_LIMIT:
            self._by_id.clear()
            self._live.clear()
        self._by_id[key_id] = (now + self._ttl, key)
        if live is not None and key is not None:
            self._live[live] = (now + self._ttl, key_id, key)

    def forget_cached(self, tenant_id: str, subject: str) -> None:
        self._live.pop((tenant_id, subject), None)
        self._by_id.clear()

    async def rotate_master(self) -> tuple[list[str], str, int]:
        """Wrap every live data key with a new master key; then remove the old master key
        files, once no data key is wrapped by them. Returns (old ids, new id, keys re-wrapped)."""
        new_id = self.files.create()  # on disk before any data key depends on it
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                old = [
                    r["id"]
                    for r in await conn.fetch(
                        "UPDATE master_keys SET retired_at = now() WHERE retired_at IS NULL RETURNING id"
                    )
                ]
                await conn.execute("INSERT INTO master_keys (id) VALUES ($1)", new_id)
                rows = await conn.fetch(
                    "SELECT key_id, wrapped_key, master_key_id FROM subject_keys "
                    "WHERE wrapped_key IS NOT NULL AND master_key_id <> $1 FOR UPDATE",
                    new_id,
                )
                master = self.files.load(new_id)
                await conn.executemany(
                    "UPDATE subject_keys SET wrapped_key = $2, master_key_id = $3 WHERE key_id = $1",
                    [
                        (
                            r["key_id"],
                            _wrap(
                                master,
                                self._unwrap(r["key_id"], r["wrapped_key"], r["master_key_id"]),
                                r["key_id"],
                            ),
                            new_id,
                        )
                        for r in rows
                    ],
                )
            still_used = {
                r["master_key_id"]
                for r in await conn.fetch(
                    "SELECT DISTINCT master_key_id FROM subject_keys WHERE wrapped_key IS NOT NULL"
                )
            }
            retired = [
                r["id"] for r in await conn.fetch("SELECT id FROM master_keys WHERE retired_at IS NOT NULL")
            ]
        for key_id in retired:
            if key_id not in still_used:
                self.files.remove(key_id)
        self._live.clear()
        self._by_id.clear()
        return old, new_id, len(rows)
