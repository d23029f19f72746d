"""The run replay view: a run stream folded into one row per epoch, from real runs and by hand."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from api.cli.train import render_run_history
from api.services.training import run_training
from core.domain import DOMAIN_EVENTS, DomainEvent
from core.events import NewEvent, RecordedEvent
from core.triad.events import (
    BudgetExceeded,
    CheckpointSaved,
    CommandRejected,
    DecisionMade,
    EpochCompleted,
    FieldReportFiled,
    RolledBack,
    RunFailed,
    RunResumed,
    SeedStageChanged,
    SeedSummary,
)
from core.triad.guards import BoundaryBudget
from eventstore import InMemoryEventStore
from projections.run_history import Checkpoint, EpochRow, Overrun, Rollback, run_history

from .runs import small_options


async def _run(
    store: InMemoryEventStore, root: Path, run_id: str, epochs: int, resume: bool = False, **training: Any
) -> list[RecordedEvent]:
    base = small_options(epochs)
    options = replace(base, run_id=run_id, training=replace(base.training, **training))
    await run_training(options, event_log=store, checkpoint_root=root, resume=resume)
    return await store.read_stream(f"run-{run_id}")


@pytest.fixture(scope="module")
async def five_epochs(tmp_path_factory: pytest.TempPathFactory) -> list[RecordedEvent]:
    """One real five-epoch run, shared by the tests that only read it."""
    return await _run(InMemoryEventStore(), tmp_path_factory.mktemp("runs"), "hist", epochs=5)


def _of(events: list[RecordedEvent], contract: type[DomainEvent]) -> list[dict[str, Any]]:
    return [dict(e.data) for e in events if e.type == contract.TYPE]


# -- from real runs ------------------------------------------------------------------------------


async def test_a_real_run_gives_one_row_per_epoch_with_its_numbers(five_epochs: list[RecordedEvent]) -> None:
    """Each row carries its epoch's losses, accuracy and learning rate from EpochCompleted."""
    rows = run_history(five_epochs)
    completed = _of(five_epochs, EpochCompleted)
    assert [r.epoch for r in rows] == [0, 1, 2, 3, 4]
    assert all(r.completed and r.attempt == 1 for r in rows)
    assert [(r.train_loss, r.val_loss, r.val_accuracy) for r in rows] == [
        (c["train_loss"], c["val_loss"], c["val_accuracy"]) for c in completed
    ]
    assert [r.learning_rate for r in rows] == [c["learning_rate"] for c in completed]
    assert [r.train_accuracy for r in rows] == [c["train_accuracy"] for c in completed]
    assert all(r.train_accuracy is not None and 0 <= r.train_accuracy <= 1 for r in rows)


async def test_each_decision_gets_the_outcome_its_field_report_filed_an_epoch_later(
    five_epochs: list[RecordedEvent],
) -> None:
    """A row shows Tamiyo's command and the outcome reported for that command id; the last
    epoch's decision has no report yet."""
    rows = run_history(five_epochs)
    decisions = _of(five_epochs, DecisionMade)
    reports = {r["command_id"]: r["outcome"] for r in _of(five_epochs, FieldReportFiled)}
    assert [r.decision.kind for r in rows if r.decision] == [d["kind"] for d in decisions]
    assert rows[0].decision is not None and rows[0].decision.kind == "GERMINATE"
    assert rows[0].decision.arguments[0] == ("slot", 0), "the slot is the first argument shown"
    assert [r.decision.outcome for r in rows if r.decision][:-1] == [
        reports[d["command_id"]] for d in decisions[:-1]
    ]
    assert rows[-1].decision is not None and rows[-1].decision.outcome is None


async def test_seed_stages_and_transitions_follow_the_lifecycle_events(
    five_epochs: list[RecordedEvent],
) -> None:
    """Each row lists every slot's stage after the boundary and marks the slots that moved there."""
    rows = run_history(five_epochs)
    for row, completed in zip(rows, _of(five_epochs, EpochCompleted), strict=True):
        assert [(s.slot, s.stage) for s in row.seeds] == [(s["slot"], s["stage"]) for s in completed["seeds"]]
    moved = {(r.epoch, s.slot, s.moved_from, s.stage) for r in rows for s in r.seeds if s.moved_from}
    changes = _of(five_epochs, SeedStageChanged)
    assert moved == {(c["epoch"], c["slot"], c["from"], c["to"]) for c in changes}
    assert (0, 0, "DORMANT", "GERMINATED") in moved


