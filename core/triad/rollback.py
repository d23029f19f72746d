"""Rollback's fast tier, and what both tiers hold: a ``TrainingSnapshot`` of the whole run.

The fast tier keeps the last K snapshots of everything a restore must rewind together: host
weights and buffers, the host optimizer, every slot (lifecycle record, alpha schedule, seed
weights, seed optimizer) and the controller state (learning-rate controller, Tamiyo, breakers).
Restoring copies into the live tensors in place, so nothing is allocated and the optimizer's
references to parameters stay valid; on CUDA the snapshots live in pinned host memory.

The full tier (checksummed checkpoint files, written on a background thread and published only
once the log holds the epoch's events) sits behind the ``Checkpoints`` port in ``ports``; its
adapter is ``eventstore.triad.checkpoints``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.triad.kasmina import Kasmina
from core.triad.slots import SlotSnapshot
from core.triad.tensors import copy_optimizer_state_into, copy_state_into, snapshot_tree

__all__ = ["FastRollback", "TrainingSnapshot", "capture", "restore"]


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
