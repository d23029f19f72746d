"""`chronicle demo` and `chronicle up`: the stack as real processes, started and stopped whole."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import CLI, ROOT, free_port, service_env
from tests.waiting import wait_until

ROW = re.compile(r"│ (projections|api|worker-\d+(?:\.\d+)?) +│ (\d+) +│ chronicle ")  # the process table


def _pids(output: str) -> dict[str, int]:
    return {name: int(pid) for name, pid in ROW.findall(output)}


def _running(pid: int) -> bool:
    """Alive and not a zombie (a dead child nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_the_demo_tells_the_whole_story_on_embedded_servers_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    """`make demo` on a machine with nothing configured: embedded PostgreSQL and Redis, the API,
    two workers and the projection daemon as processes, and every chapter of the story."""
    env = {k: v for k, v in os.environ.items() if k not in ("CHRONICLE_DATABASE_URL", "CHRONICLE_REDIS_URL")}
    env |= {"CHRONICLE_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    done = subprocess.run(
        [*CLI, "demo", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    pids = _pids(out)
    assert set(pids) == {"projections", "api", "worker-1", "worker-2"}, out
    for chapter in (
        "Agents register",
        "A batch of 40 tasks",
        "SIGKILLed",
        "audit trail",
        "pruned",
        "offline",
    ):
        assert chapter in out, chapter
    assert re.search(r"completed once under fencing token 2", out), out
    assert re.search(r"verified: event \S+ \(TaskCompleted", out), out
    assert "NOT VERIFIED" in out  # the altered copy of the proof is refused
    assert re.search(r"chronicle replay run-\S+ --at \d+", out), out
    assert "/console" in out
    assert out.rstrip().endswith("stopped: nothing is left running"), out[-500:]
    assert not [name for name, pid in pids.items() if _running(pid)]
    assert not list((tmp_path / "data").rglob("postmaster.pid")), "the embedded PostgreSQL is still running"
    assert int(re.search(r"the story took (\d+) s", out).group(1)) < 180  # type: ignore[union-attr]


@pytest.mark.integration
async def test_up_keeps_the_stack_running_restarts_a_killed_process_and_stops_whole(
    new_database: Callable[[], str], redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = service_env(new_database(), redis_url, tmp_path) | {"COLUMNS": "200"}
    log = tmp_path / "up.out"
    with log.open("w") as sink:
        up = subprocess.Popen(  # noqa: ASYNC220 - started once; the test then awaits conditions
            [*CLI, "up", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_until(lambda: "Ctrl-C stops everything" in log.read_text() or up.poll() is not None, 120)
        out = log.read_text()
        assert up.poll() is None, out
        key = re.search(r"key +(chr_\S+)", out).group(1)  # type: ignore[union-attr]
        pids = _pids(out)
        assert set(pids) == {"projections", "api", "worker-1"}, out
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=5
        ) as client:
            assert (await client.get("/ready")).status_code == 200
            assert "<html" in (await client.get("/console")).text.lower()

            os.kill(pids["worker-1"], signal.SIGKILL)
            await wait_until(lambda: "started again as worker-1.2" in log.read_text(), 30)
            task_id = (await client.post("/v1/tasks", json={"type": "echo"})).json()["task_id"]

            async def completed() -> bool:
                return bool((await client.get(f"/v1/tasks/{task_id}")).json()["status"] == "completed")

            await wait_until(completed, 60)
            assert (await client.get(f"/v1/tasks/{task_id}")).json()["assignee"] == "worker-1.2"
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
    out = log.read_text()
    assert code == 0, out
    assert out.rstrip().endswith("stopped: nothing is left running"), out[-500:]
    assert not [pid for pid in pids.values() if _running(pid)]
