"""The training use case: ``run_training`` (run or resume one run) and the ``train`` task handler.

It builds the run (``training_assembly``), starts the flusher on this event loop, runs Tolaria
in a worker thread (training is CPU/GPU-bound and must not block the loop the flusher and the
rest of the process live on), and always drains the buffer before returning, so every
lifecycle event emitted before the end is in the log. Checkpoints are written on one more
thread, which waits for the flusher before publishing each one.

A payload's options not given take their defaults from ``TrainingSettings`` (``Settings.training``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from api.services.run_resume import RecordedRun, recorded_run, resume_payload
from api.services.training_assembly import build_tolaria, check_device
from core.errors import InvalidInput
from core.events import uuid7
from core.ports import EventLog
from core.settings import TrainingSettings
from core.triad.config import RunOptions, TrainingConfig
from core.triad.events import RunFailed, run_stream_id
from core.triad.learning_rate import LearningRateSchedule
from core.triad.policy import HeuristicConfig, RiskConfig
from core.triad.ports import MetricsSink
from core.triad.reporting import RunSummary
from core.triad.tolaria import Tolaria
from eventstore.triad.emission import EmissionConfig, EventBuffer, Flusher

__all__ = ["options_from_payload", "recorded_run_of", "run_training", "train_task"]

_KNOWN = {"run_id", "epochs", "seeds", "batch_size", "seed", "lr", "device", "checkpoint_every", "resume"}


def options_from_payload(payload: Mapping[str, Any], defaults: TrainingSettings | None = None) -> RunOptions:
    """A task payload (or CLI flags) as run options; unknown keys are refused, not ignored.
    Options left out take ``defaults`` (``TrainingSettings()`` when not given)."""
    unknown = set(payload) - _KNOWN - {"checkpoint_dir", "tenant_id"}
    if unknown:
        raise InvalidInput(f"unknown train options {sorted(unknown)}; known: {sorted(_KNOWN)}")
    given = defaults or TrainingSettings()
    epochs = int(payload.get("epochs", given.epochs))
    seeds = int(payload.get("seeds", given.seeds))
    rate = float(payload.get("lr", given.learning_rate))
    training = TrainingConfig(
        epochs=epochs,
        batch_size=int(payload.get("batch_size", given.batch_size)),
        seed=int(payload.get("seed", given.seed)),
        checkpoint_every=int(payload.get("checkpoint_every", given.checkpoint_every)),
        learning_rate=LearningRateSchedule(base=rate, total_epochs=epochs),
    )
    return RunOptions(
        run_id=str(payload.get("run_id") or uuid7().hex),
        training=training,
        heuristic=HeuristicConfig(max_live_seeds=max(seeds, 1)),
        risk=RiskConfig(max_live_seeds=max(seeds, 1)),
        seeds=seeds,
        device=check_device(payload.get("device", given.device)),
    )


async def run_training(
    options: RunOptions,
    *,
    event_log: EventLog,
    metrics_sink: MetricsSink | None = None,
    checkpoint_root: Path,
    resume: bool = False,
    tenant_id: str | None = None,
    emission: EmissionConfig | None = None,
) -> dict[str, Any]:
    """Run (or resume) ``options.run_id``; events go to its run stream. Returns the summary
    (accuracy with and without seeds, each fossilized seed's contribution) plus emission stats.
    ``resume`` trusts the caller to have checked the run's options (``train_task`` does).

    Cancelling the awaiting task asks Tolaria to stop at the next step and waits for it.
    """
    buffer = EventBuffer(emission)
    metadata = {"run_id": options.run_id, **({"tenant_id": tenant_id} if tenant_id else {})}
    flusher = Flusher(buffer, event_log, options.run_id, metrics_sink=metrics_sink, metadata=metadata)
    tolaria = build_tolaria(options, sink=buffer, checkpoint_dir=checkpoint_root / options.run_id)
    await flusher.start()
    try:
        if resume:
            tolaria.resume()
        summary = await _run_in_thread(tolaria)
    except Exception as exc:
        buffer.emit(RunFailed(tolaria.progress().epoch, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        await flusher.close()
    return {
        **summary.to_data(),
        "stream_id": flusher.stream_id,
        "emission": dataclasses.asdict(flusher.stats()),
    }


async def _run_in_thread(tolaria: Tolaria) -> RunSummary:
    future = asyncio.get_running_loop().run_in_executor(None, tolaria.run)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        tolaria.stop.set()
        await future
        raise


async def train_task(
    payload: Mapping[str, Any],
    *,
    event_log: EventLog,
    metrics_sink: MetricsSink | None = None,
    checkpoint_root: Path | None = None,
    defaults: TrainingSettings | None = None,
) -> dict[str, Any]:
    """The ``train`` task handler: a payload dict in, the run summary out.

    Payload keys: run_id, epochs, seeds, batch_size, seed, lr, device, checkpoint_dir,
    checkpoint_every, tenant_id, and resume (true: continue ``run_id`` from its last checkpoint,
    with the run's own options for those left out; see ``run_resume``). Resuming a run that
    already completed returns its recorded summary (``already_completed: true``) and appends
    nothing. Options neither given nor the run's own come from ``defaults``.
    """
    resume = bool(payload.get("resume", False))
    if resume:
        run = await _recorded_run(payload, event_log)
        payload = resume_payload(payload, run)
        if run.finished(int(payload["epochs"])):
            return run.summary()
    options = options_from_payload(payload, defaults)
    root = Path(payload["checkpoint_dir"]) if "checkpoint_dir" in payload else checkpoint_root
    if root is None:
        raise InvalidInput("a training run needs a checkpoint directory: give checkpoint_dir")
    return await run_training(
        options,
        event_log=event_log,
        metrics_sink=metrics_sink,
        checkpoint_root=root,
        resume=resume,
        tenant_id=payload.get("tenant_id"),
    )


async def recorded_run_of(run_id: str, event_log: EventLog) -> RecordedRun:
    """What the run's stream says about it (raises InvalidInput if it never started)."""
    return recorded_run(run_id, await event_log.read_stream(run_stream_id(run_id)))


async def _recorded_run(payload: Mapping[str, Any], event_log: EventLog) -> RecordedRun:
    run_id = payload.get("run_id")
    if not run_id:
        raise InvalidInput("resume needs the run_id of the run to continue")
    return await recorded_run_of(str(run_id), event_log)
