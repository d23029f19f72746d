"""Rollback's full tier: checksummed checkpoint files, and the thread that writes them.

``CheckpointStore`` writes one snapshot per file: serialise to bytes, hash, write to a temporary
file, fsync, rename over the final name, fsync the directory; then the same for a small JSON
manifest listing the checkpoints and their SHA-256. A crash at any point leaves either the old
manifest or the new one, each naming only complete files. Loading verifies the hash and falls
back to the previous checkpoint if the newest is damaged. Files load with
``torch.load(weights_only=True)``: snapshots hold only tensors and plain values, so reading a
checkpoint can never run code.

A checkpoint is never ahead of the log. The manifest is what makes a checkpoint the resume
point, so it is also where a checkpoint waits for the event log: ``save`` writes the checkpoint
file, then calls ``wait_for_log`` (the event sink's barrier, which Tolaria takes right after the
boundary's last event, when it takes the snapshot), and writes the manifest only if that says
every event emitted before the snapshot is in the log. Were it the other way round, a run
killed between the manifest and the flush would resume after epoch C with C's EpochCompleted,
decision and transitions missing from the log. A checkpoint file the manifest does not name is
never loaded, and the next save removes it.

``CheckpointWriter`` is the ``core.triad.ports.Checkpoints`` port: it runs ``save`` on one
background thread, so the step thread never waits for a disk or for the log. Saves run in the
order they were submitted, each holding its snapshot in memory until it is written; while the
event store is away, the barrier waits as long as the flusher retries, and later checkpoints
queue behind it.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import orjson
import torch

from core.triad.errors import CheckpointCorrupt, CheckpointNotPublished, NoCheckpoint
from core.triad.ports import CheckpointFailed, CheckpointInfo, CheckpointResult, already_recorded
from core.triad.rollback import TrainingSnapshot
from core.triad.slots import SlotSnapshot

__all__ = ["CheckpointStore", "CheckpointWriter"]

_FORMAT = 1


class CheckpointStore:
    """Checkpoint files in one directory, named by the manifest; ``keep`` newest are kept."""

    MANIFEST = "manifest.json"

    def __init__(self, directory: Path, keep: int = 3) -> None:
        self.directory = directory
        self.keep = keep

    def save(
        self, snapshot: TrainingSnapshot, wait_for_log: Callable[[], bool] = already_recorded
    ) -> CheckpointInfo:
        """Write ``snapshot`` and publish it in the manifest once ``wait_for_log`` returns True."""
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = _to_bytes(snapshot)
        digest = hashlib.sha256(payload).hexdigest()
        path = self.directory / f"ckpt-{snapshot.epoch:06d}.pt"
        _write_atomically(path, payload)
        if not wait_for_log():
            raise CheckpointNotPublished(
                f"checkpoint of epoch {snapshot.epoch} not published: its events never reached the log"
            )
        info = CheckpointInfo(snapshot.epoch, path, digest, len(payload))
        kept = [*[c for c in self.list() if c.epoch != info.epoch], info][-self.keep :]
        manifest = [
            {"epoch": c.epoch, "file": c.path.name, "sha256": c.sha256, "bytes": c.size_bytes} for c in kept
        ]
        _write_atomically(self.directory / self.MANIFEST, orjson.dumps(manifest))
        self._remove_unlisted({c.path.name for c in kept})
        return info

    def list(self) -> list[CheckpointInfo]:
        """Checkpoints the manifest names, oldest first."""
        try:
            raw = (self.directory / self.MANIFEST).read_bytes()
        except FileNotFoundError:
            return []
        return [
            CheckpointInfo(e["epoch"], self.directory / e["file"], e["sha256"], e["bytes"])
            for e in orjson.loads(raw)
        ]

    def load_latest(self, device: torch.device | None = None) -> tuple[CheckpointInfo, TrainingSnapshot]:
        """The newest checkpoint whose bytes match their checksum."""
        problems: list[str] = []
        for info in reversed(self.list()):
            try:
                return info, self.load(info, device)
            except CheckpointCorrupt as exc:
                problems.append(str(exc))
        if problems:
            raise CheckpointCorrupt("; ".join(problems))
        raise NoCheckpoint(f"no checkpoint in {self.directory}")

    def load(self, info: CheckpointInfo, device: torch.device | None = None) -> TrainingSnapshot:
        try:
            payload = info.path.read_bytes()
        except FileNotFoundError as exc:
            raise CheckpointCorrupt(f"{info.path.name} is missing") from exc
        if hashlib.sha256(payload).hexdigest() != info.sha256:
            raise CheckpointCorrupt(f"{info.path.name} does not match its SHA-256 {info.sha256[:12]}...")
        return _from_bytes(payload, device)

    def _remove_unlisted(self, listed: set[str]) -> None:
        for path in self.directory.glob("ckpt-*.pt"):
            if path.name not in listed:
                path.unlink(missing_ok=True)


class CheckpointWriter:
    """Saves checkpoints on one background thread (the ``Checkpoints`` port)."""

    def __init__(self, store: CheckpointStore, *, name: str = "checkpoint") -> None:
        self.store = store
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._pending: list[tuple[int, concurrent.futures.Future[CheckpointInfo]]] = []

    def submit(self, snapshot: TrainingSnapshot, wait_for_log: Callable[[], bool]) -> None:
        future = self._thread.submit(self.store.save, snapshot, wait_for_log)
        self._pending.append((snapshot.epoch, future))

    def finished(self) -> list[CheckpointResult]:
        done = [(epoch, future) for epoch, future in self._pending if future.done()]
        self._pending = [(epoch, future) for epoch, future in self._pending if not future.done()]
        return [_result(epoch, future) for epoch, future in done]

    def wait(self) -> list[CheckpointResult]:
        concurrent.futures.wait([future for _, future in self._pending])
        return self.finished()

    def load_latest(self, device: torch.device | None = None) -> tuple[CheckpointInfo, TrainingSnapshot]:
        return self.store.load_latest(device)

    def list(self) -> list[CheckpointInfo]:
        return self.store.list()

    def close(self) -> None:
        self._thread.shutdown(wait=True)


def _result(epoch: int, future: concurrent.futures.Future[CheckpointInfo]) -> CheckpointResult:
    try:
        return future.result()
    except Exception as exc:  # a failed checkpoint is reported to Tolaria, which records it and goes on
        return CheckpointFailed(epoch, str(exc))


def _write_atomically(path: Path, payload: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as file:
        file.write(payload)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself must survive a power cut
    finally:
        os.close(directory)


def _to_bytes(snapshot: TrainingSnapshot) -> bytes:
    tree = {
        "format": _FORMAT,
        "epoch": snapshot.epoch,
        "global_step": snapshot.global_step,
        "host": snapshot.host,
        "host_optimizer": snapshot.host_optimizer,
        "slots": [
            {"index": s.index, "record": s.record, "seed": s.seed_state, "optimizer": s.optimizer_state}
            for s in snapshot.slots
        ],
        "controller": snapshot.controller,
    }
    buffer = io.BytesIO()
    torch.save(tree, buffer)
    return buffer.getvalue()


def _from_bytes(payload: bytes, device: torch.device | None) -> TrainingSnapshot:
    tree = torch.load(io.BytesIO(payload), map_location=device or "cpu", weights_only=True)
    if tree.get("format") != _FORMAT:
        raise CheckpointCorrupt(f"checkpoint format {tree.get('format')!r}, expected {_FORMAT}")
    slots = tuple(SlotSnapshot(s["index"], s["record"], s["seed"], s["optimizer"]) for s in tree["slots"])
    return TrainingSnapshot(
        epoch=tree["epoch"],
        global_step=tree["global_step"],
        host=tree["host"],
        host_optimizer=tree["host_optimizer"],
        slots=slots,
        controller=tree["controller"],
    )
