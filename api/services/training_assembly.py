"""Wiring one run together: task, host, slots, Tamiyo, checkpoints and Tolaria, on a device.

This is where the training loop meets the machine: which device a run uses (CUDA when asked for
"auto" and one is present), how much accelerator memory it holds (the memory probe Tolaria puts
in each state packet), and where its checkpoints go (``eventstore.triad.checkpoints``). core's
triad is handed all of it and probes nothing itself. The training use case
(``api/services/training.py``) and the benchmark build runs the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from core.errors import InvalidInput
from core.triad.config import RunOptions
from core.triad.data import default_host, make_dataset
from core.triad.kasmina import Kasmina
from core.triad.policy import HeuristicPolicy, RiskRules
from core.triad.ports import EventSink, MemoryProbe, no_accelerator_memory
from core.triad.tamiyo import Tamiyo
from core.triad.tolaria import Tolaria
from eventstore.triad.checkpoints import CheckpointStore, CheckpointWriter

__all__ = ["build_tolaria", "check_device", "memory_probe", "select_device"]


def check_device(value: object) -> str:
    """A device name a run can use here: auto, cpu, cuda or cuda:N (a CUDA device must exist)."""
    text = str(value)
    if text in ("auto", "cpu"):
        return text
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        index = int(text[5:]) if ":" in text else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise InvalidInput(f"device {text!r}: no such CUDA device on this machine")
        return text
    raise InvalidInput(f"device {text!r}: use auto, cpu, cuda or cuda:N")


def select_device(preference: str = "auto") -> torch.device:
    """CUDA when asked for "auto" and one is present, otherwise what was asked for."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def memory_probe(device: torch.device) -> MemoryProbe:
    """Accelerator memory allocated on ``device``, in MB; 0 on a CPU."""
    if device.type != "cuda":
        return no_accelerator_memory
    return lambda: torch.cuda.memory_allocated(device) / 1e6


def build_tolaria(
    options: RunOptions,
    *,
    sink: EventSink | None = None,
    checkpoint_dir: Path | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> Tolaria:
    device = select_device(options.device)
    dataset = make_dataset(options.task).to(device)
    host = default_host(dataset.features, options.task.host_width, dataset.classes, options.training.seed)
    host = host.to(device)
    kasmina = Kasmina(options.kasmina, run_seed=options.training.seed, device=device)
    for point, count in zip(options.points, options.slot_counts(), strict=True):
        if count:
            kasmina.graft(host, [point], dataset.val_x[:2], per_point=count)
    tamiyo = Tamiyo(HeuristicPolicy(options.heuristic), RiskRules(options.risk))
    checkpoints = None
    if checkpoint_dir is not None:
        checkpoints = CheckpointWriter(CheckpointStore(checkpoint_dir), name=f"checkpoint-{options.run_id}")
    return Tolaria(
        options.run_id,
        host,
        dataset,
        kasmina,
        tamiyo,
        options.training,
        sink=sink,
        checkpoints=checkpoints,
        on_step=on_step,
        memory_probe=memory_probe(device),
    )
