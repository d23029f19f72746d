"""Wiring one run together: task, host, slots, Tamiyo, Tolaria, on the right device.

Kept apart from the three components so each stays testable with hand-made parts, and so the
API layer (``api/train.py``) and the benchmark build runs the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.errors import InvalidInput
from core.triad.data import HOST_POINTS, SpiralTask, default_host, make_dataset
from core.triad.emission import EventSink
from core.triad.kasmina import Kasmina, KasminaConfig
from core.triad.rollback import CheckpointStore
from core.triad.tamiyo import HeuristicConfig, HeuristicPolicy, RiskConfig, RiskRules, Tamiyo
from core.triad.tolaria import Tolaria, TrainingConfig

__all__ = ["RunOptions", "build_tolaria", "check_device", "select_device"]


@dataclass(frozen=True, slots=True)
class RunOptions:
    run_id: str
    task: SpiralTask = field(default_factory=SpiralTask)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    kasmina: KasminaConfig = field(default_factory=KasminaConfig)
    heuristic: HeuristicConfig = field(default_factory=HeuristicConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    points: tuple[str, ...] = HOST_POINTS
    slots_per_point: int = 1
    seeds: int | None = None  # total slots spread over the points; overrides slots_per_point
    device: str = "auto"

    def slot_counts(self) -> list[int]:
        if self.seeds is None:
            return [self.slots_per_point] * len(self.points)
        share, extra = divmod(self.seeds, len(self.points))
        return [share + (1 if i < extra else 0) for i in range(len(self.points))]


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
    checkpoints = CheckpointStore(checkpoint_dir) if checkpoint_dir is not None else None
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
    )
