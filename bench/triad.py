"""``chronicle bench triad --json``: every figure of the training hot loop against its target.

Figures: epoch-boundary time (p50/p95/p99) with 1, 8 and 32 live seeds; state-packet encoding
(p50/p95, 32 seeds); the step thread's cost per emitted event; training step time with emission
on and off; fast-rollback and full-restore time for a 10M-parameter model; the events per second
the flusher sustains. Each figure carries its target and whether it was met; the run is
in-process (the flusher writes to the in-memory store unless an event log is passed in).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from core.ports import EventLog
from core.triad import run_events as ev
from core.triad.assembly import RunOptions, build_tolaria, select_device
from core.triad.contracts import (
    AdaptationCommand,
    Blueprint,
    Germinate,
    HardwareContext,
    SeedStage,
    SeedState,
    SystemStatePacket,
    encode_packet,
)
from core.triad.data import SpiralTask, wide_host
from core.triad.emission import EmissionConfig, EventBuffer, Flusher, NullEventSink
from core.triad.guards import BoundaryBudget
from core.triad.kasmina import Kasmina, KasminaConfig
from core.triad.rollback import CheckpointStore, capture, restore
from core.triad.tamiyo import HeuristicConfig, RiskConfig
from core.triad.tolaria import TrainingConfig
from eventstore import InMemoryEventStore

__all__ = ["run"]

_UNLIMITED = BoundaryBudget(1e9, 1e9, 1e9, 1e9)


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
    return tolaria.boundary_ms["total"][2:]  # the first boundaries warm caches and code paths


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
    payload = {"epoch": 1}
    return _timed_us(lambda: buffer.emit(ev.DECISION_MADE, payload), repeats)


async def flusher_rate(event_log: EventLog | None, events: int = 50_000) -> float:
    store = event_log or InMemoryEventStore()
    buffer = EventBuffer(EmissionConfig(event_capacity=8192, batch_size=1000, poll_interval_s=0.005))
    flusher = Flusher(buffer, store, f"bench{time.time_ns()}")
    await flusher.start()

    def produce() -> None:
        for i in range(events):
            buffer.emit(ev.DECISION_MADE, {"n": i})

    started = time.perf_counter()
    await asyncio.to_thread(produce)
    await flusher.close()
    return events / (time.perf_counter() - started)


# -- emission overhead on training steps ---------------------------------------------------------


async def step_overhead(epochs: int, device: str, rounds: int = 3) -> tuple[float, float]:
    """Mean step time (ms) with emission off and on; alternating rounds, best of each."""
    off: list[float] = []
    on: list[float] = []
    for _ in range(rounds):
        off.append(await _step_time(False, epochs, device))
        on.append(await _step_time(True, epochs, device))
    return min(off), min(on)


async def _step_time(emission: bool, epochs: int, device: str) -> float:
    options = RunOptions(
        run_id=f"overhead{time.time_ns()}",
        training=TrainingConfig(epochs=epochs, budget=_UNLIMITED, checkpoint_every=0),
        seeds=4,
        device=device,
    )
    buffer = EventBuffer() if emission else None
    flusher = Flusher(buffer, InMemoryEventStore(), options.run_id) if buffer else None
    tolaria = build_tolaria(options, sink=buffer or NullEventSink())
    if flusher:
        await flusher.start()
    started = time.perf_counter()
    await asyncio.to_thread(tolaria.run)
    elapsed = time.perf_counter() - started
    if flusher:
        await flusher.close()
    return elapsed * 1000 / max(tolaria.global_step, 1)


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
    off, on = await step_overhead(3 if quick else 8, resolved, rounds=2 if quick else 3)
    figures.append(_figure("step_ms_emission_off", off, "ms", None))
    figures.append(_figure("step_ms_emission_on", on, "ms", None))
    figures.append(_figure("emission_overhead", (on - off) / off * 100, "%", 1.0))
    fast, full, parameters = rollback_times(2_000_000 if quick else 10_000_000, resolved)
    figures.append(_figure("fast_rollback_ms", statistics.median(fast), "ms", 100.0))
    figures.append(_figure("full_restore_ms", statistics.median(full), "ms", 12_000.0))
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
