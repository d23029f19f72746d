"""Running a CLI command: settings, logging, the servers (embedded when unset), one-line errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import typer

from api.logging import configure_logging
from core.errors import ChronicleError, InvalidInput
from core.settings import Settings
from eventstore.embedded import Services, services

__all__ = ["print_result", "run_with_services"]

T = TypeVar("T")


def run_with_services(work: Callable[[Settings, Services], Coroutine[Any, Any, T]]) -> T:
    """Start the configured (or embedded) servers, run ``work``, turn errors into one line.

    Bad input exits with status 2, any other Chronicle error with 1; no traceback either way.
    """
    settings = Settings()
    configure_logging(settings)
    try:
        with services(settings) as svc:
            return asyncio.run(work(settings, svc))
    except InvalidInput as exc:
        typer.echo(f"chronicle: error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except ChronicleError as exc:
        typer.echo(f"chronicle: error: {exc}", err=True)
        raise typer.Exit(1) from exc


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
