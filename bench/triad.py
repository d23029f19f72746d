"""``chronicle bench triad --json``: every figure of the training hot loop against its target.

Figures: epoch-boundary time (p50/p95/p99) with 1, 8 and 32 live seeds; state-packet encoding
(p50/p95, 32 seeds); the step thread's cost per emitted event; the emission overhead on training
steps, measured twice (interleaved on/off epochs of one run, and the step thread's emission calls
times their cost; see the section below); what keeping checkpoints behind the log costs (the
step thread's barrier call, and how long each manifest waited for the log); fast-rollback and
full-restore time for a 10M-parameter model; the events per second the flusher sustains. Each
figure carries its target and whether it was met; the run is in-process (the checkpoint and
flusher-rate figures write to the event log passed in, or to the in-memory store).
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from api.services.training_assembly import build_tolaria, select_device
from core.ports import EventLog
from core.triad.config import RunOptions, TrainingConfig
from core.triad.contracts import (
    AdaptationCommand,
    Blueprint,
    Germinate,
    HardwareContext,
    SeedStage,
    SeedState,
    SystemStatePacket,
    TelemetryPacket,
    encode_packet,
)
from core.triad.data import SpiralTask, wide_host
from core.triad.events import DecisionMade, RunEvent
from core.triad.guards import BoundaryBudget
from core.triad.kasmina import Kasmina, KasminaConfig
from core.triad.lifecycle import LifecycleConfig
from core.triad.policy import HeuristicConfig, RiskConfig
from core.triad.ports import EventSink, NullEventSink
from core.triad.rollback import capture, restore
from core.triad.tolaria import Tolaria
from eventstore import InMemoryEventStore
from eventstore.triad.checkpoints import CheckpointStore
from eventstore.triad.emission import EmissionConfig, EventBuffer, Flusher, InMemoryMetricsSink

__all__ = ["run"]

_UNLIMITED = BoundaryBudget(1e9, 1e9, 1e9, 1e9)


def _decision(command_id: int = 1) -> DecisionMade:
    """A typical lifecycle event, as the step thread emits it."""
    return DecisionMade(command_id, 1, "WAIT", {}, "policy", "")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _figure(
    name: str, measured: float, unit: str, target: float | None, lower_is_better: bool = True
) -> dict[str, Any]:
    met = None if target is None else (measured <= target if lower_is_better else measured >= target)
    return {"name": name, "measured": round(measured, 4), "unit": unit, "target": target, "met": met}


# -- epoch boundary ------------------------------------------------------------------------------


def boundary_times(seeds: int, epochs: int, device: str) -> list[float]:
    """Boundary totals (ms) for a run whose ``seeds`` slots are all live from the first epoch."""
    options = RunOptions(
        run_id=f"bench-{seeds}",
        task=SpiralTask(train_size=256, val_size=64),
        training=TrainingConfig(epochs=epochs, batch_size=256, budget=_UNLIMITED, checkpoint_every=0),
        heuristic=HeuristicConfig(max_live_seeds=seeds, plateau_epochs=10**6),
        risk=RiskConfig(max_live_seeds=seeds),
        seeds=seeds,
        device=device,
    )
    tolaria = build_tolaria(options)
    for slot in range(seeds):
        germinate = Germinate(slot, Blueprint(1 + slot % 3), blend_steps=4)
        tolaria.kasmina.apply(AdaptationCommand(0, -1, germinate), -1)
    tolaria.run()
    return list(tolaria.progress().boundary_ms["total"][2:])  # the first ones warm caches and code paths


# -- contracts and emission ----------------------------------------------------------------------


def _packet(seeds: int) -> SystemStatePacket:
    states = tuple(
        SeedState(i, SeedStage.TRAINING, Blueprint.BOTTLENECK, 0.5, 2, 4, 0.25, 0.01) for i in range(seeds)
    )
    return SystemStatePacket(3, 300, 0.5, 0.6, 0.7, 0.01, 1.2, states, HardwareContext("cpu"), time.time_ns())


def _timed_us(action: Callable[[], object], repeats: int) -> list[float]:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        action()
        timings.append((time.perf_counter_ns() - start) / 1000)
    return timings


def emit_cost_us(repeats: int = 20_000) -> list[float]:
    buffer = EventBuffer(EmissionConfig(event_capacity=repeats + 1))
    event = _decision()
    return _timed_us(lambda: buffer.emit(event), repeats)


async def flusher_rate(event_log: EventLog | None, events: int = 50_000) -> float:
    store = event_log or InMemoryEventStore()
    buffer = EventBuffer(EmissionConfig(event_capacity=8192, batch_size=1000, poll_interval_s=0.005))
    flusher = Flusher(buffer, store, f"bench{time.time_ns()}")
    await flusher.start()

    def produce() -> None:
        for i in range(events):
            buffer.emit(_decision(i))

    started = time.perf_counter()
    await asyncio.to_thread(produce)
    await flusher.close()
    return events / (time.perf_counter() - started)


# -- checkpoints waiting for the log -------------------------------------------------------------


class _TimedBarriers(EventBuffer):
    """An EventBuffer whose barriers time how long the checkpoint writer waited on them."""

    def __init__(self) -> None:
        super().__init__()
        self.waits_ms: list[float] = []

    def barrier(self) -> Callable[[], bool]:
        wait = super().barrier()

        def timed() -> bool:
            started = time.perf_counter()
            try:
                return wait()
            finally:
                self.waits_ms.append((time.perf_counter() - started) * 1000)

        return timed


async def checkpoint_log_waits(event_log: EventLog | None, epochs: int, device: str) -> list[float]:
    """How long each checkpoint's manifest waited for its epoch's events to be in the log (ms):
    the default task and flusher, a checkpoint every epoch, the event log passed in."""
    run_id = f"bench-checkpoints{time.time_ns()}"
    training = TrainingConfig(epochs=epochs, budget=_UNLIMITED)
    buffer = _TimedBarriers()
    flusher = Flusher(buffer, event_log or InMemoryEventStore(), run_id)
    with tempfile.TemporaryDirectory() as directory:
        options = RunOptions(run_id=run_id, training=training, seeds=4, device=device)
        tolaria = build_tolaria(options, sink=buffer, checkpoint_dir=Path(directory))
        await flusher.start()
        try:
            await asyncio.to_thread(tolaria.run)
        finally:
            await flusher.close()
    return buffer.waits_ms


# -- emission overhead on training steps ---------------------------------------------------------
#
# Separate runs with emission on and off measured the machine as much as the emission: on two
# shared cores their difference swung from -0.4% to +7.3% between invocations. So both conditions
# run in one process on one Tolaria (same model, same data, same thread), alternating epoch by
# epoch, and only the sink changes between segments. Adjacent segments share the machine's
# state, so the ratio within a pair cancels most of the drift; the order alternates from pair
# to pair (on-off, off-on) so that a trend cannot favour one side; the median of the pair
# ratios shrugs off the segment a neighbour's burst landed on, and p25-p75 shows the spread.
#
# An "on" segment ends only when the flusher has written everything the segment emitted, so
# the flusher's work (building event data, encoding, appending, holding the GIL) is billed to
# the segment that caused it rather than leaking into the next "off" one. That makes the paired
# figure an upper bound; ``tail_pct`` says how much of it is that final drain. The flusher
# writes to an in-memory store here whatever store the benchmark was given: its CPU work is
# what can slow a step, while waiting on a database round trip overlaps with training in a
# real run and would only bill latency to the segment.
#
# The counted figure is the independent lower bound: the step thread's own emission work (the
# emit and metric calls it made, times their measured cost) over the step time.
#
# The run is held stationary so that every epoch does the same work: its seeds are germinated
# before the first epoch and kept in TRAINING (a dwell no run reaches), the policy never
# germinates, and no checkpoints are written. Step time is the epoch's time over its steps,
# so the validation pass and the boundary are part of it, as they are of any real epoch.


@dataclass(frozen=True, slots=True)
class OverheadFigures:
    step_ms_off: float
    step_ms_on: float
    paired_p25_pct: float
    paired_median_pct: float
    paired_p75_pct: float
    median_ci95: tuple[float, float]
    pairs: int
    tail_pct: float
    counted_pct: float
    emits_per_step: float
    metrics_per_step: float
    emit_us: float
    metric_us: float


@dataclass(frozen=True, slots=True)
class _Segment:
    ms_per_step: float
    steps: int
    tail_ms: float
    total_ms: float


def _stationary_options(seeds: int, device: str) -> RunOptions:
    dwell = {**LifecycleConfig().min_dwell, SeedStage.TRAINING: 10**9}
    return RunOptions(
        run_id=f"overhead{time.time_ns()}",
        task=SpiralTask(),
        training=TrainingConfig(epochs=10**6, budget=_UNLIMITED, checkpoint_every=0),
        kasmina=KasminaConfig(lifecycle=LifecycleConfig(min_dwell=MappingProxyType(dwell))),
        heuristic=HeuristicConfig(max_live_seeds=seeds, plateau_epochs=10**9),
        risk=RiskConfig(max_live_seeds=seeds),
        seeds=seeds,
        device=device,
    )


async def step_overhead(pairs: int, device: str, *, seeds: int = 4, warmup: int = 2) -> OverheadFigures:
    """Emission overhead from ``pairs`` interleaved on/off epochs of one stationary run.

    The epochs are the default task's (32 steps of 128 points). Shorter ones would cancel more
    of the machine's noise, but a run emits a fixed handful of lifecycle events per epoch, so
    shortening the epoch inflates their share of a step: an 8-step epoch measured the same code
    at about four times the overhead.
    """
    threads = torch.get_num_threads()
    # One intra-op thread: for a model this small, more threads add only barrier waits, which a
    # busy neighbour on a shared machine turns into the noise this measurement is trying to beat.
    torch.set_num_threads(1)
    try:
        return await _interleaved(pairs, _stationary_options(seeds, device), warmup)
    finally:
        torch.set_num_threads(threads)


class _SwitchedSink:
    """The EventSink of the paired run: emission on (the flusher's buffer) or off (a null sink),
    switched between segments. Both sides pay for the one forwarding call."""

    def __init__(self, on: EventSink) -> None:
        self.on: EventSink = on
        self.current: EventSink = on

    def switch(self, emission: bool) -> None:
        self.current = self.on if emission else NullEventSink()

    def emit(self, event: RunEvent) -> None:
        self.current.emit(event)

    def metric(self, packet: TelemetryPacket) -> None:
        self.current.metric(packet)

    def barrier(self) -> Callable[[], bool]:
        return self.current.barrier()


async def _interleaved(pairs: int, options: RunOptions, warmup: int) -> OverheadFigures:
    buffer = EventBuffer()
    sink = _SwitchedSink(buffer)
    tolaria = build_tolaria(options, sink=sink)
    for slot in range(options.seeds or 0):
        germinate = Germinate(slot, Blueprint(1 + slot % 3))
        tolaria.kasmina.apply(AdaptationCommand(0, -1, germinate), -1)
    flusher = Flusher(buffer, InMemoryEventStore(), options.run_id, metrics_sink=InMemoryMetricsSink())
    await flusher.start()
    try:
        for index in range(warmup):
            await _segment(tolaria, sink, flusher, emission=index % 2 == 0)
        emitted_before = buffer.events_emitted, buffer.metrics_emitted
        off: list[_Segment] = []
        on: list[_Segment] = []
        for pair in range(pairs):
            for emission in (True, False) if pair % 2 == 0 else (False, True):
                (on if emission else off).append(await _segment(tolaria, sink, flusher, emission))
    finally:
        await flusher.close()
    steps_on = max(sum(s.steps for s in on), 1)
    calls = (
        (buffer.events_emitted - emitted_before[0]) / steps_on,
        (buffer.metrics_emitted - emitted_before[1]) / steps_on,
    )
    return _overhead_figures(off, on, calls)


async def _segment(tolaria: Tolaria, sink: _SwitchedSink, flusher: Flusher, emission: bool) -> _Segment:
    """One epoch with emission on or off; when on, it ends once the flusher has caught up."""
    sink.switch(emission)
    steps_before = tolaria.progress().global_step
    started = time.perf_counter()
    await asyncio.to_thread(tolaria.run_epoch)
    trained = time.perf_counter()
    if emission:
        await _drained(flusher)
    ended = time.perf_counter()
    steps = max(tolaria.progress().global_step - steps_before, 1)
    return _Segment(
        (ended - started) * 1000 / steps, steps, (ended - trained) * 1000, (ended - started) * 1000
    )


async def _drained(flusher: Flusher) -> None:
    """Wake the flusher and yield to it until everything emitted so far is written."""
    buffer = flusher.buffer
    if buffer.on_pressure is not None:
        buffer.on_pressure()
    # The flusher has no "caught up" signal to wait on, and this is a benchmark probe, not a
    # service path: a sleep(0) spin is the most precise wait there is here.
    while flusher.events_written < buffer.events_emitted or (  # noqa: ASYNC110
        flusher.metrics_written + flusher.metrics_failed < buffer.metrics_emitted
    ):
        await asyncio.sleep(0)


def _overhead_figures(off: list[_Segment], on: list[_Segment], calls: tuple[float, float]) -> OverheadFigures:
    """``calls``: the step thread's emit and metric calls per step while emission was on."""
    ratios = [(b.ms_per_step / a.ms_per_step - 1) * 100 for a, b in zip(off, on, strict=True)]
    emit_us, metric_us = per_call_us("emit"), per_call_us("metric")
    step_ms_on = statistics.median(s.ms_per_step for s in on)
    return OverheadFigures(
        step_ms_off=statistics.median(s.ms_per_step for s in off),
        step_ms_on=step_ms_on,
        paired_p25_pct=_pct(ratios, 0.25),
        paired_median_pct=statistics.median(ratios),
        paired_p75_pct=_pct(ratios, 0.75),
        median_ci95=_median_ci95(ratios),
        pairs=len(ratios),
        tail_pct=statistics.median(s.tail_ms / s.total_ms * 100 for s in on),
        counted_pct=(calls[0] * emit_us + calls[1] * metric_us) / (step_ms_on * 1000) * 100,
        emits_per_step=calls[0],
        metrics_per_step=calls[1],
        emit_us=emit_us,
        metric_us=metric_us,
    )


def _median_ci95(values: list[float]) -> tuple[float, float]:
    """A distribution-free 95% interval for the median: the order statistics n/2 -+ 0.98 sqrt(n)
    (the binomial rank interval), so the 1% target can be judged against the median's
    uncertainty, not just its value."""
    ordered = sorted(values)
    n = len(ordered)
    half_width = 0.98 * math.sqrt(n)
    low = max(math.floor(n / 2 - half_width), 0)
    high = min(math.ceil(n / 2 + half_width), n - 1)
    return ordered[low], ordered[high]


def per_call_us(call: str, chunks: int = 50, chunk: int = 1000) -> float:
    """Cost of one ``emit`` or ``metric`` on the step thread: the median over chunks of the mean
    over a chunk of calls. One clock read per chunk keeps the clock's own cost out of a
    sub-microsecond call; the buffer is drained between chunks, as the flusher keeps it short
    in a run, so a buffer of tens of thousands of entries does not bill the garbage collector."""
    buffer = EventBuffer()
    packet = TelemetryPacket(0, 0, (("loss", 1.0), ("grad_norm", 1.0), ("lr", 0.01)))
    event = _decision()
    means = []
    for _ in range(chunks):
        started = time.perf_counter_ns()
        if call == "emit":
            for _ in range(chunk):
                buffer.emit(event)
        else:
            for _ in range(chunk):
                buffer.metric(packet)
        means.append((time.perf_counter_ns() - started) / chunk / 1000)
        buffer.take_events(chunk)
        buffer.take_metrics(chunk)
    return statistics.median(means)


# -- rollback ------------------------------------------------------------------------------------


def rollback_times(parameters: int, device: str, repeats: int = 5) -> tuple[list[float], list[float], int]:
    """Fast restore and full (disk) restore in ms for a model of about ``parameters`` weights."""
    target = select_device(device)
    host = wide_host(parameters).to(target)
    optimizer = torch.optim.Adam(host.parameters(), lr=1e-3)
    loss = host(torch.randn(32, 64, device=target)).sum()
    loss.backward()
    optimizer.step()
    kasmina = Kasmina(KasminaConfig(), device=target)
    snapshot = capture(0, 1, host, optimizer, kasmina, {"lr": {"scale": 1.0}})
    fast = []
    for _ in range(repeats):
        started = time.perf_counter()
        restore(snapshot, host, optimizer, kasmina)
        if target.type == "cuda":
            torch.cuda.synchronize()
        fast.append((time.perf_counter() - started) * 1000)
    full = []
    with tempfile.TemporaryDirectory(prefix="chronicle-bench-") as directory:
        store = CheckpointStore(Path(directory))
        store.save(snapshot)
        for _ in range(max(repeats // 2, 2)):
            started = time.perf_counter()
            _info, loaded = store.load_latest(target)
            restore(loaded, host, optimizer, kasmina)
            if target.type == "cuda":
                torch.cuda.synchronize()
            full.append((time.perf_counter() - started) * 1000)
    return fast, full, sum(p.numel() for p in host.parameters())


# -- the whole benchmark -------------------------------------------------------------------------


def _overhead_report(o: OverheadFigures) -> list[dict[str, Any]]:
    return [
        _figure("step_ms_emission_off", o.step_ms_off, "ms", None),
        _figure("step_ms_emission_on", o.step_ms_on, "ms", None),
        _figure("emission_overhead", o.paired_median_pct, "%", 1.0),
        _figure("emission_overhead_p25", o.paired_p25_pct, "%", None),
        _figure("emission_overhead_p75", o.paired_p75_pct, "%", None),
        _figure("emission_overhead_median_ci95_low", o.median_ci95[0], "%", None),
        _figure("emission_overhead_median_ci95_high", o.median_ci95[1], "%", None),
        _figure("emission_overhead_pairs", o.pairs, "pairs", None),
        _figure("emission_overhead_flusher_tail", o.tail_pct, "%", None),
        _figure("emission_overhead_counted", o.counted_pct, "%", 1.0),
        _figure("emits_per_step", o.emits_per_step, "calls", None),
        _figure("metrics_per_step", o.metrics_per_step, "calls", None),
        _figure("emit_call_us_batched", o.emit_us, "us", None),
        _figure("metric_call_us_batched", o.metric_us, "us", None),
    ]


async def run(
    *, event_log: EventLog | None = None, device: str = "auto", quick: bool = False
) -> dict[str, Any]:
    """Every figure of the triad benchmark with its target. ``quick`` shrinks the runs (CI)."""
    resolved = str(select_device(device))
    figures: list[dict[str, Any]] = []
    epochs = 12 if quick else 40
    for seeds in (1, 8, 32):
        times = boundary_times(seeds, epochs, resolved)
        figures.append(_figure(f"boundary_p50_{seeds}_seeds", _pct(times, 0.5), "ms", None))
        figures.append(_figure(f"boundary_p95_{seeds}_seeds", _pct(times, 0.95), "ms", 5.0))
        figures.append(_figure(f"boundary_p99_{seeds}_seeds", _pct(times, 0.99), "ms", None))
    packet = _packet(32)
    encode = _timed_us(lambda: encode_packet(packet), 5000)
    figures.append(_figure("packet_encode_p50_32_seeds", _pct(encode, 0.5), "us", None))
    figures.append(_figure("packet_encode_p95_32_seeds", _pct(encode, 0.95), "us", 20.0))
    emit = emit_cost_us()
    figures.append(_figure("emit_cost_p50", _pct(emit, 0.5), "us", 5.0))
    figures.append(_figure("emit_cost_p99", _pct(emit, 0.99), "us", None))
    overhead = await step_overhead(12 if quick else 100, resolved)
    figures += _overhead_report(overhead)
    fast, full, parameters = rollback_times(2_000_000 if quick else 10_000_000, resolved)
    figures.append(_figure("fast_rollback_ms", statistics.median(fast), "ms", 100.0))
    figures.append(_figure("full_restore_ms", statistics.median(full), "ms", 12_000.0))
    barrier = _timed_us(EventBuffer().barrier, 20_000)
    figures.append(_figure("barrier_call_p50", _pct(barrier, 0.5), "us", None))
    waits = await checkpoint_log_waits(event_log, 8 if quick else 20, resolved)
    figures.append(_figure("checkpoint_log_wait_p50", _pct(waits, 0.5), "ms", None))
    figures.append(_figure("checkpoint_log_wait_p95", _pct(waits, 0.95), "ms", None))
    rate = await flusher_rate(event_log, 10_000 if quick else 50_000)
    figures.append(_figure("flusher_events_per_s", rate, "events/s", 10_000.0, lower_is_better=False))
    return {
        "benchmark": "triad",
        "device": resolved,
        "rollback_model_parameters": parameters,
        "figures": figures,
        "all_met": all(f["met"] for f in figures if f["met"] is not None),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "store": type(event_log).__name__ if event_log else "InMemoryEventStore",
            "thread": threading.current_thread().name,
        },
    }
