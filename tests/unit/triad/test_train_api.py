from __future__ import annotations

from pathlib import Path

import pytest

from api.train import options_from_payload, train_task
from core.triad import run_events as ev
from core.triad.emission import InMemoryMetricsSink
from eventstore import InMemoryEventStore


async def test_the_train_task_records_a_run_and_returns_its_summary(tmp_path: Path) -> None:
    """The train handler runs a short run: its stream holds the lifecycle, metrics go to the
    metrics sink, and the summary reports accuracy with and without seeds."""
    store, metrics = InMemoryEventStore(), InMemoryMetricsSink()
    payload = {"run_id": "api1", "epochs": 3, "seeds": 3, "device": "cpu", "checkpoint_dir": str(tmp_path)}
    result = await train_task(payload, event_log=store, metrics_sink=metrics)
    types = [e.type for e in await store.read_stream("run-api1")]
    assert types[0] == ev.RUN_STARTED and types[-1] == ev.RUN_COMPLETED
    assert types.count(ev.EPOCH_COMPLETED) == 3 and ev.CHECKPOINT_SAVED in types
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
    assert types.count(ev.RUN_RESUMED) == 1 and result["resumed_from_epoch"] == 1
    assert result["epochs_completed"] == 3


def test_unknown_payload_keys_are_refused() -> None:
    """A typo in a task payload is an error rather than a silently ignored option."""
    with pytest.raises(ValueError, match="epoch"):
        options_from_payload({"epoch": 3})
