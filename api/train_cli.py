"""`chronicle train` and `chronicle bench triad`: the training hot loop from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import redis.asyncio as aioredis
import typer

from api.runner import run_with_services
from core.settings import Settings
from eventstore.embedded import Services

if TYPE_CHECKING:
    from core.ports import EventLog
    from core.triad.emission import MetricsSink

__all__ = ["register"]


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command()(train)
    bench_app.command("triad")(bench_triad)


def train(
    epochs: Annotated[int | None, typer.Option(min=1, help="epochs to run [default: 40]")] = None,
    seeds: Annotated[
        int | None, typer.Option(min=0, help="seed slots grafted into the host [default: 4]")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="[default: 128]")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed: same seed, same run [default: 0]")] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="base learning rate [default: 0.03]")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    resume: Annotated[
        str | None,
        typer.Option(
            help="RUN_ID to resume from its last checkpoint, with its own options unless given "
            "(--epochs may add epochs; any other option must match the run's)"
        ),
    ] = None,
    baseline: Annotated[
        bool, typer.Option(help="also train the host alone (no seeds, same data and epochs) to compare")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Train a host that grows seeds (Tolaria-Kasmina-Tamiyo), recorded in the stream run-<id>.

    Every decision and seed transition is an event in run-<id>; per-step metrics go to Redis.
    """
    from api.train import train_task
    from eventstore import EventStore
    from eventstore.migrate import upgrade
    from eventstore.redis.metrics_stream import RedisMetricsSink

    given = {"epochs": epochs, "seeds": seeds, "batch_size": batch_size, "seed": seed, "lr": lr}
    payload: dict[str, Any] = {k: v for k, v in given.items() if v is not None} | {"device": device}
    if resume:
        payload |= {"run_id": resume, "resume": True}

    async def work(settings: Settings, svc: Services) -> dict[str, Any]:
        await upgrade(svc.database_url)
        redis = aioredis.Redis.from_url(svc.redis_url)
        try:
            async with await EventStore.connect(svc.database_url, settings) as store:
                sink, root = RedisMetricsSink(redis), settings.data_dir / "runs"
                summary = await train_task(payload, event_log=store, metrics_sink=sink, checkpoint_root=root)
                if baseline and not summary.get("already_completed"):
                    summary["host_alone"] = await _train_host_alone(payload, store, sink, root)
                return summary
        finally:
            await redis.aclose()

    summary = run_with_services(work)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    elif summary.get("already_completed"):
        epochs = summary["epochs_completed"]
        typer.echo(
            f"run {summary['run_id']} already completed {epochs} epoch{'s' if epochs != 1 else ''}; "
            f"nothing to resume (chronicle replay {summary['stream_id']} --steps shows it)"
        )
    else:
        _print_summary(summary)


async def _train_host_alone(
    payload: dict[str, Any], store: EventLog, sink: MetricsSink, root: Path
) -> dict[str, Any]:
    """The fair comparison: a host trained alone on the same data for the same epochs (a resumed
    run's own options). "Seeds forced off" measures a network that was trained with its seeds."""
    from api.run_resume import recorded_run, resume_payload
    from api.train import train_task

    if payload.get("resume"):
        stream = await store.read_stream(f"run-{payload['run_id']}")
        payload = resume_payload(payload, recorded_run(payload["run_id"], stream))
    alone = {k: v for k, v in payload.items() if k not in ("run_id", "resume")} | {"seeds": 0}
    host = await train_task(alone, event_log=store, metrics_sink=sink, checkpoint_root=root)
    return {"run_id": host["run_id"], "val_accuracy": host["val_accuracy"]}


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 110))
    table = Table(title=f"run {summary['run_id']}", show_header=False)
    table.add_row("epochs completed", str(summary["epochs_completed"]))
    table.add_row("validation accuracy with seeds", f"{summary['val_accuracy']:.4f}")
    table.add_row("validation accuracy, seeds forced off", f"{summary['val_accuracy_without_seeds']:.4f}")
    if "host_alone" in summary:
        table.add_row(
            "validation accuracy, host trained alone", f"{summary['host_alone']['val_accuracy']:.4f}"
        )
    for seed in summary["fossilized"]:
        name = f"seed {seed['slot']} ({seed['blueprint']}) fossilized, contribution"
        table.add_row(name, f"{seed['contribution']:+.4f}")
    table.add_row("final seed stages", ", ".join(f"{k}: {v}" for k, v in summary["final_stages"].items()))
    table.add_row("rollbacks / budget overruns", f"{summary['rollbacks']} / {summary['budget_overruns']}")
    # A resume with no epoch left to train (killed in its final evaluation) timed no boundary.
    boundary_p95 = summary["boundary_ms"]["total"].get("p95", "-")
    table.add_row("epoch boundary p95 (ms)", str(boundary_p95))
    emission = summary["emission"]
    table.add_row(
        "events written / dropped metrics", f"{emission['events_written']} / {emission['metrics_dropped']}"
    )
    table.add_row("stream", summary["stream_id"])
    console.print(table)
    console.print(f"replay it: chronicle replay {summary['stream_id']} --steps")


def bench_triad(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    quick: Annotated[bool, typer.Option(help="smaller runs, for a smoke test")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Epoch boundary, packet serialisation, emission cost, rollback, flusher rate, vs targets."""
    from bench.triad import run
    from eventstore import EventStore
    from eventstore.migrate import upgrade

    async def work(settings: Settings, svc: Services) -> dict[str, Any]:
        await upgrade(svc.database_url)
        async with await EventStore.connect(svc.database_url, settings) as store:
            return await run(event_log=store, device=device, quick=quick)

    result = run_with_services(work)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("figure", "measured", "unit", "target", "met")
    for f in result["figures"]:
        met = "" if f["met"] is None else ("yes" if f["met"] else "NO")
        table.add_row(f["name"], f"{f['measured']:.4g}", f["unit"], str(f["target"] or ""), met)
    Console().print(table)
