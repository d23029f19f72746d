"""A Python client for Chronicle's HTTP API (httpx), sync and async, for every route.

    with Client("http://127.0.0.1:8000", key) as chronicle:
        task = chronicle.submit("echo", {"x": 1}, idempotency_key="order-4711")
        print(chronicle.get(task.task_id).status)
        chronicle.call(routes.register_agent("planner-1", "planner", ["gpu"]))

The task methods return the contract's models; ``call(routes.<route>(...))`` reaches every
other route and returns its JSON.

Every error answer raises ``ApiError`` with its status, message and the field at fault.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson

from api.contract.v1 import EventView, TaskAccepted, TaskList, TaskView

__all__ = ["ApiError", "AsyncClient", "Client", "Request", "routes"]

# A request to any route: (method, path, httpx keyword arguments). ``routes`` builds one for
# every route beyond the typed task methods; ``Client.call`` and ``AsyncClient.call`` send it
# and return the JSON answer (or the text of a text answer).
Request = tuple[str, str, dict[str, Any]]


def _query(**values: Any) -> dict[str, Any]:
    return {"params": {k: v for k, v in values.items() if v is not None}}


class routes:  # noqa: N801 - a namespace of request builders, read as routes.retry(...)
    @staticmethod
    def retry(task_id: str) -> Request:
        return "POST", f"/v1/tasks/{task_id}/retry", {}

    @staticmethod
    def bulk_cancel(
        status: str | None = None, priority: str | None = None, reason: str | None = None
    ) -> Request:
        body = {k: v for k, v in {"status": status, "priority": priority, "reason": reason}.items() if v}
        return "POST", "/v1/tasks/bulk-cancel", {"json": body}

    @staticmethod
    def bulk_retry(status: str | None = None, priority: str | None = None) -> Request:
        body = {k: v for k, v in {"status": status, "priority": priority}.items() if v}
        return "POST", "/v1/tasks/bulk-retry", {"json": body}

    @staticmethod
    def register_agent(agent_id: str, name: str, capabilities: list[str] | None = None) -> Request:
        body = {"agent_id": agent_id, "name": name, "capabilities": capabilities or []}
        return "POST", "/v1/agents", {"json": body}

    @staticmethod
    def agents(after: str | None = None, limit: int = 100) -> Request:
        return "GET", "/v1/agents", _query(after=after, limit=limit)

    @staticmethod
    def agent(agent_id: str) -> Request:
        return "GET", f"/v1/agents/{agent_id}", {}

    @staticmethod
    def deregister_agent(agent_id: str, reason: str = "deregistered") -> Request:
        return "DELETE", f"/v1/agents/{agent_id}", _query(reason=reason)

    @staticmethod
    def stream_events(stream_id: str, from_version: int = 1, limit: int = 1000) -> Request:
        return "GET", f"/v1/streams/{stream_id}/events", _query(from_version=from_version, limit=limit)

    @staticmethod
    def stream_state(
        stream_id: str, version: int | None = None, position: int | None = None, at: str | None = None
    ) -> Request:
        return "GET", f"/v1/streams/{stream_id}/state", _query(version=version, position=position, at=at)

    @staticmethod
    def send_message(conversation_id: str, sender: str, recipient: str, body: dict[str, Any]) -> Request:
        message = {"sender": sender, "recipient": recipient, "body": body}
        return "POST", f"/v1/conversations/{conversation_id}/messages", {"json": message}

    @staticmethod
    def messages(conversation_id: str, after: int = 0, limit: int = 100) -> Request:
        return "GET", f"/v1/conversations/{conversation_id}/messages", _query(after=after, limit=limit)

    @staticmethod
    def runs(limit: int = 100) -> Request:
        return "GET", "/v1/runs", _query(limit=limit)

    @staticmethod
    def run_epochs(run_id: str, include_abandoned: bool = False) -> Request:
        return "GET", f"/v1/runs/{run_id}/epochs", _query(include_abandoned=include_abandoned)

    @staticmethod
    def audit_events(cursor: str | None = None, limit: int = 100, **filters: Any) -> Request:
        return "GET", "/v1/audit/events", _query(cursor=cursor, limit=limit, **filters)

    @staticmethod
    def audit_export(format: str = "jsonl", **filters: Any) -> Request:
        return "GET", "/v1/audit/export", _query(format=format, **filters)

    @staticmethod
    def proof(event_id: str, size: int | None = None) -> Request:
        return "GET", f"/v1/audit/proofs/{event_id}", _query(size=size)

    @staticmethod
    def checkpoint() -> Request:
        return "GET", "/v1/audit/checkpoint", {}

    @staticmethod
    def verify(stream_id: str) -> Request:
        return "GET", f"/v1/audit/verify/{stream_id}", {}


def _answer(response: httpx.Response) -> Any:
    _raise_for(response)
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.text


class ApiError(Exception):
    def __init__(self, status: int, error: str, field: str | None) -> None:
        super().__init__(f"{status}: {error}")
        self.status, self.error, self.field = status, error, field


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text}
    raise ApiError(response.status_code, str(body.get("error")), body.get("field"))


def _submission(
    type_: str, payload: dict[str, Any] | None, priority: str, max_attempts: int, idempotency_key: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    body = {"type": type_, "payload": payload or {}, "priority": priority, "max_attempts": max_attempts}
    return body, ({"Idempotency-Key": idempotency_key} if idempotency_key else {})


def _list_params(
    status: str | None, priority: str | None, cursor: str | None, limit: int, type_: str | None = None
) -> dict[str, Any]:
    params = {"status": status, "type": type_, "priority": priority, "cursor": cursor, "limit": limit}
    return {k: v for k, v in params.items() if v is not None}


class _Sse:
    """Server-sent events, a line at a time: an event ends at its blank line."""

    def __init__(self) -> None:
        self._data: str | None = None

    def feed(self, line: str) -> EventView | None:
        if line.startswith("data: "):
            self._data = line[6:]
        elif line == "" and self._data is not None:
            data, self._data = self._data, None
            return EventView.model_validate(orjson.loads(data))
        return None


def _follow_headers(after_version: int | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream"}
    if after_version is not None:
        headers["Last-Event-ID"] = str(after_version)
    return headers


class Client:
    def __init__(self, base_url: str, key: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return _answer(self._http.request(method, path, **kwargs))

    def call(self, request: Request) -> Any:
        """Send a request built by ``routes``; the JSON answer, or the text of a text one."""
        method, path, kwargs = request
        return self._call(method, path, **kwargs)

    def submit(
        self,
        type_: str,
        payload: dict[str, Any] | None = None,
        *,
        priority: str = "normal",
        max_attempts: int = 3,
        idempotency_key: str | None = None,
    ) -> TaskAccepted:
        body, headers = _submission(type_, payload, priority, max_attempts, idempotency_key)
        return TaskAccepted.model_validate(self._call("POST", "/v1/tasks", json=body, headers=headers))

    def get(self, task_id: str) -> TaskView:
        return TaskView.model_validate(self._call("GET", f"/v1/tasks/{task_id}"))

    def list_tasks(
        self,
        *,
        status: str | None = None,
        priority: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
        type_: str | None = None,
    ) -> TaskList:
        params = _list_params(status, priority, cursor, limit, type_)
        return TaskList.model_validate(self._call("GET", "/v1/tasks", params=params))

    def cancel(self, task_id: str, reason: str = "cancelled by request") -> TaskView:
        return TaskView.model_validate(
            self._call("POST", f"/v1/tasks/{task_id}/cancel", params={"reason": reason})
        )

    def events(self, task_id: str) -> list[EventView]:
        return [EventView.model_validate(e) for e in self._call("GET", f"/v1/tasks/{task_id}/events")]

    def follow(self, task_id: str, after_version: int | None = None) -> Iterator[EventView]:
        """The task's events as they happen (SSE), after ``after_version``; ends at its end."""
        path, sse = f"/v1/tasks/{task_id}/events", _Sse()
        with self._http.stream("GET", path, headers=_follow_headers(after_version), timeout=None) as r:
            _raise_for(r)
            for line in r.iter_lines():
                if (event := sse.feed(line)) is not None:
                    yield event


