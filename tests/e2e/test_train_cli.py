"""`chronicle train` records its run in the event log and its metrics in a capped Redis stream."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from api.services.training import train_task
from core.triad.contracts import TelemetryPacket
from core.triad.events import RunCompleted, RunResumed, run_stream_id
from eventstore import EventStore
from eventstore.redis.keys import metrics_key
from eventstore.redis.metrics_stream import RedisMetricsSink
from tests.e2e.test_cli import chronicle
from tests.unit.triad.runs import kill_in_final_evaluation

pytestmark = [pytest.mark.integration, pytest.mark.redis]


async def test_train_writes_the_run_stream_and_resumes(
    new_database: Callable[[], str], redis_url: str, tmp_path: Path
) -> None:
    """A short run lands in run-<id>; resuming it continues from its checkpoint in the same stream."""
    env = {
        "CHRONICLE_DATABASE_URL": new_database(),
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_DATA_DIR": str(tmp_path),
        "CHRONICLE_LOG_FORMAT": "json",
    }
    summary = json.loads(chronicle("train", "--epochs", "3", "--seeds", "2", "--json", env=env).stdout)
    assert summary["epochs_completed"] == 3
    stream_id = summary["stream_id"]
    async with await EventStore.connect(env["CHRONICLE_DATABASE_URL"]) as store:
        first = await store.read_stream(stream_id)
    assert len(first) == summary["emission"]["events_written"] > 0
    assert "CheckpointSaved" in {e.type for e in first}
    run_id = summary["run_id"]
    resumed = json.loads(
        chronicle("train", "--epochs", "5", "--seeds", "2", "--resume", run_id, "--json", env=env).stdout
    )
    assert resumed["resumed_from_epoch"] is not None and resumed["epochs_completed"] == 5
    async with await EventStore.connect(env["CHRONICLE_DATABASE_URL"]) as store:
        after = await store.read_stream(stream_id)
    assert [e.event_id for e in after[: len(first)]] == [e.event_id for e in first]
    assert len(after) > len(first)


def test_unknown_device_is_one_error_line(
    tmp_path: Path, new_database: Callable[[], str], redis_url: str
) -> None:
    """A device torch cannot use is refused with one line and a non-zero exit."""
    env = {
        "CHRONICLE_DATABASE_URL": new_database(),
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_DATA_DIR": str(tmp_path),
    }
    result = chronicle("train", "--epochs", "1", "--device", "tpu9", env=env, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "chronicle: error:" in result.stderr


async def test_metrics_stream_is_capped(redis_url: str) -> None:
    """Metrics go to the run's Redis stream, trimmed near the cap instead of growing forever."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        sink = RedisMetricsSink(redis, cap=100)
        run_id = "capped-test"
        await redis.delete(metrics_key(run_id))
        packets = [TelemetryPacket(epoch=0, step=i, metrics=(("loss", 1.0 / (i + 1)),)) for i in range(500)]
        for start in range(0, 500, 50):
            await sink.write(run_id, packets[start : start + 50])
        rows = await sink.read(run_id, count=1000)
        assert 100 <= len(rows) < 200
        assert rows[-1]["step"] == 499
    finally:
        await redis.aclose()


def test_replay_of_a_run_shows_it_epoch_by_epoch(
    new_database: Callable[[], str], redis_url: str, tmp_path: Path
) -> None:
    """`chronicle replay run-<id> --steps` prints one table row per epoch with seed stages."""
    env = {
        "CHRONICLE_DATABASE_URL": new_database(),
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_DATA_DIR": str(tmp_path),
        "CHRONICLE_LOG_FORMAT": "json",
    }
    summary = json.loads(chronicle("train", "--epochs", "4", "--seeds", "2", "--json", env=env).stdout)
    out = chronicle("replay", summary["stream_id"], "--steps", env=env).stdout
    rows = [line for line in out.splitlines() if line.startswith("│")]
    epochs = [line.split("│")[1].strip() for line in rows]
    assert [e for e in epochs if e.isdigit()] == ["0", "1", "2", "3"]  # epochs count from 0
    assert "DORMANT" in out or "GERMINATED" in out or "TRAINING" in out


def train_env(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "CHRONICLE_DATABASE_URL": database_url,
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_DATA_DIR": str(data_dir),
        "CHRONICLE_LOG_FORMAT": "json",
    }


async def stream_types(database_url: str, run_id: str) -> list[str]:
    async with await EventStore.connect(database_url) as store:
        return [e.type for e in await store.read_stream(run_stream_id(run_id))]


async def test_resume_after_a_kill_in_the_final_evaluation_completes_the_run_once(
    new_database: Callable[[], str], redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`chronicle train --resume RUN_ID` of a run with nothing left to train but its evaluation
    prints the summary (no traceback) and appends RunResumed and RunCompleted once."""
    env = train_env(new_database(), redis_url, tmp_path)
    start = {"run_id": "lastbreath", "epochs": 1, "seeds": 1, "checkpoint_dir": str(tmp_path / "runs")}
    async with await EventStore.connect(env["CHRONICLE_DATABASE_URL"]) as store:
        await kill_in_final_evaluation(start, store, monkeypatch)
    killed = await stream_types(env["CHRONICLE_DATABASE_URL"], "lastbreath")
    result = chronicle(
        "train", "--resume", "lastbreath", "--epochs", "1", "--seeds", "1", env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "epochs completed" in result.stdout and "Traceback" not in result.stderr
    after = await stream_types(env["CHRONICLE_DATABASE_URL"], "lastbreath")
    assert after == [*killed, RunResumed.TYPE, RunCompleted.TYPE]


@pytest.mark.slow
async def test_resume_of_a_finished_run_or_with_other_options_is_one_line_and_appends_nothing(
    new_database: Callable[[], str], redis_url: str, tmp_path: Path
) -> None:
    """A finished run says so in one line (exit 0; --json gives its recorded summary); other
    options than the run's are named in one error line (exit 2). Neither appends anything."""
    env = train_env(new_database(), redis_url, tmp_path)
    async with await EventStore.connect(env["CHRONICLE_DATABASE_URL"]) as store:
        start = {"run_id": "done", "epochs": 1, "seeds": 1, "checkpoint_dir": str(tmp_path / "runs")}
        await train_task(start, event_log=store)
    recorded = await stream_types(env["CHRONICLE_DATABASE_URL"], "done")
    finished = chronicle("train", "--resume", "done", env=env)
    assert finished.stdout.strip().splitlines() == [
        "run done already completed 1 epoch; nothing to resume (chronicle replay run-done --steps shows it)"
    ]
    as_json = json.loads(chronicle("train", "--resume", "done", "--json", env=env).stdout)
    assert as_json["already_completed"] and as_json["epochs_completed"] == 1
    other = chronicle("train", "--resume", "done", "--seeds", "2", env=env, check=False)
    assert other.returncode == 2 and other.stderr.strip().splitlines() == [
        "chronicle: error: run done was started with other options: seeds 2 (the run's is 1). "
        "Leave an option out to resume with the run's own"
    ]
    assert await stream_types(env["CHRONICLE_DATABASE_URL"], "done") == recorded
