"""A training run's stream (``run-<id>``) folded into one row per epoch, and that table drawn.

This is the view behind ``chronicle replay run-<id> --steps``: for each epoch, the losses and
accuracy, Tamiyo's decision and how its FieldReport judged it one epoch later, every seed's
stage after the boundary (with the transitions taken there), rollbacks, the checkpoint saved
and its checksum, and budget overruns. It is pure: events in, frozen rows out.

Where an event belongs. Every event of an epoch boundary names the epoch it was emitted for
(a FieldReport names it as ``observed_epoch``), and that, not its position in the stream, is
what places it in a row: a checkpoint is written on a background thread, so ``CheckpointSaved``
for epoch N usually arrives after ``EpochCompleted`` for N+1.

Resumes. ``RunResumed(from_epoch=C)`` says the run went back to the checkpoint of epoch C.
Everything the abandoned attempt recorded for a boundary after C (decisions, field reports,
transitions, rollbacks, even checkpoints of later epochs that failed their checksum) did not
happen in the run that continued, so it is dropped; the resumed attempt records those epochs
again. Rows carry the attempt that recorded them (1, then 2 after the first resume, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from rich.text import Text

from core.events import RecordedEvent
from core.triad import run_events as ev

__all__ = [
    "Checkpoint",
    "EpochDecision",
    "EpochRow",
    "ModeSwitch",
    "Overrun",
    "Rollback",
    "SeedAfterEpoch",
    "render_run_history",
    "run_history",
]


@dataclass(frozen=True, slots=True)
class EpochDecision:
    """Tamiyo's command at this boundary; ``outcome`` comes from the FieldReport filed one
    epoch later (None until it is filed, and always for commands Tolaria made up itself)."""

    command_id: int
    kind: str
    arguments: tuple[tuple[str, Any], ...]
    issued_by: str
    reason: str
    outcome: str | None = None
    rejected: str | None = None


@dataclass(frozen=True, slots=True)
class SeedAfterEpoch:
    """One slot after the boundary; ``moved_from`` is its stage before, if it moved there."""

    slot: int
    stage: str
    blueprint: str | None
    alpha: float
    contribution: float | None
    moved_from: str | None = None


@dataclass(frozen=True, slots=True)
class Rollback:
    tier: str
    reason: str
    restored_epoch: int
    elapsed_ms: float


@dataclass(frozen=True, slots=True)
class Checkpoint:
    file: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Overrun:
    part: str
    elapsed_ms: float
    budget_ms: float


@dataclass(frozen=True, slots=True)
class ModeSwitch:
    component: str
    entered: bool
    reason: str


@dataclass(frozen=True, slots=True)
class EpochRow:
    """One epoch of a run as its events tell it. ``completed`` is False for an epoch that has
    events (a failure, say) but never reached its ``EpochCompleted``."""

    epoch: int
    attempt: int
    completed: bool
    global_step: int | None = None
    train_loss: float | None = None
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    learning_rate: float | None = None
    decision: EpochDecision | None = None
    seeds: tuple[SeedAfterEpoch, ...] = ()
    rollbacks: tuple[Rollback, ...] = ()
    checkpoint: Checkpoint | None = None
    overruns: tuple[Overrun, ...] = ()
    mode_switches: tuple[ModeSwitch, ...] = ()
    failures: tuple[str, ...] = ()
    resumed_here: bool = False  # a later attempt continued from this epoch's checkpoint


# -- placing events ------------------------------------------------------------------------------

_EPOCH_FIELD = {ev.FIELD_REPORT_FILED: "observed_epoch", ev.RUN_RESUMED: "from_epoch"}
_PLACED = frozenset(
    {
        ev.EPOCH_COMPLETED,
        ev.DECISION_MADE,
        ev.COMMAND_REJECTED,
        ev.SEED_STAGE_CHANGED,
        ev.FIELD_REPORT_FILED,
        ev.CHECKPOINT_SAVED,
        ev.ROLLED_BACK,
        ev.BUDGET_EXCEEDED,
        ev.CONSERVATIVE_MODE_ENTERED,
        ev.CONSERVATIVE_MODE_EXITED,
        ev.RUN_FAILED,
        ev.RUN_RESUMED,
    }
)


@dataclass(frozen=True, slots=True)
class _Placed:
    epoch: int
    attempt: int
    type: str
    data: Mapping[str, Any]


def _place(events: Sequence[RecordedEvent]) -> list[_Placed]:
    """The events that belong to the run's history, each with its epoch and attempt."""
    kept: list[_Placed] = []
    attempt = 1
    for event in events:
        if event.type not in _PLACED:
            continue  # RunStarted, RunCompleted, EmissionFailed and types a later version adds
        data = event.data
        epoch = int(data[_EPOCH_FIELD.get(event.type, "epoch")])
        if event.type == ev.RUN_RESUMED:
            kept = [p for p in kept if p.epoch <= epoch]  # the abandoned attempt's later epochs
            attempt += 1
        kept.append(_Placed(epoch, attempt, event.type, data))
    return kept


