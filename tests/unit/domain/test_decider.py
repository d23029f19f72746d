"""The Decider shape: fold, stream ids, and the copy evolve uses."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from core.domain import TASK
from core.domain.decider import with_changes, with_changes_to
from core.domain.task import Priority, TaskStarted, TaskState, TaskStatus, TaskSubmitted

T0 = datetime(2025, 3, 1, tzinfo=UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class One:
    n: int


@dataclasses.dataclass(frozen=True)
class Unslotted:
    n: int
    label: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Ordered:
    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low is above high")


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


def test_with_changes_copies_every_field_of_a_slotted_state() -> None:
    """A copy built slot by slot holds every field of the original, frozen as before."""
    state = TaskState("t1", TaskStatus.RUNNING, "echo", {"a": 1}, "q", Priority.HIGH, 3, 2, 5, "w", T0, T0)
    changed = with_changes(state, progress=50.0)
    assert changed == dataclasses.replace(state, progress=50.0) and type(changed) is TaskState
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.progress = 1.0  # type: ignore[misc]  # the point: a frozen field refuses assignment


def test_with_changes_of_other_dataclasses_goes_through_the_constructor() -> None:
    """An unslotted dataclass is copied, and one with __post_init__ still checks its copy."""
    assert with_changes(Unslotted(1), label="x") == Unslotted(1, "x")
    assert with_changes(Ordered(1, 2), high=3) == Ordered(1, 3)
    with pytest.raises(ValueError, match="above"):
        with_changes(Ordered(1, 2), low=5)


def test_with_changes_to_equals_with_changes() -> None:
    """A copy built ahead for fixed fields takes their values in order and equals with_changes."""
    state = TaskState(task_id="t1", status=TaskStatus.RUNNING, progress=10.0)
    progressed = with_changes_to(TaskState, "progress", "updated_at")
    assert progressed(state, 20.0, T0) == with_changes(state, progress=20.0, updated_at=T0)
    assert state.progress == 10.0
    assert with_changes_to(Ordered, "high")(Ordered(1, 2), 3) == Ordered(1, 3)
    with pytest.raises(ValueError, match="above"):
        with_changes_to(Ordered, "low")(Ordered(1, 2), 5)


@pytest.mark.parametrize("names", [("progres",), ("progress", "progress")], ids=["misspelt", "twice"])
def test_with_changes_to_refuses_bad_names_when_built(names: tuple[str, ...]) -> None:
    """A misspelt or repeated field name is refused when the copy is built, not when it runs."""
    with pytest.raises(TypeError, match="progres"):
        with_changes_to(TaskState, *names)


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
