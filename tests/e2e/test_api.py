"""The HTTP API, tested against a real `chronicle serve` process, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from eventstore.apikeys import create_key
from eventstore.pg import connect
from tests.e2e.servers import CLI, ROOT, free_port, service_env, serving, start_daemon, stop
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_env(
    new_database: Callable[[], str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return service_env(new_database(), redis_url, tmp_path_factory.mktemp("api-data"))


@pytest.fixture(scope="module")
def base_url(api_env: dict[str, str]) -> Iterator[str]:
    with serving(api_env) as url:
        yield url


@pytest.fixture(scope="module")
async def db(api_env: dict[str, str]) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(api_env["CHRONICLE_DATABASE_URL"])
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def keys(db: asyncpg.Connection) -> dict[str, str]:
    return {
        "acme": await create_key(db, "acme", "acme-bot", ("tasks:write", "tasks:read")),
        "acme-reader": await create_key(db, "acme", "acme-viewer", ("tasks:read",)),
        "globex": await create_key(db, "globex", "globex-bot", ("admin",)),
        "acme-admin": await create_key(db, "acme", "acme-admin", ("admin",)),
    }


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_submitted_task_is_recorded_at_once_and_readable_by_its_tenant_only(
    base_url: str, keys: dict[str, str], db: asyncpg.Connection
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.post(
            "/v1/tasks",
            json={"type": "echo", "payload": {"x": 1}, "priority": "high"},
            headers=auth(keys["acme"]),
        )
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert r.headers["location"] == accepted["status_url"] == f"/v1/tasks/{accepted['task_id']}"
        assert accepted["status"] == "pending"

        got = await client.get(accepted["status_url"], headers=auth(keys["acme-reader"]))
        assert got.status_code == 200
        task = got.json()
        assert (task["type"], task["payload"], task["priority"], task["tenant_id"]) == (
            "echo",
            {"x": 1},
            "high",
            "acme",
        )
        # Another tenant does not learn that it exists.
        assert (await client.get(accepted["status_url"], headers=auth(keys["globex"]))).status_code == 404
    metadata = await db.fetchval(
        "SELECT metadata FROM events WHERE stream_id = $1", f"task-{accepted['task_id']}"
    )
    import orjson

    recorded = orjson.loads(metadata)
    assert (recorded["tenant_id"], recorded["actor"]) == ("acme", "acme-bot")


async def test_64_concurrent_duplicates_of_an_idempotent_submit_store_one_task(
    base_url: str, keys: dict[str, str], db: asyncpg.Connection
) -> None:
    body = {"type": "echo", "payload": {"n": 64}}
    headers = {**auth(keys["acme"]), "Idempotency-Key": "order-4711"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/tasks", json=body, headers=headers) for _ in range(64))
        )
        assert {a.status_code for a in answers} == {202}
        ids = {a.json()["task_id"] for a in answers}
        assert len(ids) == 1
        (task_id,) = ids
        assert await db.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", f"task-{task_id}") == 1
        # The same key with another request is refused, naming the header.
        other = await client.post("/v1/tasks", json={**body, "payload": {"n": 65}}, headers=headers)
        assert other.status_code == 422 and "Idempotency-Key" in other.json()["error"]
        # Another tenant's same key is its own task.
        theirs = await client.post(
            "/v1/tasks", json=body, headers={**auth(keys["globex"]), "Idempotency-Key": "order-4711"}
        )
        assert theirs.status_code == 202 and theirs.json()["task_id"] != task_id


ROUTES = [
    ("POST", "/v1/tasks", {"type": "echo"}),
    ("GET", "/v1/tasks/x", None),
    ("GET", "/v1/tasks", None),
    ("POST", "/v1/tasks/x/cancel", None),
    ("POST", "/v1/tasks/x/retry", None),
    ("GET", "/v1/tasks/x/events", None),
    ("POST", "/v1/tasks/bulk-cancel", {}),
    ("POST", "/v1/tasks/bulk-retry", {}),
    ("POST", "/v1/agents", {"agent_id": "a", "name": "a"}),
    ("GET", "/v1/agents", None),
    ("GET", "/v1/agents/a", None),
    ("DELETE", "/v1/agents/a", None),
    ("GET", "/v1/streams/task-x/events", None),
    ("GET", "/v1/streams/task-x/state", None),
    ("GET", "/v1/audit/events", None),
    ("GET", "/v1/audit/export", None),
    ("GET", "/v1/audit/proofs/00000000-0000-0000-0000-000000000000", None),
    ("GET", "/v1/audit/checkpoint", None),
    ("GET", "/v1/audit/verify/task-x", None),
    ("POST", "/v1/conversations/c/messages", {"sender": "a", "recipient": "b"}),
    ("GET", "/v1/conversations/c/messages", None),
    ("GET", "/v1/runs", None),
    ("GET", "/v1/runs/r/epochs", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_every_route_answers_401_without_a_valid_key(
    base_url: str, keys: dict[str, str], method: str, path: str, body: Any
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        for headers in (
            {},
            auth("chr_000000000000_" + "A" * 43),
            auth("not-a-key"),
            {"Authorization": keys["acme"]},
        ):
            r = await client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (headers, r.text)
            assert r.json()["error"] == "missing or invalid API key"


async def test_a_missing_scope_is_403(base_url: str, keys: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.post("/v1/tasks", json={"type": "echo"}, headers=auth(keys["acme-reader"]))
        assert r.status_code == 403 and "tasks:write" in r.json()["error"]
        r = await client.post("/v1/tasks/x/cancel", headers=auth(keys["acme-reader"]))
        assert r.status_code == 403


async def test_bad_input_is_a_422_naming_the_field_and_writes_nothing(
    base_url: str, keys: dict[str, str], db: asyncpg.Connection
) -> None:
    before = await db.fetchval("SELECT count(*) FROM events")
    async with httpx.AsyncClient(base_url=base_url) as client:
        for body, field in (
            ({"type": "echo", "priority": "urgent"}, "priority"),
            ({"type": "echo", "max_attempts": 0}, "max_attempts"),
            ({"type": "", "payload": {}}, "type"),
            ({"type": "echo", "retries": 3}, "retries"),
            ({"payload": {}}, "type"),
        ):
            r = await client.post("/v1/tasks", json=body, headers=auth(keys["acme"]))
            assert r.status_code == 422, r.text
            assert r.json()["field"] == field, r.json()
    assert await db.fetchval("SELECT count(*) FROM events") == before


async def test_cancel_ends_a_queued_task_once_and_only_for_its_tenant(
    base_url: str, keys: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        task_id = (await client.post("/v1/tasks", json={"type": "sleep"}, headers=auth(keys["acme"]))).json()[
            "task_id"
        ]
        assert (
            await client.post(f"/v1/tasks/{task_id}/cancel", headers=auth(keys["globex"]))
        ).status_code == 404
        r = await client.post(f"/v1/tasks/{task_id}/cancel", headers=auth(keys["acme"]))
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        again = await client.post(f"/v1/tasks/{task_id}/cancel", headers=auth(keys["acme"]))
        assert again.status_code == 409
        got = await client.get(f"/v1/tasks/{task_id}", headers=auth(keys["acme"]))
        assert got.json()["status"] == "cancelled"


async def test_health_ready_metrics_and_an_openapi_document_that_declares_the_errors(
    base_url: str, keys: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        waiting = {"type": "echo", "priority": "high"}  # no worker runs in this module: it waits
        assert (await client.post("/v1/tasks", json=waiting, headers=auth(keys["acme"]))).status_code == 202
        assert (await client.get("/health")).json() == {"status": "ok"}
        ready = await client.get("/ready")
        assert ready.status_code == 200, ready.text
        exported = (await client.get("/metrics")).text
        assert "chronicle_http_requests_total" in exported
        # The high-priority task submitted above waits: no worker runs in this module.
        depth = next(
            line
            for line in exported.splitlines()
            if line.startswith('chronicle_queue_depth{priority="high"}')
        )
        assert float(depth.split()[-1]) >= 1
        assert 'chronicle_tasks{status="pending"}' in exported  # from the task board, every tenant
        spec = (await client.get("/openapi.json")).json()
    submit = spec["paths"]["/v1/tasks"]["post"]["responses"]
    assert {"202", "401", "403", "422", "503"} <= submit.keys()
    assert {"404", "409"} <= spec["paths"]["/v1/tasks/{task_id}/cancel"]["post"]["responses"].keys()


async def test_agents_are_registered_read_and_deregistered_by_their_tenant_only(
    base_url: str, keys: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        body = {"agent_id": "planner-1", "name": "planner", "capabilities": ["gpu"]}
        assert (await client.post("/v1/agents", json=body, headers=auth(keys["acme"]))).status_code == 403
        r = await client.post("/v1/agents", json=body, headers=auth(keys["globex"]))
        assert r.status_code == 201 and r.json()["capabilities"] == ["gpu"]
        taken = await client.post("/v1/agents", json=body, headers=auth(keys["acme-admin"]))
        assert taken.status_code == 409
        assert (await client.get("/v1/agents/planner-1", headers=auth(keys["acme"]))).status_code == 404
        mine = await client.get("/v1/agents/planner-1", headers=auth(keys["globex"]))
        assert (
            mine.status_code == 200 and mine.json()["state"]["status"] == "offline"
        )  # registered, not online yet
        gone = await client.delete("/v1/agents/planner-1", headers=auth(keys["globex"]))
        assert gone.status_code == 200 and gone.json()["state"]["status"] == "deregistered"
        listed = await client.get("/v1/agents", headers=auth(keys["globex"]))
        assert listed.status_code == 200 and "agents" in listed.json()


async def test_a_streams_events_and_its_state_at_a_version_for_its_tenant_only(
    base_url: str, keys: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        task_id = (
            await client.post("/v1/tasks", json={"type": "echo"}, headers=auth(keys["globex"]))
        ).json()["task_id"]
        await client.post(f"/v1/tasks/{task_id}/cancel", headers=auth(keys["globex"]))
        path = f"/v1/streams/task-{task_id}"
        events = (await client.get(f"{path}/events", headers=auth(keys["globex"]))).json()
        assert [e["type"] for e in events] == ["TaskSubmitted", "TaskCancelled"]
        at_1 = (await client.get(f"{path}/state", params={"version": 1}, headers=auth(keys["globex"]))).json()
        assert (at_1["version"], at_1["state"]["status"]) == (1, "pending")
        now = (await client.get(f"{path}/state", headers=auth(keys["globex"]))).json()
        assert now["state"]["status"] == "cancelled"
        assert (await client.get(f"{path}/events", headers=auth(keys["acme-admin"]))).status_code == 404
        assert (await client.get(f"{path}/events", headers=auth(keys["acme-reader"]))).status_code == 403
        assert (
            await client.get("/v1/streams/not a stream/events", headers=auth(keys["globex"]))
        ).status_code == 404
        both = await client.get(
            f"{path}/state", params={"version": 1, "position": 1}, headers=auth(keys["globex"])
        )
        assert both.status_code == 422


async def test_conversations_and_runs_for_their_tenant_only(
    base_url: str, keys: dict[str, str], api_env: dict[str, str]
) -> None:
    daemon = start_daemon(api_env)
    try:
        async with httpx.AsyncClient(base_url=base_url) as client:
            path = "/v1/conversations/chat-1/messages"
            for n, text in enumerate(("hello", "again"), start=1):
                body = {"sender": "alice", "recipient": "bob", "body": {"text": text}}
                sent = await client.post(path, json=body, headers=auth(keys["acme-admin"]))
                assert sent.status_code == 201 and sent.json()["sequence"] == n
            intruder = {"sender": "eve", "recipient": "bob", "body": {}}
            assert (await client.post(path, json=intruder, headers=auth(keys["globex"]))).status_code == 404

            async def history() -> list[dict[str, Any]]:
                found: list[dict[str, Any]] = (await client.get(path, headers=auth(keys["acme"]))).json()[
                    "items"
                ]
                return found

            items = await eventually(history, lambda found: len(found) == 2)  # a read model: within its lag
            assert [m["body"] for m in items] == [{"text": "hello"}, {"text": "again"}]
            assert (await client.get(path, headers=auth(keys["globex"]))).json()["items"] == []
            assert (await client.get("/v1/runs", headers=auth(keys["acme"]))).json() == {"items": []}
            assert (await client.get("/v1/runs/nope/epochs", headers=auth(keys["acme"]))).status_code == 404
    finally:
        stop(daemon)


async def test_an_oversized_body_is_413_and_writes_nothing(
    base_url: str, keys: dict[str, str], db: asyncpg.Connection
) -> None:
    before = await db.fetchval("SELECT count(*) FROM events")
    huge = {"type": "echo", "payload": {"blob": "x" * (2 * 1024 * 1024)}}
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.post("/v1/tasks", json=huge, headers=auth(keys["acme"]))
    assert r.status_code == 413 and "bytes" in r.json()["error"]
    assert await db.fetchval("SELECT count(*) FROM events") == before


async def test_a_request_id_is_answered_and_recorded_as_the_events_trace_id(
    base_url: str, keys: dict[str, str], db: asyncpg.Connection
) -> None:
    headers = {**auth(keys["acme"]), "X-Request-Id": "req-4711"}
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.post("/v1/tasks", json={"type": "echo"}, headers=headers)
        assert r.headers["x-request-id"] == "req-4711"
        assert len((await client.get("/health")).headers["x-request-id"]) == 32  # made up when not given
    metadata = await db.fetchval(
        "SELECT metadata FROM events WHERE stream_id = $1", f"task-{r.json()['task_id']}"
    )
    assert orjson.loads(metadata)["trace_id"] == "req-4711"


async def test_a_tenant_over_its_submission_rate_gets_429_and_nothing_is_written(
    api_env: dict[str, str], keys: dict[str, str], db: asyncpg.Connection
) -> None:
    before = await db.fetchval("SELECT count(*) FROM events")
    with serving(api_env, "--tenant-submit-rate", "2") as url:
        async with httpx.AsyncClient(base_url=url) as client:
            answers = [
                await client.post("/v1/tasks", json={"type": "echo"}, headers=auth(keys["acme-admin"]))
                for _ in range(6)
            ]
    codes = [a.status_code for a in answers]
    assert codes[:2] == [202, 202] and 429 in codes, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["retry-after"] == "1" and "acme" in refused.json()["error"]
    assert await db.fetchval("SELECT count(*) FROM events") - before == codes.count(202)


async def test_sigterm_drains_ready_false_while_requests_are_still_served(
    api_env: dict[str, str], keys: dict[str, str]
) -> None:
    port = free_port()
    env = {**os.environ, **api_env, "PYTHONPATH": str(ROOT)}
    args = ("serve", "--port", str(port), "--drain-seconds", "3")
    server = await asyncio.create_subprocess_exec(*CLI, *args, env=env, cwd=ROOT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def ready_status() -> int:
                with contextlib.suppress(httpx.TransportError):
                    return (await client.get("/ready")).status_code
                return 0

            await eventually(ready_status, lambda status: status == 200, timeout=60, every=0.1)
            server.send_signal(signal.SIGTERM)
            await eventually(ready_status, lambda status: status == 503)
            ready = await client.get("/ready")
            assert ready.status_code == 503 and "draining" in ready.json()["problems"]
            assert (await client.get("/health")).status_code == 200
            late = await client.post("/v1/tasks", json={"type": "echo"}, headers=auth(keys["acme"]))
            assert late.status_code == 202  # still served while the balancer catches up
        stopped = time.monotonic()
        await asyncio.wait_for(server.wait(), 30)
        assert time.monotonic() - stopped < 10
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
