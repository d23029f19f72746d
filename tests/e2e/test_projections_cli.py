"""`chronicle projections rebuild | status | run` from the command line, on the demo's events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import pytest

from tests.e2e.test_cli import chronicle, cli_env, sample  # noqa: F401 - the fixture, shared
from tests.reliability.crash import ROOT
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def status(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    rows = json.loads(chronicle("projections", "status", "--json", env=env).stdout)
    return {row["name"]: row for row in rows}


def test_rebuild_builds_a_model_and_status_reports_it(cli_env: dict[str, str]) -> None:  # noqa: F811
    """After the demo, a rebuild makes the agent registry live at the head; status shows it
    caught up, with no owner since no daemon runs, and readiness passes for it."""
    sample(cli_env)
    out = chronicle("projections", "rebuild", "agent_registry", env=cli_env).stdout
    assert out.startswith("agent_registry: generation 1 live at position ")
    found = status(cli_env)["agent_registry"]
    assert (found["generation"], found["lag_events"], found["owner"]) == (1, 0, None)
    assert found["applied_events"] > 0 and found["state"] == "stopped"


def test_status_fails_readiness_while_a_model_is_not_built(cli_env: dict[str, str]) -> None:  # noqa: F811
    """--max-lag-seconds exits 1 with one line naming the projections that are not ready."""
    sample(cli_env)
    result = chronicle("projections", "status", "--max-lag-seconds", "5", env=cli_env, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("chronicle: not ready: ") and "agent_registry (not built" in result.stderr


def test_an_unknown_projection_is_one_line_and_exit_2(cli_env: dict[str, str]) -> None:  # noqa: F811
    result = chronicle("projections", "rebuild", "nope", env=cli_env, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"chronicle: error: no projection named 'nope'; there are: {', '.join(catalog_names())}"
    ]


def catalog_names() -> list[str]:
    from projections.catalog import PROJECTIONS

    return [p.name for p in PROJECTIONS]


async def test_run_keeps_the_models_current_and_stops_on_sigterm(cli_env: dict[str, str]) -> None:  # noqa: F811
    """The daemon builds every model, owns them (status names it) and exits cleanly on SIGTERM,
    releasing its leases."""
    await asyncio.to_thread(sample, cli_env)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from api.cli import main; main()",
        "projections",
        "run",
        env={**os.environ, **cli_env},
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        found = await eventually(
            lambda: asyncio.to_thread(status, cli_env),
            lambda found: (
                found and all(s["state"] == "running" and s["lag_events"] == 0 for s in found.values())
            ),
            timeout=60,
            every=0.1,
            what="the daemon building every model",
        )
        assert all(s["owner"].startswith("chronicle-projections ") for s in found.values())
    finally:
        child.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(child.wait(), 30) == 0
    after = await asyncio.to_thread(status, cli_env)
    assert all(s["owner"] is None for s in after.values())