class AsyncClient:
    def __init__(self, base_url: str, key: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return _answer(await self._http.request(method, path, **kwargs))

    async def call(self, request: Request) -> Any:
        """Send a request built by ``routes``; the JSON answer, or the text of a text one."""
        method, path, kwargs = request
        return await self._call(method, path, **kwargs)

    async def submit(
        self,
        type_: str,
        payload: dict[str, Any] | None = None,
        *,
        priority: str = "normal",
        max_attempts: int = 3,
        idempotency_key: str | None = None,
    ) -> TaskAccepted:
        body, headers = _submission(type_, payload, priority, max_attempts, idempotency_key)
        return TaskAccepted.model_validate(await self._call("POST", "/v1/tasks", json=body, headers=headers))

    async def get(self, task_id: str) -> TaskView:
        return TaskView.model_validate(await self._call("GET", f"/v1/tasks/{task_id}"))

    async def list_tasks(
        self,
        *,
        status: str | None = None,
        priority: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
        type_: str | None = None,
    ) -> TaskList:
        params = _list_params(status, priority, cursor, limit, type_)
        return TaskList.model_validate(await self._call("GET", "/v1/tasks", params=params))

    async def cancel(self, task_id: str, reason: str = "cancelled by request") -> TaskView:
        found = await self._call("POST", f"/v1/tasks/{task_id}/cancel", params={"reason": reason})
        return TaskView.model_validate(found)

    async def events(self, task_id: str) -> list[EventView]:
        return [EventView.model_validate(e) for e in await self._call("GET", f"/v1/tasks/{task_id}/events")]

    async def follow(self, task_id: str, after_version: int | None = None) -> AsyncIterator[EventView]:
        """The task's events as they happen (SSE), after ``after_version``; ends at its end."""
        path, sse = f"/v1/tasks/{task_id}/events", _Sse()
        async with self._http.stream("GET", path, headers=_follow_headers(after_version), timeout=None) as r:
            _raise_for(r)
            async for line in r.aiter_lines():
                if (event := sse.feed(line)) is not None:
                    yield event