async def test_checkpoints_land_on_their_own_epoch_although_they_arrive_late(
    five_epochs: list[RecordedEvent],
) -> None:
    """CheckpointSaved is emitted after later epochs' events; the row of its epoch gets it,
    with the checksum recorded in the log."""
    rows = run_history(five_epochs)
    saved = _of(five_epochs, CheckpointSaved)
    assert [r.checkpoint for r in rows] == [Checkpoint(c["file"], c["sha256"]) for c in saved]
    types = [e.type for e in five_epochs]
    assert types.index(CheckpointSaved.TYPE) > types.index(EpochCompleted.TYPE) + 1


async def test_a_real_resume_replaces_the_abandoned_epochs(tmp_path: Path) -> None:
    """A run checkpointed at epoch 1 but stopped after epoch 2, then resumed to epoch 4: epoch 2
    appears once, from the second attempt, and epoch 1 is marked as the resume point."""
    store = InMemoryEventStore()
    await _run(store, tmp_path, "res", epochs=3, checkpoint_every=2)
    events = await _run(store, tmp_path, "res", epochs=5, resume=True, checkpoint_every=2)
    assert [d["epoch"] for d in _of(events, EpochCompleted)] == [0, 1, 2, 2, 3, 4]
    rows = run_history(events)
    assert [(r.epoch, r.attempt) for r in rows] == [(0, 1), (1, 1), (2, 2), (3, 2), (4, 2)]
    assert [r.epoch for r in rows if r.resumed_here] == [1]
    assert [r.epoch for r in rows if r.checkpoint] == [1, 3]


async def test_budget_overruns_and_conservative_mode_appear_on_their_epoch(tmp_path: Path) -> None:
    """With a zero budget every boundary overruns; the rows list the overruns and the epoch
    where the breakers opened."""
    zero = BoundaryBudget(gather_ms=0.0, decide_ms=0.0, apply_ms=0.0, total_ms=0.0)
    events = await _run(InMemoryEventStore(), tmp_path, "slow", epochs=3, budget=zero)
    rows = run_history(events)
    assert all("total" in {o.part for o in r.overruns} for r in rows)
    assert sum(len(r.overruns) for r in rows) == len(_of(events, BudgetExceeded))
    assert {s.component for s in rows[2].mode_switches if s.entered} == {"tamiyo", "kasmina"}


# -- by hand -------------------------------------------------------------------------------------


def _stored(event: DomainEvent) -> NewEvent:
    return DOMAIN_EVENTS.encode(event)


def _completed(epoch: int, val_loss: float, stage: str = "DORMANT") -> NewEvent:
    seed = SeedSummary(0, stage, None, 0.0, 0, 0, None, None)
    return _stored(EpochCompleted(epoch, 8 * (epoch + 1), 1.0, None, val_loss, 0.5, 0.01, None, (seed,), {}))


def _decision(epoch: int, command_id: int, kind: str = "WAIT", issued_by: str = "policy") -> NewEvent:
    return _stored(DecisionMade(command_id, epoch, kind, {}, issued_by, "because"))


def _report(command_id: int, issued: int, outcome: str) -> NewEvent:
    return _stored(FieldReportFiled(command_id, "WAIT", issued, issued + 1, outcome, None, None, None, None))


def _checkpoint(epoch: int) -> NewEvent:
    return _stored(CheckpointSaved(epoch, f"ckpt-{epoch:06d}.pt", f"{epoch}" * 64, 0))


async def _recorded(*events: NewEvent) -> list[RecordedEvent]:
    store = InMemoryEventStore()
    await store.append("run-hand", list(events))
    return await store.read_stream("run-hand")


