"""Two-tier rollback: known-good states in memory, and checksummed checkpoints on disk.

The fast tier keeps the last K snapshots of everything a restore must rewind together: host
weights and buffers, the host optimizer, every slot (lifecycle record, alpha schedule, seed
weights, seed optimizer) and the controller state (learning-rate controller, Tamiyo, breakers).
Restoring copies into the live tensors in place, so nothing is allocated and the optimizer's
references to parameters stay valid; on CUDA the snapshots live in pinned host memory.

The full tier writes one snapshot per file: serialise to bytes, hash, write to a temporary
file, fsync, rename over the final name, fsync the directory; then the same for a small JSON
manifest listing the checkpoints and their SHA-256. A crash at any point leaves either the old
manifest or the new one, each naming only complete files. Loading verifies the hash and falls
back to the previous checkpoint if the newest is damaged. Files load with
``torch.load(weights_only=True)``: snapshots hold only tensors and plain values, so reading a
checkpoint can never run code.

The manifest is what makes a checkpoint the resume point, so it is also where a checkpoint
waits for the event log: ``save`` writes the checkpoint file, then calls ``wait_for_log`` (the
event sink's barrier, taken when the snapshot was), and writes the manifest only if that says
every event emitted before the snapshot is in the log. A checkpoint file the manifest does not
name is never loaded, and the next save removes it.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import torch
from torch import nn

from core.triad.errors import CheckpointCorrupt, CheckpointNotPublished, NoCheckpoint
from core.triad.kasmina import Kasmina, SlotSnapshot
from core.triad.tensors import copy_optimizer_state_into, copy_state_into, snapshot_tree

__all__ = [
    "CheckpointInfo",
    "CheckpointStore",
    "FastRollback",
    "TrainingSnapshot",
    "capture",
    "restore",
]

_FORMAT = 1


@dataclass(frozen=True, slots=True)
class TrainingSnapshot:
    """Everything needed to continue a run from the end of ``epoch``."""

    epoch: int
    global_step: int
    host: dict[str, torch.Tensor]
    host_optimizer: dict[str, Any]
    slots: tuple[SlotSnapshot, ...]
    controller: dict[str, Any]


def capture(
    epoch: int,
    global_step: int,
    host: nn.Module,
    optimizer: torch.optim.Optimizer,
    kasmina: Kasmina,
    controller: dict[str, Any],
) -> TrainingSnapshot:
    to_host = next(host.parameters()).is_cuda
    snapshot = TrainingSnapshot(
        epoch=epoch,
        global_step=global_step,
        host=snapshot_tree(host.state_dict(), to_host),
        host_optimizer=snapshot_tree(optimizer.state_dict(), to_host),
        slots=kasmina.snapshot(to_host),
        controller=controller,
    )
    if to_host:
        torch.cuda.synchronize()  # one wait for all the non-blocking copies
    return snapshot


def restore(
    snapshot: TrainingSnapshot, host: nn.Module, optimizer: torch.optim.Optimizer, kasmina: Kasmina
) -> None:
    """Rewind host, optimizer and slots to ``snapshot``; the caller restores the controller."""
    copy_state_into(host, snapshot.host)
    copy_optimizer_state_into(optimizer, snapshot.host_optimizer)
    kasmina.restore(snapshot.slots)


class FastRollback:
    """The last ``capacity`` known-good snapshots, newest last."""

    def __init__(self, capacity: int = 3) -> None:
        self._snapshots: deque[TrainingSnapshot] = deque(maxlen=capacity)

    def remember(self, snapshot: TrainingSnapshot) -> None:
        self._snapshots.append(snapshot)

    def latest(self) -> TrainingSnapshot | None:
        return self._snapshots[-1] if self._snapshots else None

    def forget_latest(self) -> None:
        """Drop the newest snapshot: it led straight back into trouble, try an older one next."""
        if len(self._snapshots) > 1:
            self._snapshots.pop()

    def __len__(self) -> int:
        return len(self._snapshots)


# -- the full tier -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    epoch: int
    path: Path
    sha256: str
    size_bytes: int


def _nothing_to_wait_for() -> bool:
    return True


class CheckpointStore:
    MANIFEST = "manifest.json"

    def __init__(self, directory: Path, keep: int = 3) -> None:
        self.directory = directory
        self.keep = keep

    def save(
        self, snapshot: TrainingSnapshot, wait_for_log: Callable[[], bool] = _nothing_to_wait_for
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
