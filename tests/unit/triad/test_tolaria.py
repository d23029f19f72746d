from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from api.services.training_assembly import build_tolaria
from core.triad.config import RunOptions
from core.triad.contracts import CommandKind, SystemStatePacket
from core.triad.events import (
    BudgetExceeded,
    ConservativeModeEntered,
    DecisionMade,
    EpochCompleted,
    FieldReportFiled,
    RolledBack,
    RunCompleted,
    RunStarted,
    SeedStageChanged,
)
from core.triad.guards import BoundaryBudget
from core.triad.policy import Proposal

from .conftest import RecordingSink
from .runs import small_run


def test_a_run_records_every_epoch_decision_and_transition() -> None:
    """A short run emits its start, one epoch record and one decision per epoch, the seed
    transitions, a field report for each earlier decision, per-step metrics and its end."""
    sink = RecordingSink()
    tolaria = small_run(sink, epochs=6)
    summary = tolaria.run()
    assert summary.epochs_completed == 6
    assert len(sink.of_type(RunStarted)) == 1 and len(sink.of_type(RunCompleted)) == 1
    assert [r.epoch for r in sink.of_type(EpochCompleted)] == list(range(6))
    assert len(sink.of_type(DecisionMade)) == 6
    assert len(sink.of_type(FieldReportFiled)) == 5
    assert sink.of_type(SeedStageChanged), "plateau_epochs=0 germinates at the first boundary"
    assert len(sink.metrics) == tolaria.progress().global_step == 6 * 8
    assert [m.step for m in sink.metrics] == list(range(1, 49))


def test_a_nan_is_rolled_back_to_the_last_known_good_state() -> None:
    """Poisoning the weights mid-epoch makes the loss NaN; the boundary rolls back to the last
    good snapshot, the run goes on and ends with finite weights."""
    sink = RecordingSink()

    def poison(epoch: int, step: int) -> None:
        if epoch == 2 and step == 1:
            with torch.no_grad():
                next(tolaria.host.parameters()).fill_(math.nan)

    tolaria = small_run(sink, epochs=4, on_step=poison)
    summary = tolaria.run()
    (rollback,) = sink.of_type(RolledBack)
    assert rollback.epoch == 2 and rollback.restored_epoch == 1 and rollback.tier == "fast"
    assert all(torch.isfinite(p).all() for p in tolaria.host.parameters())
    assert math.isfinite(summary.val_loss) and summary.rollbacks == 1
    assert tolaria.lr.scale == pytest.approx(0.5), "the learning rate is halved after a rollback"


class ExplodingPolicy:
    def propose(self, packet: SystemStatePacket) -> Proposal:
        raise RuntimeError("policy bug")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def test_a_failing_tamiyo_puts_the_run_in_conservative_mode_without_crashing() -> None:
    """Tamiyo raising at every boundary opens her breaker; the run completes on waits."""
    sink = RecordingSink()
    tolaria = small_run(sink, epochs=5, breaker_failures=2, breaker_cooldown_epochs=10)
    tolaria.tamiyo.policy = ExplodingPolicy()
    summary = tolaria.run()
    assert summary.epochs_completed == 5
    (entered,) = sink.of_type(ConservativeModeEntered)
    assert entered.component == "tamiyo" and entered.epoch == 1
    decisions = sink.of_type(DecisionMade)
    assert {d.issued_by for d in decisions} == {"conservative"}
    assert all(d.kind == CommandKind.WAIT.name for d in decisions)


def test_budget_overruns_are_recorded_and_trip_the_breaker() -> None:
    """A zero budget makes every boundary overrun: each is an event, and repeated decide
    overruns switch Tamiyo off."""
    sink = RecordingSink()
    zero = BoundaryBudget(gather_ms=0.0, decide_ms=0.0, apply_ms=0.0, total_ms=0.0)
    tolaria = small_run(sink, epochs=4, budget=zero, breaker_failures=2)
    summary = tolaria.run()
    parts = {o.part for o in sink.of_type(BudgetExceeded)}
    assert {"gather", "total"} <= parts
    assert summary.budget_overruns >= 4
    assert any(m.component == "tamiyo" for m in sink.of_type(ConservativeModeEntered))


