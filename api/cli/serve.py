"""`chronicle serve` and `chronicle keys create | list | revoke`."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.cli.runner import run_with_services
from core.settings import Settings
from eventstore.embedded import Services

__all__ = ["create_key", "list_keys", "revoke_key", "serve"]


def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    tenant_submit_rate: Annotated[
        float,
        typer.Option(min=0.0, help="submissions a second one tenant may make, across replicas (0: no limit)"),
    ] = 0.0,
    drain_seconds: Annotated[
        float,
        typer.Option(min=0.0, help="after SIGTERM, seconds of serving with /ready false before stopping"),
    ] = 5.0,
) -> None:
    """Run the HTTP API (uvicorn). SIGTERM drains: /ready turns false, requests go on being served
    for --drain-seconds, then the server stops and lets in-flight requests finish.

    Example: chronicle serve --host 0.0.0.0 --port 8000
    """
    import uvicorn
    import uvloop

    from api.http.app import create_app
    from api.http.server import DrainingServer

    # uvloop for the whole process (asyncpg and redis too): the server runs on the loop
    # run_with_services starts, so uvicorn's own --loop choice would not apply.
    uvloop.install()

    async def work(settings: Settings, svc: Services) -> None:
        app = create_app(settings, svc.database_url, svc.redis_url, tenant_submit_rate=tenant_submit_rate)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        await DrainingServer(config, app, drain_seconds).serve()

    run_with_services(work)


def create_key(
    tenant: Annotated[str, typer.Option(help="the tenant every request with this key works for")],
    actor: Annotated[str, typer.Option(help="who the key's requests are recorded as")],
    scope: Annotated[
        list[str],
        typer.Option("--scope", help="tasks:write, tasks:read, agents:write, audit:read or admin; repeat"),
    ],
) -> None:
    """Create an API key and print it; it is shown only this once.

    Example: chronicle keys create --tenant acme --actor ci-bot --scope tasks:write --scope tasks:read
    """
    from eventstore.apikeys import create_key as create
    from eventstore.pg import connect

    async def work(settings: Settings, svc: Services) -> str:
        conn = await connect(svc.database_url)
        try:
            return await create(conn, tenant, actor, tuple(scope))
        finally:
            await conn.close()

    typer.echo(run_with_services(work))


def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="print the keys as JSON")] = False,
) -> None:
    """List API keys (never their secrets).

    Example: chronicle keys list --json
    """
    from eventstore.apikeys import ApiKey
    from eventstore.apikeys import list_keys as listed
    from eventstore.pg import connect

    async def work(settings: Settings, svc: Services) -> list[ApiKey]:
        conn = await connect(svc.database_url)
        try:
            return await listed(conn)
        finally:
            await conn.close()

    keys = run_with_services(work)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(k) for k in keys], default=_isoformat))
        return
    table = Table("key id", "tenant", "actor", "scopes", "created", "revoked")
    for k in keys:
        revoked = k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else ""
        table.add_row(
            k.key_id,
            k.tenant_id,
            k.actor,
            " ".join(k.scopes),
            k.created_at.isoformat(timespec="seconds"),
            revoked,
        )
    Console().print(table)


def revoke_key(
    key_id: Annotated[str, typer.Argument(help="the key's id (the 12 hex digits after chr_)")],
) -> None:
    """Revoke an API key; requests with it get 401 within a second.

    Example: chronicle keys revoke 3fa85f64a1b2
    """
    from core.errors import InvalidInput
    from eventstore.apikeys import revoke_key as revoke
    from eventstore.pg import connect

    async def work(settings: Settings, svc: Services) -> bool:
        conn = await connect(svc.database_url)
        try:
            return await revoke(conn, key_id)
        finally:
            await conn.close()

    if not run_with_services(work):
        raise InvalidInput(f"no live key {key_id!r}")
    typer.echo(f"revoked {key_id}")


def _isoformat(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
