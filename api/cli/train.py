"""`chronicle train`: the training hot loop from the command line, and the table
`chronicle replay run-<id> --steps` draws (``render_run_history``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import redis.asyncio as aioredis
import typer
from rich.table import Table
from rich.text import Text

from api.cli.runner import run_with_services
from core.settings import Settings, TrainingSettings
from eventstore.embedded import Services

if TYPE_CHECKING:
    from core.ports import EventLog
    from core.triad.ports import MetricsSink
    from projections.run_history import Checkpoint, EpochDecision, EpochRow, Rollback, SeedAfterEpoch

__all__ = ["render_run_history", "train"]

_DEFAULTS = TrainingSettings()  # what the help shows; CHRONICLE_TRAINING__* may override them


def train(
    epochs: Annotated[
        int | None, typer.Option(min=1, help=f"epochs to run [default: {_DEFAULTS.epochs}]")
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(min=0, help=f"seed slots grafted into the host [default: {_DEFAULTS.seeds}]")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help=f"[default: {_DEFAULTS.batch_size}]")] = None,
    seed: Annotated[
        int | None, typer.Option(help=f"random seed: same seed, same run [default: {_DEFAULTS.seed}]")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(min=0.0, help=f"base learning rate [default: {_DEFAULTS.learning_rate}]")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help=f"auto, cpu or cuda [default: {_DEFAULTS.device}]")
    ] = None,
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

    Example: chronicle train --epochs 3 --seeds 2 --device cpu --baseline
    """
    from api.services.training import train_task
    from eventstore import EventStore
    from eventstore.migrate import upgrade
    from eventstore.redis.metrics_stream import RedisMetricsSink

    given = {"epochs": epochs, "seeds": seeds, "batch_size": batch_size, "seed": seed, "lr": lr}
    payload: dict[str, Any] = {k: v for k, v in (given | {"device": device}).items() if v is not None}
    if resume:
        payload |= {"run_id": resume, "resume": True}

    async def work(settings: Settings, svc: Services) -> dict[str, Any]:
        await upgrade(svc.database_url)
        redis = aioredis.Redis.from_url(svc.redis_url)
        try:
            async with await EventStore.connect(svc.database_url, settings) as store:
                sink, root = RedisMetricsSink(redis), settings.data_dir / "runs"
                summary = await train_task(
                    payload,
                    event_log=store,
                    metrics_sink=sink,
                    checkpoint_root=root,
                    defaults=settings.training,
                )
                if baseline and not summary.get("already_completed"):
                    summary["host_alone"] = await _train_host_alone(payload, store, sink, root, settings)
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
    payload: dict[str, Any], store: EventLog, sink: MetricsSink, root: Path, settings: Settings
) -> dict[str, Any]:
    """The fair comparison: a host trained alone on the same data for the same epochs (a resumed
    run's own options). "Seeds forced off" measures a network that was trained with its seeds."""
    from api.services.run_resume import resume_payload
    from api.services.training import recorded_run_of, train_task

    if payload.get("resume"):
        payload = resume_payload(payload, await recorded_run_of(payload["run_id"], store))
    alone = {k: v for k, v in payload.items() if k not in ("run_id", "resume")} | {"seeds": 0}
    host = await train_task(
        alone, event_log=store, metrics_sink=sink, checkpoint_root=root, defaults=settings.training
    )
    return {"run_id": host["run_id"], "val_accuracy": host["val_accuracy"]}


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console

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


# -- a run epoch by epoch (chronicle replay run-<id> --steps) -----------------------------------


def render_run_history(rows: Sequence[EpochRow], *, title: str | None = None) -> Table:
    """The rows as a rich table; the attempt and train-accuracy columns appear only when used."""
    show_attempt = any(r.attempt > 1 for r in rows)
    show_train_accuracy = any(r.train_accuracy is not None for r in rows)
    table = Table(title=title)
    table.add_column("epoch", justify="right")
    if show_attempt:
        table.add_column("attempt", justify="right")
    table.add_column("train loss", justify="right")
    if show_train_accuracy:
        table.add_column("train acc", justify="right")
    for name in ("val loss", "val acc"):
        table.add_column(name, justify="right")
    for name in ("decision", "outcome", "seeds after the epoch", "rollback", "checkpoint", "notes"):
        table.add_column(name)
    for row in rows:
        cells = [str(row.epoch)]
        if show_attempt:
            cells.append(str(row.attempt))
        cells.append(_number(row.train_loss))
        if show_train_accuracy:
            cells.append(_number(row.train_accuracy))
        cells += [_number(row.val_loss), _number(row.val_accuracy)]
        cells += [_decision_text(row.decision), _outcome_text(row.decision), _seeds_text(row.seeds)]
        cells += [_rollbacks_text(row.rollbacks), _checkpoint_text(row.checkpoint), _notes_text(row)]
        table.add_row(*(Text(cell) for cell in cells))  # plain text: a reason may hold [brackets]
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _decision_text(decision: EpochDecision | None) -> str:
    if decision is None:
        return "-"
    arguments = " ".join(f"{k}={v}" for k, v in decision.arguments)
    text = f"{decision.kind} {arguments}".rstrip()
    if decision.issued_by != "policy":  # an override is the interesting part of the row
        text += f"\n[{decision.issued_by}] {decision.reason}"
    if decision.rejected:
        text += f"\nrefused: {decision.rejected}"
    return text


def _outcome_text(decision: EpochDecision | None) -> str:
    return "-" if decision is None or decision.outcome is None else decision.outcome


def _seeds_text(seeds: Sequence[SeedAfterEpoch]) -> str:
    lines = []
    for seed in seeds:
        stage = seed.stage if seed.moved_from is None else f"{seed.moved_from}->{seed.stage}"
        line = f"{seed.slot}: {stage}"
        if seed.alpha:
            line += f" a={seed.alpha:.2f}"
        if seed.contribution is not None:
            line += f" {seed.contribution:+.3f}"
        lines.append(line)
    return "\n".join(lines) or "-"


def _rollbacks_text(rollbacks: Sequence[Rollback]) -> str:
    texts = [f"{r.tier} to epoch {r.restored_epoch}: {r.reason}" for r in rollbacks]
    return "\n".join(texts) or "-"


def _checkpoint_text(checkpoint: Checkpoint | None) -> str:
    return "-" if checkpoint is None else f"{checkpoint.file} {checkpoint.sha256[:12]}"


def _notes_text(row: EpochRow) -> str:
    notes = [f"over budget: {o.part} {o.elapsed_ms:.2f}/{o.budget_ms:g} ms" for o in row.overruns]
    for switch in row.mode_switches:
        verb = "entered" if switch.entered else "left"
        notes.append(f"{switch.component} {verb} conservative mode: {switch.reason}")
    notes += [f"failed: {reason}" for reason in row.failures]
    if row.resumed_here:
        notes.append("resumed from this checkpoint")
    if not row.completed:
        notes.append("epoch not completed")
    return "\n".join(notes) or "-"