# -- folding -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Builder:
    """A row while its events are folded in; frozen into an EpochRow at the end."""

    epoch: int
    attempt: int
    completed: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    rejected: str | None = None
    moves: dict[int, str] = field(default_factory=dict)
    rollbacks: list[Rollback] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    overruns: list[Overrun] = field(default_factory=list)
    mode_switches: list[ModeSwitch] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    resumed_here: bool = False


def run_history(events: Sequence[RecordedEvent]) -> list[EpochRow]:
    """One row per epoch of a run stream's events (in stream order), oldest first."""
    placed = _place(events)
    outcomes = {
        (int(p.data["issued_epoch"]), int(p.data["command_id"])): str(p.data["outcome"])
        for p in placed
        if p.type == ev.FIELD_REPORT_FILED
    }
    builders: dict[int, _Builder] = {}
    for p in placed:
        builder = builders.setdefault(p.epoch, _Builder(p.epoch, p.attempt))
        _fold(builder, p)
    return [_row(builders[epoch], outcomes) for epoch in sorted(builders)]


def _fold(row: _Builder, p: _Placed) -> None:
    data = p.data
    if p.type == ev.EPOCH_COMPLETED:
        row.completed, row.attempt = dict(data), p.attempt
    elif p.type == ev.DECISION_MADE:
        row.decision = dict(data)
    elif p.type == ev.COMMAND_REJECTED:
        row.rejected = str(data["reason"])
    elif p.type == ev.SEED_STAGE_CHANGED:
        row.moves[int(data["slot"])] = str(data["from"])
    elif p.type == ev.ROLLED_BACK:
        rollback = Rollback(data["tier"], data["reason"], data["restored_epoch"], data["elapsed_ms"])
        row.rollbacks.append(rollback)
    elif p.type == ev.CHECKPOINT_SAVED:
        row.checkpoint = Checkpoint(data["file"], data["sha256"])
    elif p.type == ev.BUDGET_EXCEEDED:
        row.overruns.append(Overrun(data["part"], data["elapsed_ms"], data["budget_ms"]))
    elif p.type in (ev.CONSERVATIVE_MODE_ENTERED, ev.CONSERVATIVE_MODE_EXITED):
        entered = p.type == ev.CONSERVATIVE_MODE_ENTERED
        row.mode_switches.append(ModeSwitch(data["component"], entered, data["reason"]))
    elif p.type == ev.RUN_FAILED:
        row.failures.append(str(data["reason"]))
    elif p.type == ev.RUN_RESUMED:
        row.resumed_here = True
        # The checkpoint may have been written just before the crash, its event never emitted.
        row.checkpoint = row.checkpoint or Checkpoint(data["file"], data["sha256"])


def _row(b: _Builder, outcomes: Mapping[tuple[int, int], str]) -> EpochRow:
    done = b.completed or {}
    return EpochRow(
        epoch=b.epoch,
        attempt=b.attempt,
        completed=b.completed is not None,
        global_step=done.get("global_step"),
        train_loss=done.get("train_loss"),
        train_accuracy=done.get("train_accuracy"),
        val_loss=done.get("val_loss"),
        val_accuracy=done.get("val_accuracy"),
        learning_rate=done.get("learning_rate"),
        decision=None if b.decision is None else _decision(b, b.decision, outcomes),
        seeds=tuple(_seed(s, b.moves) for s in done.get("seeds", ())),
        rollbacks=tuple(b.rollbacks),
        checkpoint=b.checkpoint,
        overruns=tuple(b.overruns),
        mode_switches=tuple(b.mode_switches),
        failures=tuple(b.failures),
        resumed_here=b.resumed_here,
    )


