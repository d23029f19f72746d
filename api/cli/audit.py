"""`chronicle audit query`: who did what, when, under which tenant, and what a command caused.

A page prints as a table on a terminal (JSON Lines or CSV with ``--format``, or when piped) and
the cursor of the next page goes to standard error. ``--out`` exports every match to a file
(JSON Lines, or CSV for a ``.csv`` name) with a progress bar; the file appears only once it is
complete. Bad input is one line on standard error, exit status 2, and nothing is written.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from api.cli.runner import run_with_services
from core.errors import InvalidInput
from core.events import RecordedEvent
from core.settings import Settings
from eventstore.embedded import Services
from eventstore.privacy import Privacy
from projections import audit
from projections.audit import AuditFilter, Exported, ExportFormat

__all__ = ["parse_time", "query"]

TIME_HELP = "an ISO 8601 time (2026-01-01, 2026-01-01T12:00:00+02:00); without a zone it is UTC"
FORMATS = ("table", "jsonl", "csv")


def query(
    actor: Annotated[str | None, typer.Option(help="who acted (the metadata's actor)")] = None,
    tenant: Annotated[str | None, typer.Option(help="the tenant")] = None,
    types: Annotated[
        list[str] | None, typer.Option("--type", help="an event type (repeat for any of several)")
    ] = None,
    stream: Annotated[str | None, typer.Option(help="a stream id, e.g. task-7f3c")] = None,
    category: Annotated[str | None, typer.Option(help="a stream category, e.g. task")] = None,
    since: Annotated[str | None, typer.Option(help=f"recorded at or after: {TIME_HELP}")] = None,
    until: Annotated[str | None, typer.Option(help=f"recorded before: {TIME_HELP}")] = None,
    correlation: Annotated[str | None, typer.Option(help="a correlation id")] = None,
    caused_by: Annotated[
        str | None, typer.Option(help="a command id: everything it caused, transitively (docs/audit.md)")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="events per page [default: 100]; with --out, at most this many")
    ] = None,
    cursor: Annotated[str | None, typer.Option(help="continue after a page (printed on stderr)")] = None,
    format_: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="table, jsonl or csv [default: table on a terminal, else jsonl; "
            "with --out: csv for a .csv name, else jsonl]",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="export every match to this file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: --format jsonl")] = False,
) -> None:
    """Audit events by actor, tenant, type, stream, category, time, correlation or cause, in log
    order, a page at a time or exported to a file.

    Example: chronicle audit query --actor alice --since 2026-01-01 --type TaskCompleted --json
    """
    from eventstore.pg import close_connection, connect

    async def work(settings: Settings, svc: Services) -> None:
        fmt = _format(_json_format(format_, as_json), out)
        given = AuditFilter(
            actor=actor,
            tenant_id=tenant,
            types=tuple(types or ()),
            stream_id=stream,
            category=category,
            since=parse_time("--since", since),
            until=parse_time("--until", until),
            correlation_id=correlation,
            caused_by=caused_by,
        )
        flt = given if given != AuditFilter() or cursor is None else None
        conn = await connect(svc.database_url, application_name="chronicle audit query")
        privacy = await Privacy.connect(svc.database_url, settings)
        try:
            if out is not None:
                done = await _export(conn, out, ExportFormat(fmt), flt, cursor, limit, privacy)
                typer.echo(f"exported {done.events} events to {out}", err=True)
                typer.echo(f"next cursor: {done.cursor}", err=True)
                return
            await _page(conn, fmt, flt, cursor, limit, privacy)
        finally:
            await privacy.close()
            await close_connection(conn)

    run_with_services(work)


def parse_time(option: str, text: str | None) -> datetime | None:
    """An ISO 8601 time; one without a time zone is taken as UTC."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"{option} {text!r} is not {TIME_HELP}") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _json_format(given: str | None, as_json: bool) -> str | None:
    if as_json and given not in (None, "jsonl"):
        raise InvalidInput(f"--json is --format jsonl; it cannot go with --format {given}")
    return "jsonl" if as_json else given


def _format(given: str | None, out: Path | None) -> str:
    if given is None:
        if out is not None:
            return "csv" if out.suffix.lower() == ".csv" else "jsonl"
        return "table" if sys.stdout.isatty() else "jsonl"
    if given not in FORMATS:
        raise InvalidInput(f"--format {given!r} is not one of {', '.join(FORMATS)}")
    if given == "table" and out is not None:
        raise InvalidInput("--format table is for a terminal; export with --format jsonl or csv")
    return given


async def _page(
    conn: asyncpg.Connection,
    fmt: str,
    flt: AuditFilter | None,
    cursor: str | None,
    limit: int | None,
    privacy: Privacy,
) -> None:
    page = await audit.query(conn, flt, cursor=cursor, limit=limit or 100, privacy=privacy)
    if fmt == "table":
        Console(width=max(Console().width, 140)).print(_table(page.events))
    else:
        write = audit.event_writer(sys.stdout, ExportFormat(fmt))
        for event in page.events:
            write(event)
        sys.stdout.flush()
    count = f"{len(page.events)} event{'' if len(page.events) == 1 else 's'}"
    more = "more match" if page.more else "no more now"
    typer.echo(f"next cursor: {page.cursor} ({count}; {more})", err=True)


def _table(events: tuple[RecordedEvent, ...]) -> Table:
    table = Table("position", "recorded at", "tenant", "actor", "type", "stream", "version", "correlation")
    for e in events:
        table.add_row(
            str(e.global_position),
            e.recorded_at.isoformat(timespec="milliseconds"),
            e.tenant_id or "-",
            str(e.metadata.get("actor", "-")),
            e.type,
            e.stream_id,
            str(e.stream_version),
            str(e.metadata.get("correlation_id", "-")),
        )
    return table


async def _export(
    conn: asyncpg.Connection,
    out: Path,
    fmt: ExportFormat,
    flt: AuditFilter | None,
    cursor: str | None,
    limit: int | None,
    privacy: Privacy,
) -> Exported:
    """Export into a hidden file beside ``out`` and rename it into place once complete, so a
    failure (bad input found late, the database gone) leaves no file, or the old one, behind."""
    partial = out.with_name(f".{out.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as sink, _progress_bar() as report:
            done = await audit.export(
                conn, sink, fmt, flt, cursor=cursor, limit=limit, progress=report, privacy=privacy
            )
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return done


@contextlib.contextmanager
def _progress_bar() -> Iterator[Callable[[int, int, int], None]]:
    """A bar over the log positions the export has passed, with the events written so far. It
    appears at the first page (an export refused at once prints nothing but its error), and
    only on a terminal."""
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("exporting"),
        BarColumn(),
        TextColumn("{task.fields[events]} events"),
        TimeRemainingColumn(),
        transient=True,
        console=console,
        disable=not console.is_terminal,
    )
    task = bar.add_task("export", total=None, events=0)

    def report(events: int, position: int, last: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=position, total=max(last, 1), events=events)

    try:
        yield report
    finally:
        if bar.live.is_started:
            bar.stop()
