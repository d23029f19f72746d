"""Running a CLI command: settings, logging, the servers (embedded when unset), one-line errors.

Every error reaches the user as one line on standard error, ``chronicle: error: ...``: bad
input exits with status 2, any other Chronicle error with 1, and so does an unexpected
exception (``api.cli.main``), which adds that ``--debug`` shows its traceback.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import typer

from api.logging import configure_logging
from core.errors import ChronicleError, InvalidInput
from core.settings import Settings
from eventstore.embedded import Services, services

__all__ = ["OPTIONS", "GlobalOptions", "error_status", "print_result", "run_with_services"]

T = TypeVar("T")


@dataclass(slots=True)
class GlobalOptions:
    """The options given before the command (``chronicle --debug replay ...``)."""

    debug: bool = False


# Set once per process by the app's callback; read where an error is reported, which may be
# after click has left the command's context (api.cli.main).
OPTIONS = GlobalOptions()


def run_with_services(work: Callable[[Settings, Services], Coroutine[Any, Any, T]]) -> T:
    """Start the configured (or embedded) servers, run ``work``, turn errors into one line.

    Bad input exits with status 2, any other Chronicle error with 1; no traceback either way.
    """
    settings = Settings()
    configure_logging(settings)
    try:
        with services(settings) as svc:
            return asyncio.run(work(settings, svc))
    except ChronicleError as exc:
        raise typer.Exit(error_status(exc)) from exc


def error_status(exc: ChronicleError) -> int:
    """Report an expected error in one line (after its traceback with ``--debug``); its status."""
    if OPTIONS.debug:
        traceback.print_exception(exc)
    typer.echo(f"chronicle: error: {exc}", err=True)
    return 2 if isinstance(exc, InvalidInput) else 1


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
