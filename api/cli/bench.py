"""`chronicle bench append | replay | triad | projections`: each benchmark beside its ceiling,
measured in the same run."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from api.cli.progress import spinner
from api.cli.runner import print_result, run_with_services
from core.settings import Settings
from eventstore.embedded import Services

__all__ = ["api", "append", "console", "import_", "projections", "replay", "triad"]

T = TypeVar("T")


def append(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    duration: Annotated[float, typer.Option(help="seconds per write phase")] = 5.0,
    events: Annotated[int, typer.Option(help="events in the log for the read_all phase")] = 1_000_000,
    log_size: Annotated[
        str | None,
        typer.Option(
            help="grow the log through the importer to each of these sizes (comma-separated) and "
            "measure appends, reads, rehydration and recovery at each, beside a small log's figures"
        ),
    ] = None,
) -> None:
    """Appends and reads against raw asyncpg on the same table, in one run.

    Example: chronicle bench append --duration 2 --events 100000 --json
    """
    from bench.append import run
    from bench.scaling import scaling_figures

    sizes = _sizes(log_size) if log_size else None

    async def work(settings: Settings, svc: Services) -> dict[str, Any]:
        if sizes:
            return await scaling_figures(svc.database_url, sizes, duration=duration)
        return await run(svc.database_url, duration=duration, read_all_events=events)

    print_result(_measured("append", work), as_json)


def replay(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    events: Annotated[int, typer.Option(help="events in the task stream")] = 10_000,
    tasks: Annotated[int, typer.Option(help="in-flight tasks to recover")] = 10_000,
) -> None:
    """Rehydration with and without snapshots, replay throughput and recovery, beside the raw read.

    Example: chronicle bench replay --events 1000 --tasks 1000
    """
    from bench.replay import run

    async def work(settings: Settings, svc: Services) -> dict[str, Any]:
        return await run(svc.database_url, events=events, tasks=tasks)

    print_result(_measured("replay", work), as_json)


def triad(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    quick: Annotated[bool, typer.Option(help="smaller runs, for a smoke test")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Epoch boundary, packet serialisation, emission cost, rollback, flusher rate, vs targets.

    Example: chronicle bench triad --quick --device cpu
    """
    from bench.triad import run
    from eventstore import EventStore
    from eventstore.migrate import upgrade

    async def work(settings: Settings, svc: Services) -> dict[str, Any]:
        await upgrade(svc.database_url)
        async with await EventStore.connect(svc.database_url, settings) as store:
            return await run(event_log=store, device=device, quick=quick)

    result = _measured("triad", work)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    from rich.console import Console

    table = Table("figure", "measured", "unit", "target", "met")
    for f in result["figures"]:
        met = "" if f["met"] is None else ("yes" if f["met"] else "NO")
        table.add_row(f["name"], f"{f['measured']:.4g}", f["unit"], str(f["target"] or ""), met)
    Console().print(table)


def projections(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    events: Annotated[
        int, typer.Option(help="events in the log for the rebuild and audit phases")
    ] = 1_000_000,
    seconds: Annotated[float, typer.Option(help="seconds of traffic per lag phase")] = 20.0,
    quick: Annotated[bool, typer.Option(help="100,000 events and 5 s phases, for a smoke test")] = False,
) -> None:
    """Read-model lag at 1,000 and 5,000 events/s, rebuild speed beside read_all, audit queries.

    Example: chronicle bench projections --quick --json
    """
    from bench.projections import run

    if quick:
        events, seconds = 100_000, 5.0

    async def work(settings: Settings, svc: Services) -> dict[str, Any]:
        return await run(svc.database_url, events=events, phase_seconds=seconds)

    print_result(_measured("projections", work), as_json)


def api(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    seconds: Annotated[float, typer.Option(help="seconds per timed phase")] = 5.0,
    tasks: Annotated[int, typer.Option(help="echo tasks in the end-to-end burst")] = 2000,
    trials: Annotated[int, typer.Option(help="SIGKILLed workers to time the reclaim of")] = 5,
) -> None:
    """The API and workers as processes: submits/s and 202 latency, end-to-end tasks/s,
    submit-to-start latency at 250 tasks/s, reclaim after a SIGKILL; beside raw Redis and
    PostgreSQL ceilings. Flushes every chronicle:* key of the Redis it is given.

    Example: chronicle bench api --json
    """
    from bench.api import run

    async def work(settings: Settings, svc: Services) -> dict[str, Any]:
        return await run(svc.database_url, svc.redis_url, seconds=seconds, tasks=tasks, trials=trials)

    print_result(_measured("api", work), as_json)


def console(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    board: Annotated[int, typer.Option(help="tasks on the board")] = 1_000_000,
    events: Annotated[int, typer.Option(help="events in the log (1,000 streams)")] = 1_000_000,
    rounds: Annotated[int, typer.Option(help="pages asked per route")] = 200,
) -> None:
    """The list routes the web console pages through (tasks, filtered tasks, stream events,
    audit events): p95 over a board and a log of a million rows each, beside the same page
    read through asyncpg.

    Example: chronicle bench console --board 100000 --events 100000 --json
    """
    from bench.console import run

    async def work(settings: Settings, svc: Services) -> dict[str, Any]:
        return await run(svc.database_url, svc.redis_url, board=board, events=events, rounds=rounds)

    print_result(_measured("console", work), as_json)


def import_(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    lines: Annotated[int, typer.Option(min=1, help="lines in the file imported")] = 2_000_000,
) -> None:
    """`chronicle import` of a generated JSON Lines file (about 400 bytes a line) in a process
    of its own, with its rate and peak memory, beside raw COPY of the same rows.

    Example: chronicle bench import --lines 200000 --json
    """
    from bench.scaling import import_figures

    async def work(settings: Settings, svc: Services) -> dict[str, Any]:
        return await import_figures(svc.database_url, lines, settings)

    print_result(_measured("import", work), as_json)


def _sizes(text: str) -> list[int]:
    from core.errors import InvalidInput

    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise InvalidInput(
            f"--log-size {text!r}: give event counts, comma-separated (100000,1000000)"
        ) from exc
    if not sizes or min(sizes) < 1:
        raise InvalidInput(f"--log-size {text!r}: give event counts, comma-separated (100000,1000000)")
    return sizes


def _measured(name: str, work: Callable[[Settings, Services], Coroutine[Any, Any, T]]) -> T:
    """Run a benchmark with a spinner and the time elapsed on a terminal: its phases print
    nothing until the figures, which can take minutes."""
    with spinner(f"chronicle bench {name}: measuring"):
        return run_with_services(work)
