"""`chronicle projections run | status | rebuild`: the read models' daemon and its controls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from api.cli.progress import ProgressBar, progress_bar
from api.cli.runner import run_with_services
from core.errors import InvalidInput
from core.settings import Settings
from eventstore.embedded import Services
from projections.runner.contract import Projection
from projections.runner.status import ProjectionStatus

__all__ = ["rebuild", "run", "status"]


def run(
    only: Annotated[
        list[str] | None, typer.Option("--only", help="run just this projection (repeatable)")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus metrics (lag, apply delay) on this port")
    ] = None,
) -> None:
    """Keep the read models current and seal the log (chains, Merkle tree, signed checkpoints)
    until interrupted; two daemons may run, each projection is owned by one of them at a time.

    Example: chronicle projections run --only task_board --metrics-port 9102
    """
    import redis.asyncio as aioredis

    from api.callbacks import Callbacks, load_or_create_secret
    from eventstore import EventStore
    from eventstore.audit.keys import load_or_create
    from eventstore.migrate import upgrade
    from projections.catalog import PROJECTIONS
    from projections.runner.daemon import ProjectionDaemon
    from projections.runner.sealing import SealerLoop

    async def work(settings: Settings, svc: Services) -> None:
        chosen = (
            [_projection(name) for name in only or () if name != "callbacks"] if only else list(PROJECTIONS)
        )
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port)
        await upgrade(svc.database_url)
        key = load_or_create(settings.signing_key_path, settings.log_origin)
        async with await EventStore.connect(svc.database_url, settings) as store:
            redis = aioredis.Redis.from_url(svc.redis_url)
            if not only or "callbacks" in only:
                secret = load_or_create_secret(settings.webhook_secret_path)
                chosen.append(Callbacks(store, redis, secret))
            sealer = SealerLoop(store, svc.database_url, key, poll_interval=settings.poll_interval)
            daemon = ProjectionDaemon(
                store, svc.database_url, chosen, poll_interval=settings.poll_interval, sealer=sealer
            )
            typer.echo(f"projections: {', '.join(p.name for p in chosen)} ({daemon.name})", err=True)
            try:
                await _until_signalled(daemon.run())
            finally:
                await redis.aclose()

    run_with_services(work)


async def _until_signalled(running: Coroutine[Any, Any, None]) -> None:
    """Run until SIGTERM or SIGINT; the daemon is cancelled, which releases its leases."""
    task = asyncio.ensure_future(running)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def status(
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
    max_lag_seconds: Annotated[
        float | None,
        typer.Option(help="exit 1 if a projection has failed, is not built, or lags more than this"),
    ] = None,
) -> None:
    """Each projection's position, lag in events and seconds, owner, state and last failure.

    Example: chronicle projections status --json --max-lag-seconds 5
    """
    from eventstore.pg import connect
    from projections.catalog import PROJECTIONS
    from projections.runner.status import lagging, statuses

    async def work(settings: Settings, svc: Services) -> list[ProjectionStatus]:
        conn = await connect(svc.database_url)
        try:
            return await statuses(conn, PROJECTIONS)
        finally:
            await conn.close()

    found = run_with_services(work)
    if as_json:
        typer.echo(json.dumps([asdict(s) | {"state": s.state} for s in found], indent=2, default=str))
    else:
        Console(width=max(Console().width, 140)).print(_table(found))
    if max_lag_seconds is not None and (behind := lagging(found, max_lag_seconds)):
        names = ", ".join(f"{s.name} ({s.state}, {s.lag_seconds:.1f} s)" for s in behind)
        typer.echo(f"chronicle: not ready: {names}", err=True)
        raise typer.Exit(1)


def _table(found: list[ProjectionStatus]) -> Table:
    table = Table("projection", "state", "version", "position", "lag (events)", "lag (s)", "applied", "owner")
    for s in found:
        version = f"{s.version}" if s.version == s.code_version else f"{s.version} (code {s.code_version})"
        table.add_row(
            s.name,
            s.state,
            version,
            str(s.position),
            str(s.lag_events),
            f"{s.lag_seconds:.3f}",
            str(s.applied_events),
            s.owner or "-",
        )
        if s.error:
            table.add_row("", f"failed at {s.failed_position}", "", "", "", "", "", s.error[:80])
        if s.rebuilding_generation is not None:
            table.add_row("", f"rebuilding: at {s.rebuild_position} of {s.head}", "", "", "", "", "", "")
    return table


def rebuild(name: Annotated[str, typer.Argument(help="the projection to rebuild")]) -> None:
    """Rebuild a read model into a new generation and swap it in; readers keep the old one
    until the new one has caught up.

    Example: chronicle projections rebuild task_board
    """
    from eventstore import EventStore
    from eventstore.migrate import upgrade
    from eventstore.pg import connect
    from projections.runner.rebuild import rebuild as rebuild_projection

    async def work(settings: Settings, svc: Services) -> str:
        projection = _projection(name)
        await upgrade(svc.database_url)
        async with await EventStore.connect(svc.database_url, settings) as store:
            conn = await connect(svc.database_url, application_name=f"chronicle projections rebuild {name}")
            try:
                with progress_bar(f"rebuilding {name}") as bar:
                    done = await rebuild_projection(store, conn, projection, progress=_at_least_one(bar))
            finally:
                await conn.close()
        replaced = f", replacing generation {done.replaced}" if done.replaced is not None else ""
        return f"{name}: generation {done.generation} live at position {done.position}{replaced}"

    typer.echo(run_with_services(work))


def _at_least_one(bar: ProgressBar) -> Callable[[int, int], None]:
    """An empty log's head is 0; a bar needs a total above it."""
    return lambda position, head: bar.update(position, max(head, 1))


def _projection(name: str) -> Projection:
    from projections.catalog import by_name

    try:
        return by_name(name)
    except KeyError as exc:
        raise InvalidInput(str(exc.args[0])) from exc
