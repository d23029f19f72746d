"""The verifier: recompute every seal from the events themselves and compare.

``verify_log`` walks the whole log in global order, in one REPEATABLE READ snapshot, beside its
seals, and recomputes from each event's canonical bytes alone:

- its leaf hash, against the stored one (a changed byte anywhere in the event);
- its stream chain link from the previous event of its stream, and that the stream's versions
  run 1, 2, 3, ... (an event deleted, moved or altered inside a stream);
- the leaf numbering and positions of the seals (a deleted event leaves a seal with no event;
  a forged insert is an unsealed event before sealed ones; swapped rows break the leaves);
- the Merkle tree over the recomputed leaves, whose root at every checkpoint's size must equal
  the root that checkpoint signed. The checkpoints are the database's own, their signatures
  checked with the trusted keys, and any the auditor kept (``trusted``): a stream rewritten
  with correctly recomputed chains, seals and nodes still changes the root under a checkpoint
  signed before the rewrite, and no one without the private key can sign a new one.

Events after the last seal are the unsealed tail: reported with its length and age, not a
break. ``verify_stream`` does the same for one stream, and checks each sealed event's
inclusion proof from the stored tree against the latest checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from core.proofs import (
    Checkpoint,
    Frontier,
    NoteError,
    Verifier,
    leaf_hash,
    open_note,
    parse_checkpoint,
    verify_inclusion,
)
from eventstore.audit.proofs import inclusion_path

__all__ = ["Break", "Report", "verify_log", "verify_stream"]

MAX_BREAKS = 20
WALK = """
SELECT coalesce(e.global_position, s.global_position) AS position, e.event_id IS NULL AS gone,
       e.stream_id, e.stream_version,
       e.recorded_at, chronicle_canonical(e.event_id, e.stream_id, e.stream_version, e.event_type,
           e.schema_version, e.tenant_id, e.recorded_at, e.data, e.metadata) AS canonical,
       s.leaf, s.leaf_hash, s.stream_hash
FROM all_events e FULL JOIN seals s ON s.global_position = e.global_position
ORDER BY 1
"""
STREAM = """
SELECT e.global_position AS position, e.stream_id, e.stream_version, e.recorded_at,
       chronicle_canonical(e.event_id, e.stream_id, e.stream_version, e.event_type,
           e.schema_version, e.tenant_id, e.recorded_at, e.data, e.metadata) AS canonical,
       s.leaf, s.leaf_hash, s.stream_hash
FROM all_events e LEFT JOIN seals s ON s.global_position = e.global_position
WHERE e.stream_id = $1 ORDER BY e.stream_version
"""

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Break:
    position: int | None  # None: a break of the tree or a checkpoint, not of one event
    stream_id: str | None
    what: str

    def __str__(self) -> str:
        if self.position is None:
            return self.what
        stream = f" (stream {self.stream_id})" if self.stream_id else ""
        return f"position {self.position}{stream}: {self.what}"


@dataclass(slots=True)
class Report:
    events: int = 0
    sealed: int = 0
    unsealed: int = 0
    oldest_unsealed: datetime | None = None
    checkpoints_checked: int = 0
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    def broke(self, position: int | None, stream_id: str | None, what: str) -> None:
        if len(self.breaks) < MAX_BREAKS:
            self.breaks.append(Break(position, stream_id, what))


class _Walk:
    """The state of one walk in log order: chain heads, the tree's frontier, the checkpoints due."""

    def __init__(self, report: Report, checkpoints: dict[int, tuple[bytes, str]] | None) -> None:
        """``checkpoints`` None: one stream's walk, whose leaves are not contiguous, so neither
        their numbering nor the tree can be checked from it."""
        self.report = report
        self.links: dict[str, tuple[int, bytes]] = {}
        self.tree = Frontier()  # recomputed from the events
        self.leaves = 0  # the next leaf number expected, deleted events included
        self.checkpoints = checkpoints
        self.unsealed: list[asyncpg.Record] = []

    def row(self, row: asyncpg.Record) -> None:
        report = self.report
        if row.get("gone"):
            report.broke(row["position"], None, f"leaf {row['leaf']} is sealed but its event is gone")
            self.leaves += 1  # keep numbering the rest
            return
        report.events += 1
        if row["leaf"] is None:
            self.unsealed.append(row)
            return
        for forged in self.unsealed:  # an unsealed event before a sealed one was put in later
            report.broke(forged["position"], forged["stream_id"], "event has no seal but later events do")
        self.unsealed.clear()
        report.sealed += 1
        canonical: bytes = row["canonical"]
        hashed = leaf_hash(canonical)
        if self.checkpoints is not None and row["leaf"] != self.leaves:
            report.broke(
                row["position"], row["stream_id"], f"sealed as leaf {row['leaf']}, expected {self.leaves}"
            )
        if bytes(row["leaf_hash"]) != hashed:
            report.broke(row["position"], row["stream_id"], "event differs from what was sealed (leaf hash)")
        self._chain(row, canonical)
        self._grow(hashed)

    def _chain(self, row: asyncpg.Record, canonical: bytes) -> None:
        stream = row["stream_id"]
        version, previous = self.links.get(stream, (0, b""))
        if row["stream_version"] != version + 1:
            self.report.broke(
                row["position"], stream, f"stream version {row['stream_version']} follows version {version}"
            )
        link = hashlib.sha256(previous + canonical).digest()
        if bytes(row["stream_hash"]) != link:
            self.report.broke(row["position"], stream, "chain link does not follow from the previous event")
        self.links[stream] = (row["stream_version"], link)

    def _grow(self, hashed: bytes) -> None:
        self.leaves += 1
        if self.checkpoints is None:
            return
        self.tree.append(hashed)
        if self.tree.size in self.checkpoints:
            signed, origin = self.checkpoints.pop(self.tree.size)
            self.report.checkpoints_checked += 1
            if self.tree.root() != signed:
                size = self.tree.size
                what = f"the log's first {size} events differ from checkpoint {origin}/{size}"
                self.report.broke(None, None, what)

    def finish(self) -> None:
        self.report.unsealed = len(self.unsealed)
        if self.unsealed:
            self.report.oldest_unsealed = self.unsealed[0]["recorded_at"]
        for size in sorted(self.checkpoints or ()):
            self.report.broke(None, None, f"checkpoint of {size} events, but only {self.leaves} are sealed")


