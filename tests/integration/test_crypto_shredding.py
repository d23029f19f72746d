"""Crypto-shredding against real PostgreSQL: personal fields are stored sealed, read back open,
and once their subject is forgotten read as redaction markers everywhere (reads, replays,
audit exports, read models, rebuilds), while no stored byte changes and every proof verifies.

The module's store seals with master keys in a temporary directory; the tests run in order
and share one story: alice and bob talk, alice is forgotten, alice comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import pytest

from core.domain import CONVERSATION, DOMAIN_EVENTS, CommandContext, handle
from core.domain.contracts import DomainEvent, EventRegistry, Upcaster
from core.domain.conversation import SendMessage
from core.errors import KeyUnavailable
from core.privacy import REDACTED_JSON, REDACTED_TEXT, Personal
from core.proofs import bundle
from core.settings import Settings
from eventstore import EventStore, NewEvent
from eventstore.audit.keys import known_verifiers, load_or_create
from eventstore.audit.proofs import inclusion_document
from eventstore.audit.sealer import seal_batch
from eventstore.audit.verify import verify_log
from eventstore.pg import connect
from eventstore.privacy import Privacy
from projections import audit
from projections.models.conversations import Conversations, conversation
from projections.runner.daemon import ProjectionDaemon
from projections.runner.rebuild import rebuild
from tests.waiting import eventually

pytestmark = pytest.mark.integration

ACME = CommandContext("acme", "test")
T0 = datetime(2026, 12, 1, tzinfo=UTC)
SECRET = "alice's home address is 1 Elm Street"


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("master-keys")


@pytest.fixture(scope="module")
async def store(database_url: str, key_dir: Path) -> AsyncIterator[EventStore]:
    async with await EventStore.connect(
        database_url, Settings(poll_interval=0.2, master_key_dir=key_dir)
    ) as s:
        yield s


@pytest.fixture(scope="module")
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await connect(database_url)
    yield c
    await c.close()


async def say(store: EventStore, conversation_id: str, sender: str, text: str) -> None:
    command = SendMessage(conversation_id, sender, "carol", T0, {"text": text})
    await handle(store, CONVERSATION.stream_id(conversation_id), command, CONVERSATION, ACME)


async def stored(conn: asyncpg.Connection) -> list[tuple[Any, ...]]:
    rows = await conn.fetch("SELECT global_position, data::text, metadata::text FROM events ORDER BY 1")
    return [tuple(r) for r in rows]


async def caught_up(store: EventStore, url: str, conn: asyncpg.Connection) -> None:
    daemon = ProjectionDaemon(store, url, [Conversations()], poll_interval=0.05, lease_interval=0.05)
    running = asyncio.create_task(daemon.run())
    try:
        head = await store.head_position()
        position = (
            "SELECT k.position FROM projections p JOIN projection_checkpoints k "
            "ON k.name = p.name AND k.generation = p.active_generation WHERE p.name = 'conversations'"
        )
        await eventually(
            lambda: conn.fetchval(position),
            lambda at: at is not None and at >= head,
            what="the conversations model catching up",
        )
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def bodies(conn: asyncpg.Connection) -> dict[tuple[str, int], Mapping[str, Any]]:
    return {(m.sender, m.sequence): m.body for m in await conversation(conn, "c1")}


async def test_personal_fields_are_stored_sealed_and_read_back_open(
    store: EventStore, conn: asyncpg.Connection, database_url: str
) -> None:
    await say(store, "c1", "alice", SECRET)
    await say(store, "c1", "bob", "bob's note")
    rows = await stored(conn)
    assert len(rows) == 2
    assert not any(SECRET in data or "bob's note" in data for _, data, _ in rows)
    assert all('"$personal"' in data for _, data, _ in rows)
    texts = [e.data["body"]["text"] for e in await store.read_stream(CONVERSATION.stream_id("c1"))]
    assert texts == [SECRET, "bob's note"]
    await caught_up(store, database_url, conn)
    assert await bodies(conn) == {("alice", 1): {"text": SECRET}, ("bob", 2): {"text": "bob's note"}}


async def test_forgetting_redacts_everywhere_and_changes_no_stored_byte(
    store: EventStore, conn: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    signing = load_or_create(tmp_path / "signing.key", "shred.test/log")
    while (sealed := await seal_batch(conn, signing, checkpoint_now=True)) and sealed.events:
        pass
    alice_event = (await store.read_stream(CONVERSATION.stream_id("c1")))[0]
    before = await stored(conn)

    assert await store.privacy.forget(conn, "alice", tenant_id="acme", reason="erasure request") == 1

    assert (await stored(conn))[: len(before)] == before  # no stored byte changed
    events = await store.read_stream(CONVERSATION.stream_id("c1"))
    assert [e.data["body"] for e in events] == [REDACTED_JSON, {"text": "bob's note"}]
    assert (await store.read_event(alice_event.event_id)).data["body"] == REDACTED_JSON  # type: ignore[union-attr]
    # A replay decodes the redacted event like any other.
    assert DOMAIN_EVENTS.read(events[0]).body == REDACTED_JSON  # type: ignore[attr-defined]

    # The proofs: the whole log verifies, and alice's event is still provably in it.
    while (sealed := await seal_batch(conn, signing, checkpoint_now=True)) and sealed.events:
        pass
    verifiers = await known_verifiers(conn)
    report = await verify_log(conn, verifiers)
    assert report.ok, report.breaks
    assert report.events == report.sealed == len(before) + 1  # and the SubjectForgotten event
    checked = bundle.check(await inclusion_document(conn, alice_event.event_id), verifiers)  # raises if not
    assert checked.event is not None and checked.event["event_id"] == str(alice_event.event_id)

    # The audit trail and its export show the marker, never the plaintext.
    privacy = await Privacy.connect(database_url, Settings(master_key_dir=store.privacy.keys.files.directory))
    try:
        await _audit_index_built(store, database_url, conn)
        page = await audit.query(conn, audit.AuditFilter(category="conversation"), privacy=privacy)
        assert [e.data["body"] for e in page.events] == [REDACTED_JSON, {"text": "bob's note"}]
        sink = io.StringIO()
        await audit.export(conn, sink, audit.ExportFormat("jsonl"), privacy=privacy)
        assert SECRET not in sink.getvalue() and "bob's note" in sink.getvalue()
    finally:
        await privacy.close()

    # The read model scrubs what it copied, and a rebuild agrees with it.
    await caught_up(store, database_url, conn)
    assert await bodies(conn) == {("alice", 1): REDACTED_JSON, ("bob", 2): {"text": "bob's note"}}
    live = await conn.fetch("SELECT * FROM conversation_messages ORDER BY sequence")
    await rebuild(store, conn, Conversations())
    rebuilt = await conn.fetch("SELECT * FROM conversation_messages ORDER BY sequence")
    assert [dict(r) for r in rebuilt] == [dict(r) for r in live]


async def _audit_index_built(store: EventStore, url: str, conn: asyncpg.Connection) -> None:
    from projections.models.audit import AuditIndex

    await rebuild(store, conn, AuditIndex())


async def test_a_forgotten_subject_who_comes_back_gets_a_new_key(
    store: EventStore, conn: asyncpg.Connection, database_url: str
) -> None:
    await say(store, "c1", "alice", "hello again")
    events = await store.read_stream(CONVERSATION.stream_id("c1"))
    assert [e.data["body"] for e in events] == [
        REDACTED_JSON,
        {"text": "bob's note"},
        {"text": "hello again"},
    ]
    keys = await conn.fetch("SELECT forgotten_at IS NULL AS live FROM subject_keys WHERE subject = 'alice'")
    assert sorted(r["live"] for r in keys) == [False, True]
    await caught_up(store, database_url, conn)  # her new message is not scrubbed
    assert (await bodies(conn))[("alice", 3)] == {"text": "hello again"}


async def test_rotating_the_master_key_rewraps_every_data_key_and_touches_no_event(
    store: EventStore, conn: asyncpg.Connection, database_url: str, key_dir: Path
) -> None:
    before = await stored(conn)
    old_files = _files(key_dir)
    assert len(old_files) == 1
    old, new, rewrapped = await store.privacy.keys.rotate_master()
    assert (old, rewrapped) == ([old_files[0].removesuffix(".key")], 2)  # bob's and alice's new key
    assert _files(key_dir) == [f"{new}.key"]  # the old key is gone
    assert await stored(conn) == before
    # A process that never saw the old key reads everything.
    settings = Settings(poll_interval=0.2, master_key_dir=key_dir)
    async with await EventStore.connect(database_url, settings) as fresh:
        texts = [e.data["body"] for e in await fresh.read_stream(CONVERSATION.stream_id("c1"))]
    assert texts == [REDACTED_JSON, {"text": "bob's note"}, {"text": "hello again"}]


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_a_missing_master_key_is_an_error_never_a_redaction(database_url: str, tmp_path: Path) -> None:
    settings = Settings(poll_interval=0.2, master_key_dir=tmp_path / "elsewhere")
    async with await EventStore.connect(database_url, settings) as lost:
        with pytest.raises(KeyUnavailable, match="CHRONICLE_MASTER_KEY_DIR"):
            await lost.read_stream(CONVERSATION.stream_id("c1"))


async def test_a_message_without_its_subject_is_refused_before_anything_is_written(
    store: EventStore, conn: asyncpg.Connection
) -> None:
    before = await stored(conn)
    with pytest.raises(ValueError, match=r"data\.sender"):
        await store.append("conversation-odd", [NewEvent("MessageSent", {"body": {"x": 1}})])
    assert await stored(conn) == before


@dataclasses.dataclass(frozen=True, slots=True)
class Note(DomainEvent):
    """Version 2 renamed ``text`` (v1) to ``content``; both versions are personal."""

    TYPE: ClassVar[str] = "Note"
    SCHEMA_VERSION: ClassVar[int] = 2
    PERSONAL: ClassVar[Personal | None] = Personal(subject="author", fields=("content",))

    author: str
    content: str


NOTES = EventRegistry([Note], [Upcaster("Note", 1, lambda d: {"author": d["author"], "content": d["text"]})])


async def test_upcasters_see_opened_values_and_markers(store: EventStore, conn: asyncpg.Connection) -> None:
    """An event written under v1, with v1's personal field sealed, upcasts to v2 with the
    plaintext, and after its subject is forgotten with the redaction marker of its kind."""
    notes = Privacy(store.privacy.keys, {"Note": Personal(subject="author", fields=("text",))})
    (v1,) = await notes.seal(
        [NewEvent("Note", {"author": "dave", "text": "dave's diary"}, {"tenant_id": "acme"})]
    )
    await store.append("note-1", [dataclasses.replace(v1, schema_version=1)])

    async def read() -> Note:
        (recorded,) = await notes.open(await _raw_stream(conn, "note-1"))
        event = NOTES.read(recorded)
        assert isinstance(event, Note)
        return event

    assert (await read()).content == "dave's diary"
    await notes.forget(conn, "dave", tenant_id="acme", reason="test")
    assert (await read()).content == REDACTED_TEXT


async def _raw_stream(conn: asyncpg.Connection, stream_id: str) -> list[Any]:
    from core.events import RecordedEvent
    from eventstore.log.reads import read_stream_sql

    rows = await conn.fetch(read_stream_sql(False), stream_id, 1, 2**31 - 1)
    return [RecordedEvent(*row) for row in rows]


async def test_a_rebuild_that_cannot_open_an_event_is_shown_failed_not_rebuilding(
    database_url: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    """Without the master key the conversations model cannot be rebuilt: the rebuild stops,
    and `projections status` (and /ready) say failed with the reason, instead of a rebuild
    that stays at 0 for ever."""
    from projections.runner.batches import ProjectionFailed
    from projections.runner.status import statuses

    settings = Settings(poll_interval=0.2, master_key_dir=tmp_path / "elsewhere")
    async with await EventStore.connect(database_url, settings) as lost:
        with pytest.raises(ProjectionFailed, match="KeyUnavailable"):
            await rebuild(lost, conn, Conversations())
    shown = {s.name: s for s in await statuses(conn)}["conversations"]
    assert shown.state == "failed" and "KeyUnavailable" in (shown.error or ""), shown
