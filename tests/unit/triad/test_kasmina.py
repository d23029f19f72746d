from __future__ import annotations

import pytest
import torch

from core.triad.contracts import (
    AdaptationCommand,
    AdjustLearningRate,
    Blueprint,
    CommandPayload,
    Fossilize,
    Germinate,
    Prune,
    SeedStage,
    SetAlphaTarget,
)
from core.triad.errors import IllegalSeedTransition, SeedCommandRejected
from core.triad.kasmina import Kasmina

from .conftest import grafted

S = SeedStage


def command(payload: CommandPayload, epoch: int = 0) -> AdaptationCommand:
    return AdaptationCommand(1, epoch, payload)


def germinate(kasmina: Kasmina, slot: int = 0, epoch: int = 0) -> None:
    kasmina.apply(command(Germinate(slot, Blueprint.RESIDUAL_MLP, blend_steps=2), epoch), epoch)


def walk_to(kasmina: Kasmina, stage: S, slot: int = 0) -> int:
    """Drive a slot along the growth path with epoch boundaries until it reaches ``stage``."""
    germinate(kasmina, slot, epoch=0)
    epoch = 0
    while kasmina.slot(slot).record.stage is not stage:
        epoch += 1
        kasmina.close_epoch()
        if kasmina.slot(slot).record.stage is S.BLENDING:
            for _ in range(2):
                kasmina.step()
        kasmina.advance(epoch)
        assert epoch < 20, "the slot never got there"
    return epoch


def host_grads(host: torch.nn.Module, kasmina: Kasmina | None, x: torch.Tensor) -> list[torch.Tensor]:
    host.zero_grad()
    if kasmina is not None:
        kasmina.zero_grad()
    host(x).pow(2).sum().backward()
    return [p.grad.clone() for p in host.parameters() if p.grad is not None]


def test_graft_puts_slots_at_the_named_points_with_their_widths() -> None:
    """Grafting learns each point's feature width from one probe pass and adds the slots."""
    _host, kasmina = grafted(per_point=3)
    assert [(s.point, s.features) for s in kasmina.all_slots()] == [("stem_act", 6)] * 3


def test_grafting_at_an_unknown_point_is_refused() -> None:
    """Naming a submodule the host does not have is an error, not a silent no-op."""
    host, _ = grafted()
    with pytest.raises(SeedCommandRejected):
        Kasmina(grafted()[1].config).graft(host, ["nowhere"], torch.zeros(1, 3))


def test_a_germinated_seed_leaves_the_host_output_unchanged() -> None:
    """Germinating, and even blending in at alpha 1, leaves the output bit-identical: the seed's
    last layer starts at zero."""
    host, kasmina = grafted()
    x = torch.randn(16, 3)
    before = host(x).detach()
    germinate(kasmina)
    assert torch.equal(host(x), before)
    walk_to_blending_at_full_alpha(kasmina)
    assert torch.equal(host(x).detach(), before)


def walk_to_blending_at_full_alpha(kasmina: Kasmina) -> None:
    record = kasmina.slot(0).record
    epoch = 0
    while record.stage is not S.BLENDING:
        epoch += 1
        kasmina.close_epoch()
        kasmina.advance(epoch)
    for _ in range(2):
        kasmina.step()
    assert kasmina.slot(0).alpha == 1.0


def test_a_training_seed_does_not_change_the_host_gradients() -> None:
    """With a seed in TRAINING, every host gradient equals the gradient with no seed at all,
    while the seed itself does receive gradient."""
    host, kasmina = grafted()
    x = torch.randn(32, 3)
    without_seed = host_grads(host, None, x)
    walk_to(kasmina, S.TRAINING)
    seed = kasmina.slot(0).seed
    assert seed is not None
    with torch.no_grad():  # make the seed non-trivial so a leak would show
        for p in seed.parameters():
            p.add_(0.5)
    with_seed = host_grads(host, kasmina, x)
    assert all(torch.equal(a, b) for a, b in zip(without_seed, with_seed, strict=True))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in seed.parameters())


def test_a_blending_seed_gets_no_gradient_path_into_the_host() -> None:
    """While blending, the seed reads detached host features: the host's gradient differs from
    the seedless one only through the changed forward value, never through the seed's input."""
    host, kasmina = grafted()
    walk_to(kasmina, S.BLENDING)
    kasmina.step()  # alpha above 0, so the seed runs
    seed = kasmina.slot(0).seed
    assert seed is not None
    features: list[torch.Tensor] = []
    handle = seed.register_forward_pre_hook(lambda _m, args: features.append(args[0]))
    host(torch.randn(4, 3)).sum().backward()
    handle.remove()
    assert not features[0].requires_grad


def test_no_cascade_one_boundary_moves_a_slot_once() -> None:
    """A slot germinated at a boundary is not advanced again at that same boundary."""
    _host, kasmina = grafted()
    germinate(kasmina, epoch=4)
    kasmina.slot(0).record.epochs_in_stage = 99  # even with dwell satisfied
    assert kasmina.advance(4) == []
    assert kasmina.slot(0).record.stage is S.GERMINATED
    with pytest.raises(IllegalSeedTransition, match="already moved"):
        kasmina.apply(command(Prune(0), 4), 4)