def _decision(b: _Builder, data: Mapping[str, Any], outcomes: Mapping[tuple[int, int], str]) -> EpochDecision:
    command_id = int(data["command_id"])
    return EpochDecision(
        command_id=command_id,
        kind=str(data["kind"]),
        # jsonb does not keep key order: put the slot first, then the rest by name.
        arguments=tuple(sorted(data.get("payload", {}).items(), key=lambda kv: (kv[0] != "slot", kv[0]))),
        issued_by=str(data["issued_by"]),
        reason=str(data.get("reason", "")),
        outcome=outcomes.get((b.epoch, command_id)),
        rejected=b.rejected,
    )


def _seed(data: Mapping[str, Any], moves: Mapping[int, str]) -> SeedAfterEpoch:
    slot = int(data["slot"])
    return SeedAfterEpoch(
        slot=slot,
        stage=str(data["stage"]),
        blueprint=data.get("blueprint"),
        alpha=float(data.get("alpha") or 0.0),
        contribution=data.get("contribution"),
        moved_from=moves.get(slot),
    )


# -- drawing -------------------------------------------------------------------------------------


def render_run_history(rows: Sequence[EpochRow], *, title: str | None = None) -> Table:
    """The rows as a rich table; the attempt and train-accuracy columns appear only when used."""
    show_attempt = any(r.attempt > 1 for r in rows)
    show_train_accuracy = any(r.train_accuracy is not None for r in rows)
    table = Table(title=title)
    table.add_column("epoch", justify="right")
    if show_attempt:
        table.add_column("attempt", justify="right")
    table.add_column("train loss", justify="right")
    if show_train_accuracy:
        table.add_column("train acc", justify="right")
    for name in ("val loss", "val acc"):
        table.add_column(name, justify="right")
    for name in ("decision", "outcome", "seeds after the epoch", "rollback", "checkpoint", "notes"):
        table.add_column(name)
    for row in rows:
        cells = [str(row.epoch)]
        if show_attempt:
            cells.append(str(row.attempt))
        cells.append(_number(row.train_loss))
        if show_train_accuracy:
            cells.append(_number(row.train_accuracy))
        cells += [_number(row.val_loss), _number(row.val_accuracy)]
        cells += [_decision_text(row.decision), _outcome_text(row.decision), _seeds_text(row.seeds)]
        cells += [_rollbacks_text(row.rollbacks), _checkpoint_text(row.checkpoint), _notes_text(row)]
        table.add_row(*(Text(cell) for cell in cells))  # plain text: a reason may hold [brackets]
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _decision_text(decision: EpochDecision | None) -> str:
    if decision is None:
        return "-"
    arguments = " ".join(f"{k}={v}" for k, v in decision.arguments)
    text = f"{decision.kind} {arguments}".rstrip()
    if decision.issued_by != "policy":  # an override is the interesting part of the row
        text += f"\n[{decision.issued_by}] {decision.reason}"
    if decision.rejected:
        text += f"\nrefused: {decision.rejected}"
    return text


def _outcome_text(decision: EpochDecision | None) -> str:
    return "-" if decision is None or decision.outcome is None else decision.outcome


def _seeds_text(seeds: Sequence[SeedAfterEpoch]) -> str:
    lines = []
    for seed in seeds:
        stage = seed.stage if seed.moved_from is None else f"{seed.moved_from}->{seed.stage}"
        line = f"{seed.slot}: {stage}"
        if seed.alpha:
            line += f" a={seed.alpha:.2f}"
        if seed.contribution is not None:
            line += f" {seed.contribution:+.3f}"
        lines.append(line)
    return "\n".join(lines) or "-"


def _rollbacks_text(rollbacks: Sequence[Rollback]) -> str:
    texts = [f"{r.tier} to epoch {r.restored_epoch}: {r.reason}" for r in rollbacks]
    return "\n".join(texts) or "-"


def _checkpoint_text(checkpoint: Checkpoint | None) -> str:
    return "-" if checkpoint is None else f"{checkpoint.file} {checkpoint.sha256[:12]}"


def _notes_text(row: EpochRow) -> str:
    notes = [f"over budget: {o.part} {o.elapsed_ms:.2f}/{o.budget_ms:g} ms" for o in row.overruns]
    for switch in row.mode_switches:
        verb = "entered" if switch.entered else "left"
        notes.append(f"{switch.component} {verb} conservative mode: {switch.reason}")
    notes += [f"failed: {reason}" for reason in row.failures]
    if row.resumed_here:
        notes.append("resumed from this checkpoint")
    if not row.completed:
        notes.append("epoch not completed")
    return "\n".join(notes) or "-"
