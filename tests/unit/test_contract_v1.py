"""The v1 job contract: what a client may send, and that what the API records from it is what
a worker reads back (the two sides share it through the task's events)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from api.contract.v1 import TaskSubmission, TaskView
from core.domain import TASK
from core.domain.registry import DOMAIN_EVENTS
from core.domain.task import SubmitTask
from core.domain.task.decide import decide
from core.domain.task.events import Priority
from core.events import RecordedEvent

# Changing these is a breaking change: it goes into v2, beside v1.
SUBMISSION_FIELDS = {"type", "payload", "priority", "max_attempts", "requires", "ordering_key", "callback"}


def test_the_submission_fields_are_v1s() -> None:
    assert set(TaskSubmission.model_fields) == SUBMISSION_FIELDS
    assert {"task_id", "status", "priority", "requires", "ordering_key", "attempt"} <= set(
        TaskView.model_fields
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "echo", "retries": 3}, "retries"),
        ({"type": "echo", "priority": "urgent"}, "priority"),
        ({"type": "echo", "max_attempts": 0}, "max_attempts"),
        ({"type": "has space"}, "type"),
        ({"type": "echo", "requires": ["x"] * 17}, "requires"),
    ],
)
def test_a_bad_submission_names_its_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        TaskSubmission.model_validate(body)
    assert refused.value.errors()[0]["loc"][0] == field


def test_what_the_api_records_from_a_submission_is_what_a_worker_reads() -> None:
    body = TaskSubmission.model_validate(
        {
            "type": "train",
            "payload": {"epochs": 2},
            "priority": "high",
            "max_attempts": 5,
            "requires": ["gpu"],
            "ordering_key": "acct-1",
            "callback": {"topic": "done"},
        }
    )
    at = datetime(2026, 12, 1, tzinfo=UTC)
    command = SubmitTask(
        "t1",
        body.type,
        at,
        body.payload,
        priority=Priority(body.priority),
        max_attempts=body.max_attempts,
        requires=tuple(body.requires),
        ordering_key=body.ordering_key,
        callback=body.callback,
    )
    (event,) = decide(command, TASK.initial_state)
    new = DOMAIN_EVENTS.encode(event, {"tenant_id": "acme"})
    stored = RecordedEvent(
        new.id, "task-t1", 1, 1, new.type, new.schema_version, dict(new.data), {}, "acme", at
    )
    state = TASK.fold([DOMAIN_EVENTS.read(stored)])
    assert (state.handler, dict(state.payload), state.priority.value, state.max_attempts) == (
        "train",
        {"epochs": 2},
        "high",
        5,
    )
    assert (state.requires, state.ordering_key, dict(state.callback or {})) == (
        ("gpu",),
        "acct-1",
        {"topic": "done"},
    )
