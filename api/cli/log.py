"""`chronicle migrate`, `import` and `export`: the schema and the log in bulk."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli.progress import ProgressBar, progress_bar
from api.cli.runner import run_with_services
from core.events import RecordedEvent
from core.settings import Settings
from eventstore.embedded import Services

__all__ = ["export", "import_", "migrate"]


def migrate() -> None:
    """Upgrade the database schema to the newest revision.

    Example: chronicle migrate
    """
    from eventstore.migrate import head_revision, upgrade

    async def work(settings: Settings, svc: Services) -> None:
        await upgrade(svc.database_url)

    run_with_services(work)
    typer.echo(f"schema at {head_revision()}")


def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines, one event a line")],
) -> None:
    """Bulk-import events (COPY). Lines: {"stream_id", "type", "data", "metadata"?, "event_id"?}.

    Every line is checked before anything is written; personal fields (MessageSent's body)
    are sealed as an append seals them. Importing the same file again stores nothing twice.

    Example: chronicle import events.jsonl
    """
    from eventstore.log.bulk import import_jsonl
    from eventstore.migrate import upgrade
    from eventstore.privacy import Privacy

    async def work(settings: Settings, svc: Services) -> Any:
        await upgrade(svc.database_url)
        privacy = await Privacy.connect(svc.database_url, settings)  # personal fields go in sealed
        try:
            with file.open(encoding="utf-8") as source, progress_bar("importing") as bar:
                return await import_jsonl(
                    svc.database_url, source, settings.max_event_bytes, progress=bar.update, privacy=privacy
                )
        finally:
            await privacy.close()

    report = run_with_services(work)
    typer.echo(f"{report.lines} lines: {report.imported} imported, {report.already_stored} already stored")


def export(
    out: Annotated[Path | None, typer.Option(help="file to write; standard output when absent")] = None,
    from_position: Annotated[int, typer.Option(help="first global position")] = 0,
    category: Annotated[list[str] | None, typer.Option(help="only these stream categories")] = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
) -> None:
    """Export the log as JSON Lines, in global order.

    Example: chronicle export --out log.jsonl --category task --tenant acme
    """
    from eventstore import EventStore
    from eventstore.log.bulk import export_jsonl

    async def work(settings: Settings, svc: Services) -> int:
        async with await EventStore.connect(svc.database_url, settings) as store:
            events = store.read_all(from_position, categories=category, tenant_id=tenant)
            with progress_bar("exporting (log position)") as bar:
                if bar.enabled:
                    events = _reporting(events, await store.head_position(), bar)
                if out is None:
                    return await export_jsonl(events, sys.stdout)
                with out.open("w", encoding="utf-8") as sink:
                    return await export_jsonl(events, sink)

    count = run_with_services(work)
    typer.echo(f"exported {count} events", err=True)


async def _reporting(
    events: AsyncIterator[RecordedEvent], head: int, bar: ProgressBar, every: int = 1000
) -> AsyncIterator[RecordedEvent]:
    """The events unchanged, moving the bar to the position of every ``every``-th one."""
    count = 0
    async for event in events:
        yield event
        count += 1
        if count % every == 0:
            bar.update(event.global_position, head)
