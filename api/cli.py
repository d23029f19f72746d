"""The `chronicle` command line. Settings come from CHRONICLE_* environment variables; with no
database or Redis URL set, the embedded servers start in the data directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from api.runner import run_with_services
from core.settings import Settings
from eventstore.embedded import Services

__all__ = ["app", "bench_app", "print_result"]

app = typer.Typer(help="Chronicle: an event-sourced coordination backend.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print Chronicle's figures beside a raw ceiling.")
app.add_typer(bench_app, name="bench")


@app.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision."""
    from eventstore.migrate import head_revision, upgrade

    async def work(settings: Settings, svc: Services) -> None:
        await upgrade(svc.database_url)

    run_with_services(work)
    typer.echo(f"schema at {head_revision()}")


@app.command()
def demo() -> None:
    """An agent takes a task and reports back through the deciders; the events are printed back."""
    from api.demo import run_demo

    run_with_services(run_demo)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines, one event a line")],
) -> None:
    """Bulk-import events (COPY). Lines: {"stream_id", "type", "data", "metadata"?, "event_id"?}."""
    from eventstore.log.bulk import import_jsonl
    from eventstore.migrate import upgrade

    async def work(settings: Settings, svc: Services) -> Any:
        await upgrade(svc.database_url)
        with file.open(encoding="utf-8") as source:
            return await import_jsonl(svc.database_url, source, settings.max_event_bytes)

    report = run_with_services(work)
    typer.echo(f"{report.lines} lines: {report.imported} imported, {report.already_stored} already stored")


@app.command()
def export(
    out: Annotated[Path | None, typer.Option(help="file to write; standard output when absent")] = None,
    from_position: Annotated[int, typer.Option(help="first global position")] = 0,
    category: Annotated[list[str] | None, typer.Option(help="only these stream categories")] = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
) -> None:
    """Export the log as JSON Lines, in global order."""
    from eventstore import EventStore
    from eventstore.log.bulk import export_jsonl

    async def work(settings: Settings, svc: Services) -> int:
        async with await EventStore.connect(svc.database_url, settings) as store:
            events = store.read_all(from_position, categories=category, tenant_id=tenant)
            if out is None:
                return await export_jsonl(events, sys.stdout)
            with out.open("w", encoding="utf-8") as sink:
                return await export_jsonl(events, sink)

    count = run_with_services(work)
    typer.echo(f"exported {count} events", err=True)


@bench_app.command("append")
def bench_append(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    duration: Annotated[float, typer.Option(help="seconds per write phase")] = 5.0,
    events: Annotated[int, typer.Option(help="events in the log for the read_all phase")] = 1_000_000,
) -> None:
    """Appends and reads against raw asyncpg on the same table, in one run."""
    from bench.append import run

    async def work(settings: Settings, svc: Services) -> dict[str, Any]:
        return await run(svc.database_url, duration=duration, read_all_events=events)

    print_result(run_with_services(work), as_json)


def print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("target", "measured", "goal", "met")
    for t in result.get("targets", []):
        table.add_row(t["target"], str(t["measured"]), str(t["goal"]), "yes" if t["met"] else "NO")
    Console().print(table)


def _register_features() -> None:
    """Feature modules add their own commands, so each stays beside the code it drives."""
    import importlib

    for name in _FEATURES:
        importlib.import_module(name).register(app, bench_app)


# Each module named here defines register(app, bench_app).
_FEATURES: tuple[str, ...] = ("api.train_cli", "api.replay_cli")
_register_features()