def test_the_learning_rate_controller_sets_every_optimizer() -> None:
    """Host and seed optimizers all run at the controller's rate for the epoch."""
    sink = RecordingSink()
    tolaria = small_run(sink, epochs=3)
    tolaria.run()
    rate = tolaria.lr.rate(2)
    optimizers = [tolaria.optimizer, *tolaria.kasmina.optimizers()]
    assert len(optimizers) > 1
    assert all(g["lr"] == pytest.approx(rate) for o in optimizers for g in o.param_groups)


def test_a_stop_request_ends_the_run_early_and_cleanly() -> None:
    """Setting the stop event mid-epoch ends the run with a summary marked stopped."""
    sink = RecordingSink()

    def stop_soon(epoch: int, step: int) -> None:
        if epoch == 1 and step == 2:
            tolaria.stop.set()

    tolaria = small_run(sink, epochs=5, on_step=stop_soon)
    summary = tolaria.run()
    assert summary.stopped and summary.epochs_completed == 1
    assert sink.of_type(RunCompleted)[0].stopped is True


def test_on_the_default_task_fossilized_seeds_raise_validation_accuracy() -> None:
    """On the default spiral task the host is too small: seeds that get fossilized clear the
    bar, and the network is clearly more accurate with its seeds than without them."""
    sink = RecordingSink()
    tolaria = build_tolaria(RunOptions("default", slots_per_point=2, device="cpu"), sink=sink)
    summary = tolaria.run()
    assert summary.fossilized, summary
    assert all(f.contribution >= 0.005 for f in summary.fossilized)
    assert summary.val_accuracy > summary.val_accuracy_without_seeds + 0.05


def test_conservative_waits_are_numbered_and_reported_on() -> None:
    """With Tamiyo's policy failing, each conservative wait still gets its own id and a report."""
    sink = RecordingSink()
    tolaria = small_run(sink, epochs=5, breaker_failures=2, breaker_cooldown_epochs=10)
    tolaria.tamiyo.policy = ExplodingPolicy()
    tolaria.run()
    decisions = sink.of_type(DecisionMade)
    ids = [d.command_id for d in decisions]
    assert 0 not in ids and len(set(ids)) == len(ids) == 5
    reported = [r.command_id for r in sink.of_type(FieldReportFiled)]
    assert reported == ids[:-1], "every decision but the last is reported on one epoch later"


def test_a_forced_rollback_is_reported_and_the_command_it_replaced_is_not() -> None:
    """With Tamiyo unreachable, a non-finite loss replaces the conservative wait with Tolaria's
    own rollback: the rollback is reported on, the replaced wait (never applied) is not."""
    sink = RecordingSink()

    def poison(epoch: int, step: int) -> None:
        if epoch == 2 and step == 1:
            with torch.no_grad():
                next(tolaria.host.parameters()).fill_(math.nan)

    tolaria = small_run(sink, epochs=4, on_step=poison, breaker_failures=1, breaker_cooldown_epochs=10)
    tolaria.tamiyo.policy = ExplodingPolicy()
    tolaria.run()
    decisions = sink.of_type(DecisionMade)
    (forced,) = [d for d in decisions if d.issued_by == "tolaria"]
    assert forced.kind == CommandKind.ROLL_BACK.name and forced.command_id > 0
    reported = {r.command_id for r in sink.of_type(FieldReportFiled)}
    assert forced.command_id in reported
    assert reported <= {d.command_id for d in decisions}, "a report for a command that was never applied"
    assert len(reported) == len(decisions) - 1, "every decision but the last is reported on"
