from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from api.services.training import options_from_payload, train_task
from core.errors import InvalidInput
from core.ports import EventLog
from core.settings import TrainingSettings
from core.triad.config import TrainingConfig
from core.triad.events import CheckpointSaved, EpochCompleted, RunCompleted, RunResumed, RunStarted
from eventstore import InMemoryEventStore
from eventstore.triad.emission import InMemoryMetricsSink

from .runs import kill_in_final_evaluation


async def test_the_train_task_records_a_run_and_returns_its_summary(tmp_path: Path) -> None:
    """The train handler runs a short run: its stream holds the lifecycle, metrics go to the
    metrics sink, and the summary reports accuracy with and without seeds."""
    store, metrics = InMemoryEventStore(), InMemoryMetricsSink()
    payload = {"run_id": "api1", "epochs": 3, "seeds": 3, "device": "cpu", "checkpoint_dir": str(tmp_path)}
    result = await train_task(payload, event_log=store, metrics_sink=metrics)
    types = [e.type for e in await store.read_stream("run-api1")]
    assert types[0] == RunStarted.TYPE and types[-1] == RunCompleted.TYPE
    assert types.count(EpochCompleted.TYPE) == 3 and CheckpointSaved.TYPE in types
    assert result["stream_id"] == "run-api1" and result["emission"]["events_written"] == len(types)
    assert "val_accuracy_without_seeds" in result and len(result["final_stages"]) == 3
    assert len(metrics.packets) == 3 * 32


async def test_resuming_through_the_task_continues_the_same_stream(tmp_path: Path) -> None:
    """A resume payload continues the run from its checkpoint, appending to the same stream."""
    store = InMemoryEventStore()
    base = {"run_id": "api2", "epochs": 2, "seeds": 2, "device": "cpu", "checkpoint_dir": str(tmp_path)}
    await train_task(base, event_log=store)
    result = await train_task({**base, "epochs": 3, "resume": True}, event_log=store)
    types = [e.type for e in await store.read_stream("run-api2")]
    assert types.count(RunResumed.TYPE) == 1 and result["resumed_from_epoch"] == 1
    assert result["epochs_completed"] == 3


def test_unknown_payload_keys_are_refused() -> None:
    """A typo in a task payload is an error rather than a silently ignored option."""
    with pytest.raises(ValueError, match="epoch"):
        options_from_payload({"epoch": 3})


def test_options_left_out_take_the_training_settings() -> None:
    """A payload that gives no options gets TrainingSettings' defaults, which core's own
    TrainingConfig shares; other defaults can be passed in (Settings.training)."""
    defaults, options = TrainingSettings(), options_from_payload({"device": "cpu"})
    training = options.training
    assert (training.epochs, options.seeds, training.batch_size, training.seed) == (
        defaults.epochs,
        defaults.seeds,
        defaults.batch_size,
        defaults.seed,
    )
    assert (training.learning_rate.base, training.checkpoint_every) == (
        defaults.learning_rate,
        defaults.checkpoint_every,
    )
    assert TrainingConfig().epochs == defaults.epochs
    custom = options_from_payload({}, TrainingSettings(epochs=7, device="cpu"))
    schedule = custom.training.learning_rate
    assert (custom.training.epochs, schedule.total_epochs, custom.device) == (7, 7, "cpu")


async def types_of(store: EventLog, run_id: str) -> list[str]:
    return [e.type for e in await store.read_stream(f"run-{run_id}")]


async def test_resuming_a_run_killed_in_its_final_evaluation_completes_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no epoch left to train, a resume (no options given: the run's own) evaluates and
    completes the run once; a second resume says it is done and appends nothing."""
    store = InMemoryEventStore()
    start = {"run_id": "api4", "epochs": 2, "seeds": 1, "device": "cpu", "checkpoint_dir": str(tmp_path)}
    await kill_in_final_evaluation(start, store, monkeypatch)
    killed = await types_of(store, "api4")
    assert killed.count(EpochCompleted.TYPE) == 2 and RunCompleted.TYPE not in killed
    resume = {"run_id": "api4", "resume": True, "device": "cpu", "checkpoint_dir": str(tmp_path)}
    result = await train_task(resume, event_log=store)
    assert (await types_of(store, "api4"))[len(killed) :] == [RunResumed.TYPE, RunCompleted.TYPE]
    assert result["epochs_completed"] == 2 and result["resumed_from_epoch"] == 1
    assert result["boundary_ms"]["total"] == {}  # no boundary was timed: nothing to report
    again = await train_task(resume, event_log=store)
    assert again["already_completed"] and again["epochs_completed"] == 2
    assert len(await types_of(store, "api4")) == len(killed) + 2


async def test_resuming_a_finished_run_appends_nothing(tmp_path: Path) -> None:
    """A run that completed all its epochs has nothing to resume: the recorded summary comes
    back, marked as such, and the stream is left as it was."""
    store = InMemoryEventStore()
    base = {"run_id": "api5", "epochs": 1, "seeds": 1, "device": "cpu", "checkpoint_dir": str(tmp_path)}
    first = await train_task(base, event_log=store)
    recorded = await types_of(store, "api5")
    again = await train_task({**base, "resume": True}, event_log=store)
    assert again["already_completed"] and again["val_accuracy"] == first["val_accuracy"]
    assert await types_of(store, "api5") == recorded


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seeds": 2}, "seeds 2 (the run's is 1)"),
        ({"batch_size": 64, "lr": 0.1}, "batch_size 64 (the run's is 128); lr 0.1 (the run's is 0.03)"),
        ({"epochs": 1}, "epochs 1 (the run's is 2; a resume may only add epochs)"),
    ],
)
async def test_resuming_with_other_options_names_them_and_appends_nothing(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    """Options that differ from the run's own are refused in one line naming each of them."""
    store = InMemoryEventStore()
    base = {"run_id": "api6", "epochs": 2, "seeds": 1, "device": "cpu", "checkpoint_dir": str(tmp_path)}
    await train_task(base, event_log=store)
    recorded = await types_of(store, "api6")
    with pytest.raises(InvalidInput, match=re.escape(message)):
        await train_task({**base, **change, "resume": True}, event_log=store)
    assert await types_of(store, "api6") == recorded


async def test_resuming_a_run_that_never_started_appends_nothing(tmp_path: Path) -> None:
    """A mistyped run id is refused; no stream springs into being for it."""
    store = InMemoryEventStore()
    with pytest.raises(InvalidInput, match="no run nope to resume"):
        await train_task({"run_id": "nope", "resume": True, "checkpoint_dir": str(tmp_path)}, event_log=store)
    assert await store.stream_version("run-nope") == 0


async def test_a_run_with_no_checkpoint_directory_is_refused() -> None:
    """With neither a checkpoint_dir nor a root from the caller's settings, the handler says what
    is missing and appends nothing (it never falls back to a directory of its own)."""
    store = InMemoryEventStore()
    with pytest.raises(InvalidInput, match="checkpoint directory"):
        await train_task({"run_id": "nowhere", "epochs": 1, "device": "cpu"}, event_log=store)
    assert await store.stream_version("run-nowhere") == 0