async def test_the_abandoned_attempt_is_dropped_field_reports_and_checkpoints_included() -> None:
    """Events after the resumed checkpoint and before RunResumed vanish: the abandoned epoch 2,
    the report on epoch 1's decision it filed, and its checkpoint (which failed its checksum)."""
    events = await _recorded(
        _decision(0, 1),
        _completed(0, 0.9),
        _report(1, 0, "SUCCESS"),
        _decision(1, 2),
        _completed(1, 0.8),
        _checkpoint(0),
        _report(2, 1, "REGRESSION"),
        _decision(2, 3, kind="GERMINATE"),
        _completed(2, 9.0, stage="GERMINATED"),
        _checkpoint(1),
        _checkpoint(2),
        _stored(RunResumed(from_epoch=1, file="ckpt-000001.pt", sha256="1" * 64)),
        _report(2, 1, "NEUTRAL"),
        _decision(2, 3),
        _completed(2, 0.7),
    )
    rows = run_history(events)
    assert [(r.epoch, r.attempt) for r in rows] == [(0, 1), (1, 1), (2, 2)]
    assert rows[1].decision is not None and rows[1].decision.outcome == "NEUTRAL"
    assert rows[2].decision is not None and rows[2].decision.kind == "WAIT"
    assert (rows[2].val_loss, rows[2].seeds[0].stage, rows[2].checkpoint) == (0.7, "DORMANT", None)
    assert rows[1].resumed_here and rows[1].checkpoint == Checkpoint("ckpt-000001.pt", "1" * 64)


async def test_a_resume_point_whose_checkpoint_event_was_lost_takes_it_from_run_resumed() -> None:
    """A crash right after the checkpoint file was written loses its event; RunResumed still
    names the file and checksum, so the row shows them."""
    resumed = RunResumed(from_epoch=0, file="ckpt-000000.pt", sha256="ab" * 32)
    events = await _recorded(_decision(0, 1), _completed(0, 0.9), _stored(resumed))
    (row,) = run_history(events)
    assert row.checkpoint == Checkpoint("ckpt-000000.pt", "ab" * 32) and row.resumed_here


async def test_rollbacks_rejections_overruns_and_failures_are_kept_on_their_epoch() -> None:
    """A rolled-back epoch shows the tier and target, the refusal of its command, its overrun;
    a failure in an epoch that never completed gets a row of its own."""
    events = await _recorded(
        _decision(3, 0, kind="ROLL_BACK", issued_by="tolaria"),
        _stored(CommandRejected(command_id=0, epoch=3, reason="no")),
        _stored(BudgetExceeded(epoch=3, part="apply", elapsed_ms=7.5, budget_ms=2.0)),
        _completed(3, 0.5),
        _stored(RolledBack(epoch=3, tier="fast", reason="nan", restored_epoch=2, elapsed_ms=1.25)),
        _stored(RunFailed(epoch=4, reason="KeyboardInterrupt: ")),
    )
    rows = run_history(events)
    assert rows[0].rollbacks == (Rollback("fast", "nan", 2, 1.25),)
    assert rows[0].overruns == (Overrun("apply", 7.5, 2.0),)
    assert rows[0].decision is not None and rows[0].decision.rejected == "no"
    assert (rows[1].epoch, rows[1].completed, rows[1].failures) == (4, False, ("KeyboardInterrupt: ",))


async def test_the_table_shows_every_row_and_hides_unused_columns() -> None:
    """The rendered table has one row per epoch, shows overrides and rollbacks in words, and
    grows an attempt column only once a run was resumed."""
    events = await _recorded(
        _decision(0, 0, kind="ROLL_BACK", issued_by="tolaria"),
        _completed(0, 0.5),
        _stored(RolledBack(epoch=0, tier="full", reason="nan", restored_epoch=-1, elapsed_ms=3.0)),
    )
    rows = run_history(events)
    table = render_run_history(rows, title="run-hand")
    headers = [c.header for c in table.columns]
    assert table.row_count == 1 and "attempt" not in headers and "train acc" not in headers
    console = Console(record=True, width=250)
    console.print(table)
    text = console.export_text()
    assert "[tolaria] because" in text and "full to epoch -1: nan" in text
    resumed = render_run_history([*rows, EpochRow(epoch=1, attempt=2, completed=True)])
    assert "attempt" in [c.header for c in resumed.columns] and resumed.row_count == 2
