"""A small, fast run configuration for Tolaria tests (a few hundred points, a few epochs), and a
run that dies as its final evaluation starts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from api.services.training import train_task
from api.services.training_assembly import build_tolaria
from core.ports import EventLog
from core.triad.config import RunOptions, TrainingConfig
from core.triad.data import SpiralTask
from core.triad.guards import BoundaryBudget
from core.triad.policy import HeuristicConfig
from core.triad.ports import EventSink
from core.triad.tolaria import Tolaria

# Generous budgets: these tests check behaviour, and a timing-dependent breaker would make a
# resumed run diverge from an uninterrupted one on a busy machine.
RELAXED = BoundaryBudget(gather_ms=1e6, decide_ms=1e6, apply_ms=1e6, total_ms=1e6)


def small_options(epochs: int = 6, **training: object) -> RunOptions:
    config = TrainingConfig(epochs=epochs, batch_size=64, budget=RELAXED, metrics_window=4)
    return RunOptions(
        run_id="t1",
        task=SpiralTask(train_size=512, val_size=256),
        training=replace(config, **training),  # type: ignore[arg-type]
        heuristic=HeuristicConfig(plateau_epochs=0, embargo_epochs=1),
        slots_per_point=1,
        device="cpu",
    )


def small_run(
    sink: EventSink,
    epochs: int = 6,
    checkpoint_dir: Path | None = None,
    on_step: object = None,
    **training: object,
) -> Tolaria:
    return build_tolaria(
        small_options(epochs, **training),
        sink=sink,
        checkpoint_dir=checkpoint_dir,
        on_step=on_step,  # type: ignore[arg-type]
    )


class KilledInEvaluation(BaseException):
    """Stands in for SIGKILL during the final evaluation: no RunFailed, no RunCompleted."""


async def kill_in_final_evaluation(
    payload: dict[str, Any], store: EventLog, patch: pytest.MonkeyPatch
) -> None:
    """Run ``payload`` to its last checkpoint and die as its final evaluation starts."""

    def die(self: Tolaria, stopped: bool = False) -> None:
        raise KilledInEvaluation

    with patch.context() as patched:
        patched.setattr(Tolaria, "summary", die)
        with pytest.raises(KilledInEvaluation):
            await train_task(payload, event_log=store)
