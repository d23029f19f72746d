"""The ports the training loop does its I/O through, and the small fakes that stand in for them.

Tolaria runs on one thread (the step thread) and never waits on I/O there. Everything that
leaves the process goes through one of these, implemented outside ``core``:

- ``EventSink``: the run's lifecycle events and per-step metrics. ``emit`` and ``metric`` only
  hand a frozen object over (``eventstore.triad.emission.EventBuffer`` appends it to a deque
  that a flusher drains); ``barrier`` is how a checkpoint waits for the log.
- ``MetricsSink``: where the flusher writes the droppable metrics (a capped Redis stream in
  production, ``eventstore.redis.metrics_stream``).
- ``Checkpoints``: the full rollback tier. ``submit`` hands a snapshot to a writer and returns
  at once; ``finished`` collects the saves done since the last call, so Tolaria records each
  at the next boundary without waiting (``eventstore.triad.checkpoints.CheckpointWriter``).

``StopFlag`` is how another thread asks a run to stop; ``MemoryProbe`` reports accelerator
memory for the state packet (the wiring in ``api`` knows the device; the default reports 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from core.triad.contracts import TelemetryPacket
from core.triad.events import RunEvent
from core.triad.rollback import TrainingSnapshot

__all__ = [
    "CheckpointFailed",
    "CheckpointInfo",
    "CheckpointResult",
    "Checkpoints",
    "EventSink",
    "MemoryProbe",
    "MetricsSink",
    "NullEventSink",
    "StopFlag",
    "already_recorded",
    "no_accelerator_memory",
]

#: Accelerator memory in use, in MB (0.0 where there is none to report).
MemoryProbe = Callable[[], float]


def no_accelerator_memory() -> float:
    return 0.0


class StopFlag:
    """A request to stop, set from any thread and read by the step thread between steps.

    Nobody waits on it, so it needs no lock or condition: a bool attribute's write is seen by
    the step thread's next read, and the flag only ever goes from unset to set.
    """

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class EventSink(Protocol):
    """What the step thread sees: calls that never wait on I/O."""

    def emit(self, event: RunEvent) -> None: ...

    def metric(self, packet: TelemetryPacket) -> None: ...

    def barrier(self) -> Callable[[], bool]:
        """A wait, for another thread, that returns True once every event emitted before this
        call is in the log, or False once it never will be."""
        ...


class MetricsSink(Protocol):
    """Where high-rate, droppable metrics go (a capped Redis stream in production)."""

    async def write(self, run_id: str, packets: Sequence[TelemetryPacket]) -> None: ...


def already_recorded() -> bool:
    """The barrier of a sink that has nothing to wait for."""
    return True


class NullEventSink:
    """Emission switched off (benchmarks measure the step with and without emission)."""

    def emit(self, event: RunEvent) -> None:
        return None

    def metric(self, packet: TelemetryPacket) -> None:
        return None

    def barrier(self) -> Callable[[], bool]:
        return already_recorded


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    epoch: int
    path: Path
    sha256: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class CheckpointFailed:
    """A save that did not publish its checkpoint, and why."""

    epoch: int
    reason: str


CheckpointResult = CheckpointInfo | CheckpointFailed


class Checkpoints(Protocol):
    """The full rollback tier: checkpoints that survive the process, never ahead of the log."""

    def submit(self, snapshot: TrainingSnapshot, wait_for_log: Callable[[], bool]) -> None:
        """Save ``snapshot`` in the background; publish it as the resume point only once
        ``wait_for_log`` (the event sink's barrier) returns True. Returns at once."""
        ...

    def finished(self) -> list[CheckpointResult]:
        """The saves that ended since the last call, in the order they were submitted; never waits."""
        ...

    def wait(self) -> list[CheckpointResult]:
        """Wait for every save submitted so far; the ones that ended since the last call."""
        ...

    def load_latest(self, device: torch.device | None = None) -> tuple[CheckpointInfo, TrainingSnapshot]:
        """The newest published checkpoint whose bytes match their checksum."""
        ...

    def list(self) -> list[CheckpointInfo]:
        """Published checkpoints, oldest first."""
        ...

    def close(self) -> None:
        """Finish the saves in flight and release the writer."""
        ...
