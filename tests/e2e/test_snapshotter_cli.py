"""`chronicle snapshotter` takes its policy from the settings, and an option overrides one rule."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import pytest

from bench.histories import append_history
from eventstore import EventStore
from eventstore.state.snapshots import PostgresSnapshotStore
from tests.e2e.test_cli import cli_env  # noqa: F401 - the fixture, shared
from tests.reliability.crash import ROOT

pytestmark = pytest.mark.integration


async def _snapshotter(env: dict[str, str], *options: str) -> tuple[dict[str, Any], list[int]]:
    """Start the snapshotter, read the policy it announces, append a 5-event stream and
    return the policy and the versions of the stream's snapshots once there is one."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from api.cli import main; main()",
        "snapshotter",
        *options,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stderr is not None
    try:
        started = await asyncio.wait_for(_announced(child.stderr), 60)
        url = env["CHRONICLE_DATABASE_URL"]
        async with await EventStore.connect(url) as store:
            stream = await append_history(store, uuid.uuid4().hex, 5)
        snapshots = await PostgresSnapshotStore.connect(url)
        try:
            for _ in range(600):
                if taken := await snapshots.all_of(stream):
                    return started, [s.stream_version for s in taken]
                await asyncio.sleep(0.1)
        finally:
            await snapshots.close()
        raise AssertionError("no snapshot was taken")
    finally:
        child.terminate()
        await child.wait()


async def _announced(stderr: asyncio.StreamReader) -> dict[str, Any]:
    while line := await stderr.readline():
        record = json.loads(line) if line.startswith(b"{") else {}
        if record.get("event") == "snapshotter.started":
            return record
    raise AssertionError("the snapshotter exited before it started")


async def test_snapshotter_reads_its_policy_from_the_environment(cli_env: dict[str, str]) -> None:  # noqa: F811
    """CHRONICLE_SNAPSHOTS__EVERY_EVENTS=5 is the policy it runs: a 5-event stream gets a snapshot."""
    env = {**cli_env, "CHRONICLE_SNAPSHOTS__EVERY_EVENTS": "5"}
    started, versions = await _snapshotter(env)
    assert (started["every_events"], started["every_bytes"]) == (5, 10 * 1024 * 1024)
    assert versions == [5]


async def test_snapshotter_option_overrides_the_setting(cli_env: dict[str, str]) -> None:  # noqa: F811
    """--every-events 4 wins over the environment's 5; the other rules keep their settings."""
    env = {**cli_env, "CHRONICLE_SNAPSHOTS__EVERY_EVENTS": "5", "CHRONICLE_SNAPSHOTS__KEEP": "3"}
    started, versions = await _snapshotter(env, "--every-events", "4")
    assert (started["every_events"], started["keep"]) == (4, 3)
    assert versions == [5]