@pytest.mark.parametrize(
    ("stage", "payload"),
    [
        (S.DORMANT, Fossilize(0)),
        (S.DORMANT, Prune(0)),
        (S.GERMINATED, Germinate(0, Blueprint.LOW_RANK)),
        (S.GERMINATED, Fossilize(0)),
        (S.TRAINING, Fossilize(0)),
        (S.TRAINING, Germinate(0, Blueprint.LOW_RANK)),
        (S.BLENDING, Fossilize(0)),
        (S.HOLDING, Germinate(0, Blueprint.LOW_RANK)),
        (S.FOSSILIZED, Prune(0)),
        (S.FOSSILIZED, Germinate(0, Blueprint.LOW_RANK)),
    ],
    ids=lambda v: getattr(v, "name", type(v).__name__),
)
def test_kasmina_refuses_commands_the_lifecycle_forbids(stage: S, payload: CommandPayload) -> None:
    """Every command that would take an edge the lifecycle lacks is refused and changes nothing."""
    _host, kasmina = grafted()
    epoch = 0 if stage is S.DORMANT else walk_to(kasmina, S.HOLDING if stage is S.FOSSILIZED else stage)
    if stage is S.FOSSILIZED:
        kasmina.record_contribution(0, 0.5)
        kasmina.close_epoch()
        epoch += 1
        kasmina.apply(command(Fossilize(0), epoch), epoch)
    kasmina.close_epoch()
    before = kasmina.slot(0).record.stage
    with pytest.raises(IllegalSeedTransition):
        kasmina.apply(command(payload, epoch + 1), epoch + 1)
    assert kasmina.slot(0).record.stage is before


def test_fossilizing_needs_a_measured_contribution() -> None:
    """A holding seed with no contribution, or too small a one, is not fossilized; a big one is."""
    _host, kasmina = grafted()
    epoch = walk_to(kasmina, S.HOLDING) + 1
    kasmina.close_epoch()
    with pytest.raises(IllegalSeedTransition, match="no counterfactual"):
        kasmina.apply(command(Fossilize(0)), epoch)
    kasmina.record_contribution(0, 0.001)
    with pytest.raises(IllegalSeedTransition, match="under"):
        kasmina.apply(command(Fossilize(0)), epoch)
    kasmina.record_contribution(0, 0.05)
    kasmina.apply(command(Fossilize(0)), epoch)
    slot = kasmina.slot(0)
    assert slot.record.stage is S.FOSSILIZED and slot.seed is not None
    assert not any(p.requires_grad for p in slot.seed.parameters())


def test_a_pruned_slot_goes_through_embargo_and_reset_back_to_dormant() -> None:
    """Pruning frees the seed; the slot then waits out its embargo before it can germinate again."""
    _host, kasmina = grafted()
    epoch = walk_to(kasmina, S.TRAINING) + 1
    kasmina.apply(command(Prune(0)), epoch)
    assert kasmina.slot(0).seed is None and kasmina.live_count() == 0
    seen = [kasmina.slot(0).record.stage]
    while seen[-1] is not S.DORMANT:
        epoch += 1
        kasmina.close_epoch()
        kasmina.advance(epoch)
        seen.append(kasmina.slot(0).record.stage)
    stages = list(dict.fromkeys(seen))
    assert stages == [S.PRUNED, S.EMBARGOED, S.RESETTING, S.DORMANT]
    assert seen.count(S.EMBARGOED) == kasmina.config.lifecycle.dwell(S.EMBARGOED)


def test_non_seed_commands_and_unknown_slots_are_rejected() -> None:
    """Kasmina refuses commands that are not about seeds, and slots that do not exist."""
    _host, kasmina = grafted()
    with pytest.raises(SeedCommandRejected):
        kasmina.apply(command(AdjustLearningRate(0.5)), 0)
    with pytest.raises(SeedCommandRejected):
        kasmina.apply(command(Germinate(9, Blueprint.LOW_RANK)), 0)
    with pytest.raises(SeedCommandRejected):
        kasmina.apply(command(SetAlphaTarget(0, 0.5)), 0)


def test_alpha_can_be_retargeted_while_blending() -> None:
    """SetAlphaTarget changes where the ramp ends, without a stage change."""
    _host, kasmina = grafted()
    walk_to(kasmina, S.BLENDING)
    kasmina.apply(command(SetAlphaTarget(0, 0.3)), 50)
    for _ in range(5):
        kasmina.step()
    assert kasmina.slot(0).alpha == pytest.approx(0.3)
    assert kasmina.slot(0).record.stage is S.BLENDING


def test_snapshot_and_restore_rewind_a_slot_completely() -> None:
    """Restoring a snapshot brings back the stage, the alpha ramp and the seed's weights."""
    host, kasmina = grafted()
    walk_to(kasmina, S.BLENDING)
    x = torch.randn(8, 3)
    saved = kasmina.snapshot(to_host=False)
    seed = kasmina.slot(0).seed
    assert seed is not None
    with torch.no_grad():
        for p in seed.parameters():
            p.add_(1.0)
    expected_alpha = kasmina.slot(0).alpha
    kasmina.apply(command(Prune(0)), 30)
    kasmina.restore(saved)
    restored = kasmina.slot(0)
    assert restored.record.stage is S.BLENDING and restored.alpha == expected_alpha
    assert restored.seed is not None
    saved_weights = saved[0].seed_state
    assert saved_weights is not None
    live = restored.seed.state_dict()
    assert all(torch.equal(live[name], value) for name, value in saved_weights.items())
    host(x)  # still runs after the restore
