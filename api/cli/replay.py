"""CLI commands for recovery and time travel: replay, diff, snapshot, snapshotter, recover."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Annotated, Any

import typer

from api.cli.runner import run_with_services
from core.domain.loading import AtPosition, AtTime, AtVersion, Target, decider_for, require_stream
from core.errors import InvalidInput
from core.events import category_of, check_stream_id
from core.settings import Settings
from core.triad.events import RUN
from eventstore.embedded import Services

__all__ = ["diff", "parse_target", "recover", "replay", "snapshot", "snapshotter"]

AT_HELP = "a version (42), a global position (@1234) or an ISO 8601 time (2026-01-01T12:00:00+00:00)"


def parse_target(text: str | None) -> Target | None:
    """``42`` is a version, ``@1234`` a global position, anything else an ISO 8601 time."""
    if text is None:
        return None
    if text.isdigit():
        return AtVersion(int(text))
    if text.startswith("@") and text[1:].isdigit():
        return AtPosition(int(text[1:]))
    try:
        return AtTime(datetime.fromisoformat(text))
    except ValueError as exc:
        raise InvalidInput(f"--at {text!r} is not {AT_HELP}") from exc


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def replay(
    stream: Annotated[str, typer.Argument(help="stream id, e.g. task-7f3c")],
    at: Annotated[str | None, typer.Option(help=AT_HELP)] = None,
    steps: Annotated[bool, typer.Option("--steps", help="print every event and the state after it")] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="a run's epochs as JSON Lines too (other streams print JSON already)"),
    ] = False,
) -> None:
    """Show a stream's state now or at a point in time, or step through it event by event.

    Example: chronicle replay task-7f3c --at 2026-01-01T12:00:00+00:00
    """
    from eventstore import EventStore
    from eventstore.state.snapshots import PostgresSnapshotStore
    from projections.time_travel import state_at
    from projections.time_travel import steps as walk

    async def work(settings: Settings, svc: Services) -> None:
        # Parsed in here so bad input gets run_with_services' one-line error, not a traceback.
        target = parse_target(at)
        if category_of(check_stream_id(stream)) == RUN:
            await _replay_run(stream, svc.database_url, settings, target, as_json)
            return
        decider = decider_for(stream)
        async with await EventStore.connect(svc.database_url, settings) as store:
            snapshots = await PostgresSnapshotStore.connect(svc.database_url)
            try:
                if steps:
                    async for step in walk(store, snapshots, stream, until=target):
                        line = {
                            "version": step.stream_version,
                            "position": step.global_position,
                            "recorded_at": step.recorded_at,
                            "type": step.event_type,
                            "state": decider.state_to_json(step.state),
                        }
                        typer.echo(_json(line))
                    return
                loaded = await state_at(store, snapshots, stream, target)
                typer.echo(
                    _json(
                        {
                            "stream_id": stream,
                            "version": loaded.version,
                            "from_snapshot": loaded.snapshot_version,
                            "state": decider.state_to_json(loaded.state),
                        }
                    )
                )
            finally:
                await snapshots.close()

    run_with_services(work)


async def _replay_run(
    stream: str, database_url: str, settings: Settings, target: Target | None, as_json: bool
) -> None:
    """A training run has no aggregate state: show it epoch by epoch instead."""
    from rich.console import Console

    from api.cli.train import render_run_history
    from eventstore import EventStore
    from projections.run_history import run_history

    if target is not None and not isinstance(target, AtVersion):
        raise InvalidInput("a run stream replays to a version (--at N), not to a position or a time")
    async with await EventStore.connect(database_url, settings) as store:
        events = await store.read_stream(stream, to_version=target.version if target else None)
        if not events:
            await require_stream(store, stream, target)
    rows = run_history(events)
    if as_json:
        for row in rows:
            typer.echo(_json(dataclasses.asdict(row)))
        return
    Console(width=max(Console().width, 140)).print(render_run_history(rows, title=stream))


def diff(
    stream: Annotated[str, typer.Argument(help="stream id")],
    before: Annotated[str, typer.Argument(help="the earlier point: " + AT_HELP)],
    after: Annotated[str | None, typer.Argument(help="the later point (default: now)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the changes as JSON")] = False,
) -> None:
    """Show what changed in a stream's state between two points.

    Example: chronicle diff task-7f3c 3 @1500
    """
    from eventstore import EventStore
    from eventstore.state.snapshots import PostgresSnapshotStore
    from projections.time_travel import compare

    async def work(settings: Settings, svc: Services) -> None:
        first, second = parse_target(before), parse_target(after)
        assert first is not None
        async with await EventStore.connect(svc.database_url, settings) as store:
            snapshots = await PostgresSnapshotStore.connect(svc.database_url)
            try:
                result = await compare(store, snapshots, stream, first, second)
            finally:
                await snapshots.close()
        if as_json:
            typer.echo(_json(dataclasses.asdict(result)))
            return
        typer.echo(f"{stream}: version {result.before_version} -> {result.after_version}")
        for change in result.changes:
            typer.echo(f"  {change.path}: {_json(change.before)} -> {_json(change.after)}")

    run_with_services(work)


def snapshot(stream: Annotated[str, typer.Argument(help="stream id")]) -> None:
    """Take a snapshot of a stream now (on demand), whatever the policy says.

    Example: chronicle snapshot task-7f3c
    """
    from eventstore import EventStore
    from eventstore.state.snapshots import PostgresSnapshotStore
    from projections.snapshotter import take_snapshot

    async def work(settings: Settings, svc: Services) -> None:
        async with await EventStore.connect(svc.database_url, settings) as store:
            snapshots = await PostgresSnapshotStore.connect(svc.database_url)
            try:
                taken = await take_snapshot(store, snapshots, stream)
            finally:
                await snapshots.close()
        typer.echo(f"{stream}: snapshot at version {taken.stream_version}")

    run_with_services(work)


def snapshotter(
    every_events: Annotated[
        int | None, typer.Option(help="snapshot after this many events [default: 1000]")
    ] = None,
    every_seconds: Annotated[
        float | None, typer.Option(help="snapshot active streams this often [default: never]")
    ] = None,
    every_mib: Annotated[
        float | None, typer.Option(help="snapshot after this many MiB of events [default: 10]")
    ] = None,
) -> None:
    """Run the background snapshotter until interrupted (defaults: CHRONICLE_SNAPSHOTS__*).

    Example: chronicle snapshotter --every-events 500 --every-seconds 60
    """
    from eventstore import EventStore
    from eventstore.state.snapshots import PostgresSnapshotStore
    from projections.snapshotter import Snapshotter

    async def work(settings: Settings, svc: Services) -> None:
        policy = settings.snapshots
        if every_events is not None:
            policy = dataclasses.replace(policy, every_events=every_events)
        if every_seconds is not None:
            policy = dataclasses.replace(policy, every_seconds=every_seconds)
        if every_mib is not None:
            policy = dataclasses.replace(policy, every_bytes=int(every_mib * 1024 * 1024))
        async with await EventStore.connect(svc.database_url, settings) as store:
            snapshots = await PostgresSnapshotStore.connect(svc.database_url, keep=policy.keep)
            try:
                await Snapshotter(store, snapshots, policy).run()
            finally:
                await snapshots.close()

    run_with_services(work)


def recover(
    as_json: Annotated[bool, typer.Option("--json", help="print the counts and timing as JSON")] = False,
) -> None:
    """Rebuild live agents and in-flight tasks from the log and report how long it took.

    Example: chronicle recover --json
    """
    from api.cli.progress import progress_bar
    from eventstore import EventStore
    from projections.recovery import recover

    async def work(settings: Settings, svc: Services) -> None:
        async with await EventStore.connect(svc.database_url, settings) as store:
            head = await store.head_position()
            with progress_bar("recovering (log position)") as bar:
                done = await recover(store, progress=lambda position: bar.update(position, head))
        if as_json:
            typer.echo(
                _json(
                    {
                        "agents": len(done.agents),
                        "tasks": len(done.tasks),
                        "events": done.events,
                        "position": done.position,
                        "seconds": done.seconds,
                    }
                )
            )
            return
        typer.echo(
            f"recovered {len(done.agents)} live agents and {len(done.tasks)} in-flight tasks "
            f"from {done.events} events in {done.seconds:.3f} s (log position {done.position})"
        )

    run_with_services(work)
