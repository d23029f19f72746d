"""A training run killed the moment a checkpoint appears loses none of its lifecycle events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import pytest

from api.services.training import run_training
from core.events import RecordedEvent
from core.triad.events import (
    DecisionMade,
    EpochCompleted,
    FieldReportFiled,
    RunCompleted,
    RunResumed,
    SeedStageChanged,
    run_stream_id,
)
from eventstore import EventStore
from projections.run_history import EpochRow, run_history
from tests.reliability.crash import kill_when
from tests.reliability.crash_trainer import EPOCHS, RUN_ID, crash_options

pytestmark = pytest.mark.integration

KILL_AT = 2  # epochs 0 and 1 germinate seeds; epoch 2 moves one of them along


def newest_checkpoint(manifest: Path) -> int:
    """The newest epoch the manifest names (it is replaced atomically), -1 before the first."""
    try:
        return max(entry["epoch"] for entry in orjson.loads(manifest.read_bytes()))
    except FileNotFoundError:
        return -1


async def test_a_run_killed_as_its_checkpoint_appears_resumes_with_every_epoch_in_the_log(
    new_database: Callable[[], str], tmp_path: Path
) -> None:
    """SIGKILL the moment the manifest names epoch C, then resume: the log holds C's
    EpochCompleted, decision and transitions exactly once, and every epoch is completed."""
    url, root = new_database(), tmp_path / "runs"
    manifest = root / RUN_ID / "manifest.json"
    child = ["-m", "tests.reliability.crash_trainer", url, str(root)]
    await kill_when(child, lambda: newest_checkpoint(manifest) >= KILL_AT, timeout=60)
    killed_at = newest_checkpoint(manifest)

    async with await EventStore.connect(url) as store:
        await run_training(crash_options(), event_log=store, checkpoint_root=root, resume=True)
        events = await store.read_stream(run_stream_id(RUN_ID))

    assert [e.data["from_epoch"] for e in events if e.type == RunResumed.TYPE] == [killed_at]
    at_kill = Counter(e.type for e in events if e.data.get("epoch") == killed_at)
    assert at_kill[EpochCompleted.TYPE] == 1 and at_kill[DecisionMade.TYPE] == 1
    moves = [e.data for e in events if e.type == SeedStageChanged.TYPE and e.data["epoch"] == killed_at]
    assert len({(m["slot"], m["from"], m["to"]) for m in moves}) == len(moves)
    decisions = {(e.data["epoch"], e.data["command_id"]) for e in events if e.type == DecisionMade.TYPE}
    reports = [e.data for e in events if e.type == FieldReportFiled.TYPE]
    assert all((r["issued_epoch"], r["command_id"]) in decisions for r in reports)
    rows = run_history(events)
    assert [(r.epoch, r.completed) for r in rows] == [(epoch, True) for epoch in range(EPOCHS)]
    assert_stages_follow_on(rows)
    assert_run_completed_once(events)


def assert_stages_follow_on(rows: Sequence[EpochRow]) -> None:
    """Each slot leaves a stage only from the stage the previous epoch left it in."""
    stages: dict[int, str] | None = {}  # None after a rollback: it rewinds without transitions
    for row in rows:
        for seed in row.seeds:
            if stages is not None:
                assert stages.get(seed.slot, "DORMANT") == (seed.moved_from or seed.stage), (row.epoch, seed)
        stages = None if row.rollbacks else {seed.slot: seed.stage for seed in row.seeds}


def assert_run_completed_once(events: Sequence[RecordedEvent]) -> None:
    assert [e.type for e in events].count(RunCompleted.TYPE) == 1
