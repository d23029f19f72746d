"""`chronicle replay`, `diff`, `snapshot` and `recover` on the demo's real domain events."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_cli import chronicle, sample

pytestmark = pytest.mark.integration


@pytest.fixture
def demo(new_database: Callable[[], str], redis_url: str, tmp_path: Path) -> tuple[dict[str, str], str]:
    env = {
        "CHRONICLE_DATABASE_URL": new_database(),
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_DATA_DIR": str(tmp_path),
        "CHRONICLE_LOG_FORMAT": "json",
    }
    out = sample(env).stdout
    match = re.search(r"chronicle replay (task-\S+) --steps", out)
    assert match, out
    return env, match.group(1)


def test_replay_steps_show_the_state_after_each_event(demo: tuple[dict[str, str], str]) -> None:
    """--steps prints one line per event with the task's status after it."""
    env, task = demo
    lines = [
        json.loads(x) for x in chronicle("replay", task, "--steps", env=env).stdout.splitlines() if x.strip()
    ]
    assert [x["type"] for x in lines] == ["TaskSubmitted", "TaskAssigned", "TaskStarted", "TaskCompleted"]
    assert [x["state"]["status"] for x in lines] == ["pending", "assigned", "running", "completed"]


def test_replay_at_a_version_and_diff_between_two(demo: tuple[dict[str, str], str]) -> None:
    """--at 2 shows the task as assigned; diff 2 4 names the fields that changed."""
    env, task = demo
    at_two = json.loads(chronicle("replay", task, "--at", "2", env=env).stdout.strip().splitlines()[-1])
    assert (at_two["version"], at_two["state"]["status"]) == (2, "assigned")
    diff = chronicle("diff", task, "2", "4", env=env).stdout
    assert 'status: "assigned" -> "completed"' in diff


def test_snapshot_then_replay_uses_it(demo: tuple[dict[str, str], str]) -> None:
    """An on-demand snapshot is taken at the head and the next load starts from it."""
    env, task = demo
    assert f"{task}: snapshot at version 4" in chronicle("snapshot", task, env=env).stdout
    now = json.loads(chronicle("replay", task, env=env).stdout.strip().splitlines()[-1])
    assert now["from_snapshot"] == 4 and now["state"]["status"] == "completed"


def test_recover_counts_live_agents(demo: tuple[dict[str, str], str]) -> None:
    """recover rebuilds the live agents and in-flight tasks from the log and says how long it took."""
    env, _ = demo
    out = chronicle("recover", env=env).stdout
    assert re.search(r"recovered 1 live agents and 0 in-flight tasks from \d+ events in [\d.]+ s", out), out


def test_replay_of_an_unknown_stream_is_one_error_line(demo: tuple[dict[str, str], str]) -> None:
    """A stream id that is not valid gives one error line and a non-zero exit."""
    env, _ = demo
    result = chronicle("replay", "not a stream", env=env, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "chronicle: error:" in result.stderr


@pytest.fixture
def empty_log(new_database: Callable[[], str], redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "CHRONICLE_DATABASE_URL": new_database(),
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_DATA_DIR": str(tmp_path),
        "CHRONICLE_LOG_FORMAT": "json",
    }


NEVER_WRITTEN = "task-0000never0written"


@pytest.mark.parametrize(
    "args",
    [
        ("replay", NEVER_WRITTEN),
        ("replay", NEVER_WRITTEN, "--at", "0"),
        ("replay", NEVER_WRITTEN, "--at", "3"),
        ("replay", NEVER_WRITTEN, "--at", "@1000"),
        ("replay", NEVER_WRITTEN, "--at", "2026-01-01T12:00:00+00:00"),
        ("replay", NEVER_WRITTEN, "--steps"),
        ("replay", "run-0000never0written", "--steps"),
        ("diff", NEVER_WRITTEN, "0", "2"),
        ("snapshot", NEVER_WRITTEN),
    ],
    ids=lambda args: " ".join(args[:1] + args[2:]) + (" (run)" if args[1].startswith("run-") else ""),
)
def test_a_stream_that_was_never_written_is_one_error_line(
    empty_log: dict[str, str], args: tuple[str, ...]
) -> None:
    """A well-formed id with no events exits 1 with one stderr line naming it, and prints nothing else."""
    result = chronicle(*args, env=empty_log, check=False)
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"chronicle: error: stream {args[1]!r} does not exist (it has no events)"
    ]


def test_a_point_before_the_first_event_is_version_zero(demo: tuple[dict[str, str], str]) -> None:
    """--at 0 on a stream that exists shows its initial state at version 0; it is no error."""
    env, task = demo
    at_zero = json.loads(chronicle("replay", task, "--at", "0", env=env).stdout.strip().splitlines()[-1])
    assert (at_zero["stream_id"], at_zero["version"], at_zero["from_snapshot"]) == (task, 0, 0)
    assert f"{task}: version 0 -> 4" in chronicle("diff", task, "0", env=env).stdout
