from __future__ import annotations

import math
from dataclasses import replace

import pytest

from core.triad.contracts import (
    Blueprint,
    CommandKind,
    Fossilize,
    Germinate,
    HardwareContext,
    Outcome,
    Prune,
    RollBack,
    SeedStage,
    SeedState,
    SystemStatePacket,
    Wait,
)
from core.triad.policy import HeuristicConfig, HeuristicPolicy, Proposal, RiskConfig, RiskRules
from core.triad.tamiyo import Tamiyo

S = SeedStage


def seed(slot: int, stage: S = S.DORMANT, contribution: float | None = None, dwell: int = 1) -> SeedState:
    blueprint = None if stage is S.DORMANT else Blueprint.BOTTLENECK
    return SeedState(slot, stage, blueprint, 0.0, dwell, dwell, 0.0, contribution)


def packet(
    epoch: int, val_loss: float = 1.0, seeds: tuple[SeedState, ...] | None = None, **kw: object
) -> SystemStatePacket:
    base = SystemStatePacket(
        epoch=epoch,
        global_step=epoch * 10,
        train_loss=1.0,
        val_loss=val_loss,
        val_accuracy=0.5,
        learning_rate=0.01,
        gradient_norm=1.0,
        seeds=seeds if seeds is not None else tuple(seed(i) for i in range(3)),
        hardware=HardwareContext("cpu"),
        timestamp_ns=0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_germinates_only_after_a_plateau_of_k_epochs() -> None:
    """The heuristic waits while loss improves and germinates once it has been flat K epochs."""
    policy = HeuristicPolicy(HeuristicConfig(plateau_epochs=2))
    kinds = [policy.propose(packet(e, val_loss=v)).payload.kind for e, v in enumerate([1.0, 0.9, 0.9, 0.9])]
    assert kinds == [CommandKind.WAIT, CommandKind.WAIT, CommandKind.WAIT, CommandKind.GERMINATE]


def test_blueprints_are_chosen_round_robin() -> None:
    """Successive germinations cycle through the configured blueprints."""
    policy = HeuristicPolicy(HeuristicConfig(plateau_epochs=0, max_live_seeds=10))
    chosen = []
    for epoch in range(4):
        payload = policy.propose(packet(epoch)).payload
        assert isinstance(payload, Germinate)
        chosen.append(payload.blueprint)
    assert chosen == [
        Blueprint.RESIDUAL_MLP,
        Blueprint.BOTTLENECK,
        Blueprint.LOW_RANK,
        Blueprint.RESIDUAL_MLP,
    ]


def test_a_seed_that_hurts_is_pruned_and_growth_is_embargoed() -> None:
    """A blending seed with a negative contribution is pruned, and no germination follows until
    the embargo has passed."""
    policy = HeuristicPolicy(HeuristicConfig(plateau_epochs=0, embargo_epochs=2))
    hurting = (seed(0, S.BLENDING, contribution=-0.1), seed(1))
    assert policy.propose(packet(5, seeds=hurting)).payload == Prune(0)
    calm = (seed(0, S.PRUNED), seed(1))
    kinds = [policy.propose(packet(e, seeds=calm)).payload.kind for e in (6, 7, 8)]
    assert kinds == [CommandKind.WAIT, CommandKind.WAIT, CommandKind.GERMINATE]


def test_a_holding_seed_is_fossilized_when_it_earns_its_place_or_pruned_when_it_never_does() -> None:
    """Holding seeds over the bar are fossilized; ones that held too long under it are pruned."""
    policy = HeuristicPolicy(HeuristicConfig(max_holding_epochs=3))
    good = (seed(0, S.HOLDING, contribution=0.05),)
    assert policy.propose(packet(1, seeds=good)).payload == Fossilize(0)
    stale = (seed(0, S.HOLDING, contribution=0.0, dwell=3),)
    assert policy.propose(packet(2, seeds=stale)).payload == Prune(0)


@pytest.mark.parametrize("field", ["train_loss", "val_loss", "gradient_norm"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_signal_forces_a_rollback(field: str, value: float) -> None:
    """A NaN or infinite loss or gradient norm overrides whatever the policy proposed."""
    rules = RiskRules()
    verdict = rules.review(packet(3, **{field: value}), Proposal(Wait(), "calm"))
    assert verdict is not None and isinstance(verdict.payload, RollBack)


def test_a_loss_spike_forces_a_rollback() -> None:
    """A training loss several times the recent average is rolled back."""
    rules = RiskRules(RiskConfig(loss_spike_factor=3.0, loss_history=3))
    for epoch in range(3):
        assert rules.review(packet(epoch, train_loss=1.0), Proposal(Wait(), "")) is None
    verdict = rules.review(packet(3, train_loss=3.5), Proposal(Wait(), ""))
    assert verdict is not None and isinstance(verdict.payload, RollBack)


def test_budget_overruns_and_seed_limits_block_growth() -> None:
    """Repeated budget overruns, or the live-seed limit, turn a germination into a wait."""
    rules = RiskRules(RiskConfig(max_budget_overruns=2, max_live_seeds=1))
    grow = Proposal(Germinate(1, Blueprint.LOW_RANK), "plateau")
    overrun = rules.review(packet(1, budget_overruns=2), grow)
    assert overrun is not None and isinstance(overrun.payload, Wait)
    crowded = rules.review(packet(2, seeds=(seed(0, S.TRAINING), seed(1))), grow)
    assert crowded is not None and isinstance(crowded.payload, Wait)
    assert rules.review(packet(3), grow) is None


def test_every_decision_gets_a_field_report_one_epoch_later() -> None:
    """Each command is reported on at the next decision, with its outcome from validation loss."""
    tamiyo = Tamiyo(HeuristicPolicy(HeuristicConfig(plateau_epochs=99)))
    first = tamiyo.decide(packet(0, val_loss=1.0))
    assert first.field_reports == ()
    second = tamiyo.decide(packet(1, val_loss=0.5))
    (report,) = second.field_reports
    assert report.command_id == first.command.command_id and report.outcome is Outcome.SUCCESS
    assert (report.issued_epoch, report.observed_epoch) == (0, 1)
    (worse,) = tamiyo.decide(packet(2, val_loss=0.9)).field_reports
    assert worse.outcome is Outcome.REGRESSION


def test_a_risk_override_is_visible_in_the_decision() -> None:
    """When a rule overrides the policy, the command says so and the decision keeps the proposal."""
    tamiyo = Tamiyo()
    decision = tamiyo.decide(packet(0, train_loss=math.nan))
    assert decision.command.issued_by == "risk" and decision.overridden is not None


def test_tamiyo_state_round_trips() -> None:
    """Tamiyo's memory (command ids, pending reports, policy state) survives state_dict/load."""
    tamiyo = Tamiyo()
    for epoch in range(3):
        tamiyo.decide(packet(epoch, val_loss=1.0))
    copy = Tamiyo()
    copy.load_state_dict(tamiyo.state_dict())
    assert copy.decide(packet(3)) == tamiyo.decide(packet(3))
