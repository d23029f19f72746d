"""Callbacks: when a task ends (completed, cancelled, dead-lettered) and its submission named
a callback, tell it: a webhook POST signed with HMAC-SHA256, or a message on a Redis stream.

The sender is a projection (``chronicle projections run`` runs it): it follows the log from
its own checkpoint, so a task's end is never missed, whichever process recorded it, and no
worker has to stay alive to deliver. Each attempt is recorded as ``CallbackAttempted`` in
``callback-<task id>``, and an end already delivered (the daemon died after delivering and
before its checkpoint moved, or a rebuild replays the log) is not delivered again. Delivery
is therefore at least once, and a receiver can drop a repeat by ``X-Chronicle-Delivery``
(the id of the task's ending event). A failure is retried ``attempts`` times with doubling
pauses; meanwhile this projection, and only it, waits.

The body: ``{"task_id", "status", "event_id", "event", "data", "at"}``; the header
``X-Chronicle-Signature: sha256=<hex HMAC of the body>`` with the secret in
``CHRONICLE_WEBHOOK_SECRET_FILE`` (default ``DATA_DIR/webhook.secret``, created on first use).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from redis.asyncio import Redis

from core.domain.callback import CallbackAttempted, callback_stream_id
from core.domain.registry import DOMAIN_EVENTS
from core.events import RecordedEvent
from eventstore import EventStore
from eventstore.redis.keys import PREFIX

__all__ = ["Callbacks", "load_or_create_secret", "signature", "topic_key"]

_ENDS = {"TaskCompleted": "completed", "TaskCancelled": "cancelled", "TaskDeadLettered": "dead_lettered"}


def topic_key(topic: str) -> str:
    return f"{PREFIX}:topic:{topic}"


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def load_or_create_secret(path: Path) -> bytes:
    """The webhook secret in ``path`` (hex), made on first use with mode 0600."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip().encode()


class Callbacks:
    name = "callbacks"
    version = 1
    categories = ("task",)
    tables: tuple[str, ...] = ()

    def __init__(
        self,
        store: EventStore,
        redis: Redis,
        secret: bytes,
        *,
        attempts: int = 5,
        timeout_s: float = 5.0,
        first_pause_s: float = 1.0,
    ) -> None:
        self._store = store
        self._redis = redis
        self._secret = secret
        self._attempts = attempts
        self._timeout = timeout_s
        self._first_pause = first_pause_s

    async def apply(self, conn: asyncpg.Connection, generation: int, events: Sequence[RecordedEvent]) -> None:
        for event in events:
            if event.type not in _ENDS:
                continue
            raw = await conn.fetchval(
                "SELECT data->'callback' FROM all_events WHERE stream_id = $1 AND stream_version = 1",
                event.stream_id,
            )
            callback = orjson.loads(raw) if raw is not None else None
            if callback:
                await self._deliver(event, callback)

    async def _deliver(self, event: RecordedEvent, callback: Mapping[str, Any]) -> None:
        task_id = event.stream_id.split("-", 1)[1]
        stream = callback_stream_id(task_id)
        tried = [
            DOMAIN_EVENTS.read(e)
            for e in await self._store.read_stream(stream)
            if e.data.get("event_id") == str(event.event_id)
        ]
        if any(getattr(t, "delivered", False) for t in tried):
            return  # delivered before a crash or a rebuild: once is enough
        body = orjson.dumps(
            {
                "task_id": task_id,
                "status": _ENDS[event.type],
                "event_id": str(event.event_id),
                "event": event.type,
                "data": dict(event.data),
                "at": event.recorded_at.isoformat(),
            }
        )
        target = str(callback.get("url") or f"topic:{callback.get('topic')}")
        for attempt in range(len(tried) + 1, self._attempts + 1):
            delivered, status, error = await self._send(callback, body, str(event.event_id))
            record = CallbackAttempted(
                task_id, str(event.event_id), attempt, target, delivered, status, error, datetime.now(UTC)
            )
            metadata = {"tenant_id": event.tenant_id} if event.tenant_id else {}
            await self._store.append(stream, [DOMAIN_EVENTS.encode(record, metadata)])
            if delivered:
                return
            if attempt < self._attempts:
                await asyncio.sleep(self._first_pause * 2 ** (attempt - 1))

    async def _send(
        self, callback: Mapping[str, Any], body: bytes, delivery: str
    ) -> tuple[bool, int | None, str | None]:
        topic = callback.get("topic")
        if topic is not None:
            try:
                await self._redis.xadd(topic_key(str(topic)), {"body": body})
            except Exception as exc:  # recorded as a failed attempt, and tried again
                return False, None, f"redis: {exc}"
            return True, None, None
        headers = {
            "Content-Type": "application/json",
            "X-Chronicle-Signature": signature(self._secret, body),
            "X-Chronicle-Delivery": delivery,
        }
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(str(callback["url"]), content=body, headers=headers)
        except httpx.HTTPError as exc:
            return False, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return 200 <= response.status_code < 300, response.status_code, None
