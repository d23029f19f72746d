"""`chronicle import` streams: memory bounded by a chunk, every line checked before any write,
and a run killed half-way finished by the next with nothing twice and nothing skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import orjson
import pytest

from bench.scaling import MEASURED
from core.settings import Settings
from eventstore import EventStore, NewEvent
from tests.e2e.servers import ROOT
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def write_lines(path: Path, count: int, streams: int = 1000, tag: str = "") -> Path:
    """``count`` lines of about 400 bytes over ``streams`` streams of tenant acme."""
    with path.open("wb") as out:
        for i in range(count):
            line = {
                "stream_id": f"order-{i % streams}",
                "type": "OrderLineAdded",
                "data": {"i": i, "tag": tag, "sku": f"SKU-{i % 977:05d}", "note": "x" * 300},
                "metadata": {"tenant_id": "acme", "actor": "importer"},
            }
            out.write(orjson.dumps(line) + b"\n")
    return path


def run_import(env: dict[str, str], path: Path) -> subprocess.CompletedProcess[str]:
    return run_chronicle(env, "import", str(path))


def run_chronicle(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`chronicle ARGS` in a process of its own, which reports its peak memory on exit."""
    return subprocess.run(
        [sys.executable, "-c", MEASURED, *args],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def peak_mib(result: subprocess.CompletedProcess[str]) -> float:
    line = next(x for x in result.stderr.splitlines() if x.startswith("peak_kib"))
    return int(line.split()[1]) / 1024


@pytest.fixture
def env(new_database: Callable[[], str], redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "CHRONICLE_DATABASE_URL": new_database(),
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_DATA_DIR": str(tmp_path / "data"),
        "CHRONICLE_LOG_FORMAT": "json",
    }


async def count(env: dict[str, str]) -> int:
    conn = await asyncpg.connect(env["CHRONICLE_DATABASE_URL"])
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


def test_memory_does_not_grow_with_the_file(env: dict[str, str], tmp_path: Path) -> None:
    """Four times the lines (both over a 20,000-line chunk), the same peak memory: the file is
    never held whole (the importer that did needed about 8.5 KB a line, 760 MB more here)."""
    small = run_import(env, write_lines(tmp_path / "small.jsonl", 30_000))
    assert small.returncode == 0, small.stderr
    large = run_import(env, write_lines(tmp_path / "large.jsonl", 120_000, tag="large"))
    assert large.returncode == 0, large.stderr
    assert "120000 lines: 120000 imported" in large.stdout
    assert peak_mib(large) - peak_mib(small) < 40, (peak_mib(small), peak_mib(large))


async def test_a_line_for_another_tenants_stream_is_refused_before_anything_is_written(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The stream exists under tenant beta; line 30,001 (past the first chunk) says acme."""
    async with await EventStore.connect(env["CHRONICLE_DATABASE_URL"]) as store:
        await store.append("order-theirs", [NewEvent("Opened", {}, {"tenant_id": "beta"})])
    path = write_lines(tmp_path / "in.jsonl", 40_000)
    lines = path.read_bytes().splitlines()
    line = orjson.loads(lines[30_000]) | {"stream_id": "order-theirs"}
    lines[30_000] = orjson.dumps(line)
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = run_import(env, path)
    assert result.returncode == 2, result.stderr
    assert "line 30001: stream 'order-theirs' belongs to tenant 'beta'" in result.stderr
    assert await count(env) == 1


async def test_an_import_killed_half_way_is_finished_by_the_next_with_nothing_twice(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "in.jsonl", 100_000, streams=300)
    importing = subprocess.Popen(  # noqa: ASYNC220 - started once, then the test awaits the database
        [sys.executable, "-c", MEASURED, "import", str(path)],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_until(lambda: count(env), timeout=120, every=0.01)  # a chunk committed
        importing.send_signal(signal.SIGKILL)
    finally:
        importing.wait()
    at_kill = await count(env)
    assert 0 < at_kill < 100_000, at_kill  # killed half-way, on a chunk's boundary
    assert at_kill % 20_000 == 0
    again = run_import(env, path)
    assert again.returncode == 0, again.stderr
    assert f"100000 lines: {100_000 - at_kill} imported, {at_kill} already stored" in again.stdout
    conn = await asyncpg.connect(env["CHRONICLE_DATABASE_URL"])
    try:
        rows = await conn.fetch(
            "SELECT stream_id, stream_version, (data->>'i')::int AS i FROM events ORDER BY global_position"
        )
        versions = await conn.fetch("SELECT stream_id, version FROM streams")
    finally:
        await conn.close()
    assert [r["i"] for r in rows] == list(range(100_000))  # every line once, in file order
    for r in rows:  # each stream numbered 1, 2, 3... across the two runs
        assert r["stream_version"] == r["i"] // 300 + 1
    assert {v["stream_id"]: v["version"] for v in versions} == {
        f"order-{s}": len(range(s, 100_000, 300)) for s in range(300)
    }


async def test_imported_personal_data_is_sealed_and_can_be_forgotten(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A message body imported is stored as an envelope, read back open, and redacted once its
    sender is forgotten, as an appended one is."""
    line = {
        "stream_id": "conversation-imp",
        "type": "MessageSent",
        "data": {
            "conversation_id": "imp",
            "sequence": 1,
            "sender": "alice",
            "recipient": "bob",
            "body": {"text": "my address is 1 Elm Street"},
            "at": "2026-12-01T00:00:00+00:00",
        },
        "metadata": {"tenant_id": "acme", "actor": "importer"},
    }
    path = tmp_path / "messages.jsonl"
    path.write_bytes(orjson.dumps(line) + b"\n")
    result = run_import(env, path)
    assert result.returncode == 0, result.stderr
    conn = await asyncpg.connect(env["CHRONICLE_DATABASE_URL"])
    try:
        stored = await conn.fetchval("SELECT data::text FROM events WHERE stream_id = 'conversation-imp'")
    finally:
        await conn.close()
    assert "Elm Street" not in stored and "$personal" in stored
    settings = Settings(data_dir=Path(env["CHRONICLE_DATA_DIR"]))
    async with await EventStore.connect(env["CHRONICLE_DATABASE_URL"], settings) as store:
        (event,) = await store.read_stream("conversation-imp")
        assert event.data["body"] == {"text": "my address is 1 Elm Street"}
    forgot = run_chronicle(env, "forget", "alice", "--tenant", "acme")
    assert forgot.returncode == 0, forgot.stderr
    async with await EventStore.connect(env["CHRONICLE_DATABASE_URL"], settings) as store:
        (event,) = await store.read_stream("conversation-imp")
        assert "Elm Street" not in orjson.dumps(event.data).decode()
