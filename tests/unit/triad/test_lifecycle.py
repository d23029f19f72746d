from __future__ import annotations

import itertools

import pytest

from core.triad.contracts import AlphaCurve, SeedStage
from core.triad.lifecycle import EDGES, AlphaSchedule, GateFacts, LifecycleConfig, alpha_at, gate

S = SeedStage
CONFIG = LifecycleConfig()
RIPE = GateFacts(epochs_in_stage=99, alpha_complete=True, contribution=1.0)
ILLEGAL = [(a, b) for a, b in itertools.product(SeedStage, SeedStage) if b not in EDGES[a]]


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=lambda s: s.name)
def test_every_edge_not_in_the_table_is_refused(current: SeedStage, target: SeedStage) -> None:
    """A transition the lifecycle does not define is refused even when every fact is favourable."""
    verdict = gate(current, target, RIPE, CONFIG)
    assert not verdict.allowed
    assert "no edge" in verdict.reason


def test_the_table_has_exactly_the_documented_edges() -> None:
    """Growth runs DORMANT to FOSSILIZED, failure runs PRUNED back to DORMANT, nothing else."""
    edges = {(a, b) for a, targets in EDGES.items() for b in targets}
    growth = [S.DORMANT, S.GERMINATED, S.TRAINING, S.BLENDING, S.HOLDING, S.FOSSILIZED]
    failure = [S.PRUNED, S.EMBARGOED, S.RESETTING, S.DORMANT]
    expected = set(itertools.pairwise(growth)) | set(itertools.pairwise(failure))
    expected |= {(s, S.PRUNED) for s in (S.GERMINATED, S.TRAINING, S.BLENDING, S.HOLDING)}
    assert edges == expected


DWELLING = [(a, b) for a, t in EDGES.items() for b in t if b is not S.PRUNED and CONFIG.dwell(a) > 0]


@pytest.mark.parametrize(("current", "target"), DWELLING, ids=lambda s: s.name)
def test_every_legal_edge_waits_for_its_minimum_dwell(current: SeedStage, target: SeedStage) -> None:
    """No edge but pruning opens before the stage's minimum dwell in epochs has passed."""
    dwell = CONFIG.dwell(current)
    early = GateFacts(epochs_in_stage=dwell - 1, alpha_complete=True, contribution=1.0)
    assert not gate(current, target, early, CONFIG).allowed
    assert gate(current, target, GateFacts(dwell, True, 1.0), CONFIG).allowed


def test_pruning_a_live_seed_needs_no_dwell() -> None:
    """Pruning is always open to a live seed, even in its first epoch."""
    for stage in (S.GERMINATED, S.TRAINING, S.BLENDING, S.HOLDING):
        assert gate(stage, S.PRUNED, GateFacts(0), CONFIG).allowed


def test_blending_ends_only_when_alpha_reaches_its_target() -> None:
    """BLENDING -> HOLDING is refused while the alpha ramp is unfinished."""
    assert not gate(S.BLENDING, S.HOLDING, GateFacts(5, alpha_complete=False), CONFIG).allowed


@pytest.mark.parametrize("contribution", [None, 0.0, 0.004, float("nan"), -0.5])
def test_fossilizing_needs_a_contribution_over_the_threshold(contribution: float | None) -> None:
    """A seed is fossilized only when its measured counterfactual contribution clears the bar."""
    facts = GateFacts(epochs_in_stage=5, contribution=contribution)
    assert not gate(S.HOLDING, S.FOSSILIZED, facts, CONFIG).allowed
    assert gate(S.HOLDING, S.FOSSILIZED, GateFacts(5, contribution=0.006), CONFIG).allowed


@pytest.mark.parametrize("curve", list(AlphaCurve))
def test_every_curve_ramps_monotonically_from_0_to_1(curve: AlphaCurve) -> None:
    """Each alpha curve starts at exactly 0, ends at exactly 1 and never goes down."""
    values = [alpha_at(curve, i / 20) for i in range(21)]
    assert values[0] == pytest.approx(0.0, abs=1e-12) and values[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in itertools.pairwise(values))


def test_a_schedule_reaches_its_target_after_its_steps() -> None:
    """An alpha schedule advanced `steps` times is complete and at its target; retargeting ramps on."""
    schedule = AlphaSchedule(AlphaCurve.LINEAR, steps=4, target=0.8)
    for _ in range(4):
        assert not schedule.complete
        schedule = schedule.advanced()
    assert schedule.complete and schedule.value == pytest.approx(0.8)
    lowered = schedule.retargeted(0.4)
    assert lowered.value == pytest.approx(0.8) and lowered.advanced().value == pytest.approx(0.4)