async def _checkpoints(
    conn: asyncpg.Connection, verifiers: Sequence[Verifier], trusted: Sequence[str], report: Report
) -> dict[int, tuple[bytes, str]]:
    """Every checkpoint to hold the log to, by size: (root, origin); bad signatures are breaks."""
    found: dict[int, tuple[bytes, str]] = {}
    notes = [r["note"] for r in await conn.fetch("SELECT note FROM checkpoints ORDER BY size")]
    for note in [*notes, *trusted]:
        try:
            text, _ = open_note(note, verifiers)
        except NoteError as exc:
            report.broke(None, None, f"a checkpoint's signature does not verify with the trusted keys: {exc}")
            continue
        checkpoint = parse_checkpoint(text)
        if checkpoint.size in found and found[checkpoint.size][0] != checkpoint.root:
            report.broke(None, None, f"two checkpoints of size {checkpoint.size} sign different roots")
        found[checkpoint.size] = (checkpoint.root, checkpoint.origin)
    return found


async def verify_log(
    conn: asyncpg.Connection,
    verifiers: Sequence[Verifier],
    *,
    trusted: Sequence[str] = (),
    progress: Progress | None = None,
    chunk: int = 10_000,
) -> Report:
    """Walk the whole log; ``trusted`` are checkpoint notes kept outside the database."""
    report = Report()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        walk = _Walk(report, await _checkpoints(conn, verifiers, trusted, report))
        total = await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM all_events")
        cursor = await conn.cursor(WALK)
        while rows := await cursor.fetch(chunk):
            for row in rows:
                walk.row(row)
            if progress is not None:
                progress(rows[-1]["position"], total)
        walk.finish()
    return report


async def verify_stream(conn: asyncpg.Connection, stream_id: str, verifiers: Sequence[Verifier]) -> Report:
    """Walk one stream's chain and prove each sealed event against the latest checkpoint."""
    report = Report()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        latest = await conn.fetchval("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
        checkpoint: Checkpoint | None = None
        if latest is not None:
            try:
                checkpoint = parse_checkpoint(open_note(latest, verifiers)[0])
            except NoteError as exc:
                report.broke(None, None, f"the latest checkpoint's signature does not verify: {exc}")
        walk = _Walk(report, None)
        for row in await conn.fetch(STREAM, stream_id):
            walk.row(row)
            covered = checkpoint is not None and row["leaf"] is not None and row["leaf"] < checkpoint.size
            if covered and checkpoint is not None:
                path = await inclusion_path(conn, row["leaf"], checkpoint.size)
                if not verify_inclusion(
                    leaf_hash(row["canonical"]), row["leaf"], checkpoint.size, path, checkpoint.root
                ):
                    report.broke(row["position"], stream_id, "not included in the latest signed checkpoint")
        walk.finish()
    return report
