"""The Decider shape: fold, stream ids, and the copy evolve uses."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from core.domain import TASK
from core.domain.decider import with_changes
from core.domain.task import Priority, TaskStarted, TaskState, TaskStatus, TaskSubmitted

T0 = datetime(2025, 3, 1, tzinfo=UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class One:
    n: int


def test_with_changes_equals_dataclasses_replace() -> None:
    """with_changes gives the same value as dataclasses.replace and leaves the original alone."""
    state = TaskState(task_id="t1", status=TaskStatus.RUNNING, progress=10.0)
    changed = with_changes(state, progress=20.0, error="x")
    assert changed == dataclasses.replace(state, progress=20.0, error="x")
    assert state.progress == 10.0 and changed is not state


def test_with_changes_refuses_an_unknown_field() -> None:
    """A misspelt field name raises TypeError naming it instead of being dropped."""
    with pytest.raises(TypeError, match="progres"):
        with_changes(TaskState(), progres=1.0)


def test_with_changes_handles_a_single_field_class() -> None:
    """A dataclass with one field is copied with its change."""
    assert with_changes(One(1), n=2) == One(2)


def test_fold_resumes_from_a_given_state() -> None:
    """fold over the tail from a mid-stream state equals fold over the whole stream."""
    events = [TaskSubmitted("t1", "echo", {}, "q", Priority.LOW, 1, T0), TaskStarted("t1", 1, T0)]
    assert TASK.fold(events[1:], TASK.fold(events[:1])) == TASK.fold(events)


def test_fold_of_nothing_is_the_initial_state() -> None:
    """Folding no events returns the decider's initial state."""
    assert TASK.fold([]) is TASK.initial_state


def test_stream_id_is_category_dash_id() -> None:
    """A decider names an aggregate's stream '<category>-<id>'."""
    assert TASK.stream_id("7f3c") == "task-7f3c"
