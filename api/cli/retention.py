"""`chronicle retention set | list | remove | run`: per-category policies and the archival run."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.cli.progress import ProgressBar, progress_bar
from api.cli.runner import run_with_services
from core.settings import Settings
from eventstore.embedded import Services

if TYPE_CHECKING:
    from eventstore.retention import Archived

__all__ = ["list_policies", "remove", "run", "set_policy"]


def set_policy(
    category: Annotated[str, typer.Argument(help="the stream category (the part of a stream id before '-')")],
    keep_days: Annotated[int, typer.Option(help="days a stream stays in the hot log after its last event")],
    after_terminal: Annotated[
        bool, typer.Option(help="archive only streams whose last event ends them (a task's final state)")
    ] = False,
) -> None:
    """Set how long a category's streams stay in the hot log.

    Example: chronicle retention set task --keep-days 90 --after-terminal
    """
    from eventstore.pg import connect
    from eventstore.retention import Policy
    from eventstore.retention import set_policy as store_policy

    policy = Policy(category, keep_days, after_terminal)

    async def work(settings: Settings, svc: Services) -> None:
        conn = await connect(svc.database_url)
        try:
            await store_policy(conn, policy)
        finally:
            await conn.close()

    run_with_services(work)
    when = "after a terminal event" if after_terminal else "after their last event"
    typer.echo(f"{category}: streams move to the archive {keep_days} days {when}")


def list_policies(
    as_json: Annotated[bool, typer.Option("--json", help="print the policies as JSON")] = False,
) -> None:
    """Show every retention policy.

    Example: chronicle retention list --json
    """
    from eventstore.pg import connect
    from eventstore.retention import Policy, policies

    async def work(settings: Settings, svc: Services) -> list[Policy]:
        conn = await connect(svc.database_url)
        try:
            return await policies(conn)
        finally:
            await conn.close()

    found = run_with_services(work)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(p) for p in found]))
        return
    table = Table("category", "keep days", "after terminal")
    for p in found:
        table.add_row(p.category, str(p.keep_days), "yes" if p.after_terminal else "no")
    Console().print(table)


def remove(category: Annotated[str, typer.Argument(help="the category whose policy goes")]) -> None:
    """Remove a category's policy: its streams stay in the hot log from now on.

    Example: chronicle retention remove conversation
    """
    from core.errors import InvalidInput
    from eventstore.pg import connect
    from eventstore.retention import remove_policy

    async def work(settings: Settings, svc: Services) -> bool:
        conn = await connect(svc.database_url)
        try:
            return await remove_policy(conn, category)
        finally:
            await conn.close()

    if not run_with_services(work):
        raise InvalidInput(f"no retention policy for category {category!r}")
    typer.echo(f"{category}: no retention policy")


def run(
    as_json: Annotated[bool, typer.Option("--json", help="print what moved as JSON")] = False,
) -> None:
    """Move every stream its category's policy says is due into the archive, in batches of whole
    streams, each recorded as a StreamsArchived event. Archived streams stay readable and
    provable; only sealed events move (run the projection daemon, or `chronicle audit seal`).

    Example: chronicle retention run
    """
    from eventstore.pg import connect
    from eventstore.retention import archive_due

    async def work(settings: Settings, svc: Services) -> list[Archived]:
        conn = await connect(svc.database_url, application_name="chronicle retention run")
        try:
            with progress_bar("archiving") as bar:
                return await archive_due(conn, progress=lambda a: _report(bar, a))
        finally:
            await conn.close()

    archived = run_with_services(work)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(a) for a in archived]))
        return
    table = Table("category", "streams archived", "events archived")
    for a in archived:
        table.add_row(a.category, f"{a.streams:,}", f"{a.events:,}")
    Console().print(table)


def _report(bar: ProgressBar, archived: Archived) -> None:
    """How many streams are due is not known ahead: the bar counts them, per category."""
    bar.update(archived.streams, description=f"archiving {archived.category} ({archived.events:,} events)")
