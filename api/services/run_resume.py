"""Whether a training run may be resumed, and with which options, decided from its stream.

`chronicle train --resume RUN_ID` (and a ``train`` task with ``resume: true``) continues a run
from its newest checkpoint. Before anything is appended, the run's own events settle three
cases, so that a resume that should not happen leaves the log as it was:

- no ``RunStarted`` in the run's stream (``run-<id>``): there is no such run to resume;
- options that differ from the run's own (``RunStarted`` records them): refused, naming each
  difference, because a checkpoint continued with other seeds, batches or rates is not the same
  run. Options left out are the run's own. ``epochs`` is the exception: it may grow (train the
  run further), never shrink;
- the run's latest attempt ended with a ``RunCompleted`` (not a stop) after all the epochs asked
  for: there is nothing to train or evaluate, and the recorded summary is the answer.

A run killed after its last checkpoint but before its ``RunCompleted`` is none of these: the
resume loads that checkpoint, has no epoch left to train, evaluates and completes it once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.domain.contracts import DomainEvent, EventRegistry
from core.domain.registry import DOMAIN_EVENTS
from core.domain.serialization import to_json_value
from core.errors import InvalidInput
from core.events import RecordedEvent
from core.triad.events import RunCompleted, RunResumed, RunStarted, run_stream_id

__all__ = ["RecordedRun", "recorded_run", "resume_payload"]


@dataclass(frozen=True, slots=True)
class RecordedRun:
    """What a run's stream says about it: its own options (as train payload keys, ``epochs``
    being the latest attempt's target) and, if its latest attempt finished, that summary."""

    run_id: str
    options: Mapping[str, Any]
    completed: RunCompleted | None

    def finished(self, epochs: int) -> bool:
        return self.completed is not None and self.completed.epochs_completed >= epochs

    def summary(self) -> dict[str, Any]:
        """The recorded summary of a finished run, marked as such; nothing new was written."""
        recorded = {} if self.completed is None else to_json_value(self.completed)
        return {**recorded, "stream_id": run_stream_id(self.run_id), "already_completed": True}


_WHAT_SETTLES_A_RESUME = frozenset({RunStarted.TYPE, RunResumed.TYPE, RunCompleted.TYPE})


def recorded_run(
    run_id: str, events: Sequence[RecordedEvent], registry: EventRegistry = DOMAIN_EVENTS
) -> RecordedRun:
    """Fold the run stream's events (in stream order) into a RecordedRun."""
    options: dict[str, Any] | None = None
    completed: RunCompleted | None = None
    for event in _decoded(events, registry):
        if isinstance(event, RunStarted):
            options, completed = _own_options(event), None
        elif isinstance(event, RunResumed) and options is not None:
            if event.epochs is not None:  # runs recorded before RunResumed carried it lack it
                options["epochs"] = event.epochs
            completed = None
        elif isinstance(event, RunCompleted):
            completed = None if event.stopped else event
    if options is None:
        raise InvalidInput(f"no run {run_id} to resume: {run_stream_id(run_id)} has no RunStarted")
    return RecordedRun(run_id, options, completed)


def _decoded(events: Sequence[RecordedEvent], registry: EventRegistry) -> Iterator[DomainEvent]:
    """The events a resume depends on, decoded strictly; the others are not even decoded."""
    for event in events:
        if event.type in _WHAT_SETTLES_A_RESUME:
            yield registry.read(event)


def _own_options(started: RunStarted) -> dict[str, Any]:
    own: dict[str, Any] = {
        "epochs": started.epochs,
        "seeds": len(started.slots),
        "batch_size": started.batch_size,
        "seed": started.seed,
    }
    # Runs recorded before these were part of RunStarted cannot be checked on them.
    if started.learning_rate is not None:
        own["lr"] = started.learning_rate
    if started.checkpoint_every is not None:
        own["checkpoint_every"] = started.checkpoint_every
    return own


def resume_payload(payload: Mapping[str, Any], run: RecordedRun) -> dict[str, Any]:
    """``payload`` with the run's own options filled in; InvalidInput naming every option that
    differs from the run's (one line)."""
    own = run.options
    differs = [
        f"{option} {payload[option]} (the run's is {value})"
        for option, value in own.items()
        if option != "epochs" and option in payload and float(payload[option]) != float(value)
    ]
    if "epochs" in payload and int(payload["epochs"]) < int(own["epochs"]):
        epochs = f"epochs {payload['epochs']} (the run's is {own['epochs']}; a resume may only add epochs)"
        differs.append(epochs)
    if differs:
        raise InvalidInput(
            f"run {run.run_id} was started with other options: {'; '.join(differs)}. "
            "Leave an option out to resume with the run's own"
        )
    return {**own, **payload}
