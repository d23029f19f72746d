"""The run events as stored: typed contracts in the domain registry, the keys they are stored
under, and streams written before they were typed, which must still read."""

from __future__ import annotations

import pytest

from api.services.run_resume import recorded_run
from core.domain import DOMAIN_EVENTS, DomainEvent, MalformedEvent
from core.events import NewEvent, RecordedEvent
from core.triad.events import (
    RUN,
    DecisionMade,
    EpochCompleted,
    FieldReportFiled,
    RunResumed,
    RunStarted,
    SeedStageChanged,
    run_stream_id,
)
from eventstore import InMemoryEventStore
from projections.run_history import run_history

from .samples import OLD_RUN_STREAM, RUN_SAMPLES


def test_a_run_stream_is_named_by_its_category() -> None:
    """Every run writes to run-<run_id>; the category is one constant."""
    assert run_stream_id("abc") == "run-abc" and RUN == "run"


@pytest.mark.parametrize("event", RUN_SAMPLES, ids=lambda e: e.TYPE)
def test_every_run_event_is_registered_and_reads_back_equal(event: DomainEvent) -> None:
    """Each run event encodes under its contract's version and decodes to an equal event."""
    stored = DOMAIN_EVENTS.encode(event)
    assert (stored.type, stored.schema_version) == (event.TYPE, event.SCHEMA_VERSION)
    assert DOMAIN_EVENTS.decode(stored.type, stored.schema_version, stored.data) == event


def test_a_seed_transition_is_stored_under_from_and_to() -> None:
    """SeedStageChanged keeps the keys it was always stored under."""
    data = DOMAIN_EVENTS.encode(SeedStageChanged(0, "DORMANT", "GERMINATED", 3, "germinated", None)).data
    assert (data["from"], data["to"]) == ("DORMANT", "GERMINATED")
    assert "from_stage" not in data


def test_a_run_event_that_does_not_fit_its_contract_is_refused() -> None:
    """Run events are decoded as strictly as any domain event: a missing field is an error."""
    with pytest.raises(MalformedEvent, match="EpochCompleted"):
        DOMAIN_EVENTS.decode(EpochCompleted.TYPE, 2, {"epoch": 0})


async def _old_stream() -> list[RecordedEvent]:
    store = InMemoryEventStore()
    await store.append("run-old", [NewEvent(t, data, schema_version=1) for t, data in OLD_RUN_STREAM])
    return await store.read_stream("run-old")


async def test_events_stored_before_they_were_typed_read_as_the_current_contracts() -> None:
    """Version-1 data upcasts: no train accuracy yet, no contract version left in the data, and
    the options older runs did not record are None."""
    read = {e.type: DOMAIN_EVENTS.read(e) for e in await _old_stream()}
    completed, decision = read["EpochCompleted"], read["DecisionMade"]
    assert isinstance(completed, EpochCompleted) and completed.train_accuracy is None
    assert completed.seeds[0].stage == "TRAINING" and completed.gradient_norm is None
    assert isinstance(decision, DecisionMade) and decision.payload["blueprint"] == "RESIDUAL_MLP"
    report = read["FieldReportFiled"]
    assert isinstance(report, FieldReportFiled) and report.val_loss_after is None
    started, resumed = read["RunStarted"], read["RunResumed"]
    assert isinstance(started, RunStarted) and started.learning_rate is None
    assert isinstance(resumed, RunResumed) and resumed.epochs is None


async def test_an_old_run_stream_replays_and_resumes_as_before() -> None:
    """The epoch view and the resume check read a stream written by the untyped events."""
    events = await _old_stream()
    (row,) = run_history(events)
    assert (row.epoch, row.train_loss, row.train_accuracy, row.val_accuracy) == (1, 1.2, None, 0.45)
    assert row.decision is not None and row.decision.arguments[0] == ("slot", 0)
    assert [(s.slot, s.moved_from, s.stage) for s in row.seeds] == [(0, "DORMANT", "TRAINING")]
    assert row.resumed_here and row.checkpoint is not None
    run = recorded_run("old", events)
    assert dict(run.options) == {"epochs": 3, "seeds": 1, "batch_size": 64, "seed": 0}
    assert run.completed is None
