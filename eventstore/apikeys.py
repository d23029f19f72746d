"""API keys (migration 0008): create, list, revoke, and authenticate a presented key.

Authentication costs one indexed lookup; a key that authenticated is remembered for
``ttl`` seconds, so a revocation takes effect in every API process within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from core.errors import InvalidInput

__all__ = ["SCOPES", "ApiKey", "KeyRing", "Principal", "create_key", "list_keys", "revoke_key"]

SCOPES = ("tasks:write", "tasks:read", "agents:write", "audit:read", "admin")
_TOKEN = re.compile(r"chr_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_LIVE_KEY = (
    "SELECT secret_sha256, tenant_id, actor, scopes FROM api_keys WHERE key_id = $1 AND revoked_at IS NULL"
)
_ACTOR = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: the key's tenant and actor, and what it may do."""

    key_id: str
    tenant_id: str
    actor: str
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    tenant_id: str
    actor: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create_key(conn: asyncpg.Connection, tenant_id: str, actor: str, scopes: tuple[str, ...]) -> str:
    """A new key; the returned token is the only time its secret is shown."""
    for name, value in (("tenant", tenant_id), ("actor", actor)):
        if not isinstance(value, str) or not _ACTOR.fullmatch(value):
            raise InvalidInput(f"{name} must be 1-128 letters, digits or _.:@-, got {value!r}")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidInput(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO api_keys (key_id, secret_sha256, tenant_id, actor, scopes) VALUES ($1, $2, $3, $4, $5)",
        key_id,
        _digest(secret),
        tenant_id,
        actor,
        sorted(set(scopes)),
    )
    return f"chr_{key_id}_{secret}"


async def list_keys(conn: asyncpg.Connection) -> list[ApiKey]:
    rows = await conn.fetch(
        "SELECT key_id, tenant_id, actor, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at"
    )
    return [ApiKey(r[0], r[1], r[2], tuple(r[3]), r[4], r[5]) for r in rows]


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> bool:
    revoked = await conn.fetchval(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL RETURNING true",
        key_id,
    )
    return bool(revoked)


class KeyRing:
    """Authenticates presented tokens against ``api_keys``, with a short cache."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = 1.0) -> None:
        self._pool = pool
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def authenticate(self, token: str | None) -> Principal | None:
        """The principal for a valid, unrevoked key; None for anything else."""
        if not token:
            return None
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = await self._lookup(token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (now + self._ttl, principal)
        return principal

    async def _lookup(self, token: str) -> Principal | None:
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(_LIVE_KEY, key_id)
        if row is None or not hmac.compare_digest(bytes(row["secret_sha256"]), _digest(secret)):
            return None
        return Principal(key_id, row["tenant_id"], row["actor"], frozenset(row["scopes"]))
