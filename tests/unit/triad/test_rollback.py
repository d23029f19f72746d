from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core.triad.contracts import SeedState
from core.triad.errors import CheckpointCorrupt, CheckpointNotPublished, NoCheckpoint
from core.triad.events import CheckpointSaved, EpochCompleted, RunFailed, RunResumed, SeedSummary
from core.triad.rollback import FastRollback, capture, restore
from eventstore.triad.checkpoints import CheckpointStore

from .conftest import RecordingSink, grafted
from .runs import small_run


class SimulatedKill(Exception):
    """Stands in for the process dying mid-epoch."""


def lifecycle(states: Sequence[SeedState | SeedSummary]) -> list[SeedSummary]:
    """Seed states as EpochCompleted records them, without the last step's gradient norm (an
    observation rather than state)."""
    summaries = [s if isinstance(s, SeedSummary) else SeedSummary.of(s) for s in states]
    return [replace(s, gradient_norm=0.0) for s in summaries]


def weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in module.state_dict().values()]


def test_fast_restore_rewinds_weights_and_optimizer_in_place() -> None:
    """Restoring a snapshot brings back host weights and optimizer moments without replacing
    the parameter tensors the optimizer refers to."""
    host, kasmina = grafted()
    optimizer = torch.optim.Adam(host.parameters(), lr=0.1)
    host(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    snapshot = capture(0, 1, host, optimizer, kasmina, {"lr": {"scale": 1.0}})
    saved, ids = weights(host), [id(p) for p in host.parameters()]
    moments = [s["exp_avg"].clone() for s in optimizer.state.values()]
    for _ in range(3):
        host(torch.randn(4, 3)).sum().backward()
        optimizer.step()
    restore(snapshot, host, optimizer, kasmina)
    assert all(torch.equal(a, b) for a, b in zip(weights(host), saved, strict=True))
    assert [id(p) for p in host.parameters()] == ids
    assert all(torch.equal(s["exp_avg"], m) for s, m in zip(optimizer.state.values(), moments, strict=True))
    optimizer.step()  # training on must not write into the snapshot
    assert torch.equal(next(iter(snapshot.host.values())), saved[0])


def test_the_fast_tier_keeps_only_the_last_k() -> None:
    """The in-memory tier holds at most K snapshots, newest last."""
    host, kasmina = grafted()
    optimizer = torch.optim.SGD(host.parameters(), lr=0.1)
    tier = FastRollback(capacity=2)
    for epoch in range(4):
        tier.remember(capture(epoch, epoch, host, optimizer, kasmina, {}))
    latest = tier.latest()
    assert len(tier) == 2 and latest is not None and latest.epoch == 3


def test_checkpoints_are_written_atomically_with_a_checksum(tmp_path: Path) -> None:
    """A saved checkpoint leaves no temporary file, is listed in the manifest with its SHA-256,
    and loads back equal; only the newest `keep` survive."""
    host, kasmina = grafted()
    optimizer = torch.optim.SGD(host.parameters(), lr=0.1)
    store = CheckpointStore(tmp_path, keep=2)
    for epoch in range(3):
        info = store.save(capture(epoch, epoch, host, optimizer, kasmina, {"x": epoch}))
    assert not list(tmp_path.glob("*.tmp"))
    assert [c.epoch for c in store.list()] == [1, 2]
    loaded_info, snapshot = store.load_latest()
    assert loaded_info == info and snapshot.controller == {"x": 2}
    assert all(torch.equal(snapshot.host[k], v) for k, v in host.state_dict().items())


def test_a_damaged_checkpoint_is_detected_and_the_previous_one_used(tmp_path: Path) -> None:
    """Flipping a byte in the newest checkpoint fails its checksum; loading falls back."""
    host, kasmina = grafted()
    optimizer = torch.optim.SGD(host.parameters(), lr=0.1)
    store = CheckpointStore(tmp_path)
    store.save(capture(0, 0, host, optimizer, kasmina, {}))
    newest = store.save(capture(1, 1, host, optimizer, kasmina, {}))
    raw = bytearray(newest.path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    newest.path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointCorrupt):
        store.load(newest)
    info, _ = store.load_latest()
    assert info.epoch == 0


def test_no_checkpoint_is_an_error(tmp_path: Path) -> None:
    """Resuming from an empty directory says so instead of starting over silently."""
    with pytest.raises(NoCheckpoint):
        CheckpointStore(tmp_path).load_latest()


def test_a_run_killed_mid_epoch_resumes_with_the_same_seed_states(tmp_path: Path) -> None:
    """Killing a run mid-epoch and resuming from its last checkpoint restores the seed states it
    had at that checkpoint, and the resumed run ends exactly where an uninterrupted one does."""
    reference_sink = RecordingSink()
    reference = small_run(reference_sink, epochs=6, checkpoint_dir=tmp_path / "reference")
    reference.run()
    states_by_epoch = {r.epoch: r.seeds for r in reference_sink.of_type(EpochCompleted)}

    def kill(epoch: int, step: int) -> None:
        if epoch == 4 and step == 3:
            raise SimulatedKill

    first = RecordingSink()
    with pytest.raises(SimulatedKill):
        small_run(first, epochs=6, checkpoint_dir=tmp_path / "run", on_step=kill).run()
    saved = first.of_type(CheckpointSaved)
    assert saved and all(len(c.sha256) == 64 for c in saved)

    second = RecordingSink()
    resumed = small_run(second, epochs=6, checkpoint_dir=tmp_path / "run")
    info = resumed.resume()
    assert lifecycle(resumed.kasmina.states()) == lifecycle(states_by_epoch[info.epoch])
    assert second.of_type(RunResumed)[0].from_epoch == info.epoch
    summary = resumed.run()
    assert summary.resumed_from_epoch == info.epoch
    assert lifecycle(resumed.kasmina.states()) == lifecycle(reference.kasmina.states())
    assert all(torch.equal(a, b) for a, b in zip(weights(resumed.host), weights(reference.host), strict=True))


def test_a_checkpoint_whose_events_never_reached_the_log_is_not_published(tmp_path: Path) -> None:
    """When the wait for the log fails, the manifest keeps naming the previous checkpoint only."""
    host, kasmina = grafted()
    optimizer = torch.optim.SGD(host.parameters(), lr=0.1)
    store = CheckpointStore(tmp_path)
    store.save(capture(0, 0, host, optimizer, kasmina, {}))
    with pytest.raises(CheckpointNotPublished):
        store.save(capture(1, 1, host, optimizer, kasmina, {}), wait_for_log=lambda: False)
    assert [c.epoch for c in store.list()] == [0]
    assert store.load_latest()[0].epoch == 0


class UnwrittenSink(RecordingSink):
    """A sink whose log never gets the events: its barrier notes what it covered and whether
    a manifest existed when the checkpoint writer started waiting, then says no."""

    def __init__(self, manifest: Path) -> None:
        super().__init__()
        self.manifest = manifest
        self.covered: list[list[str]] = []
        self.manifest_while_waiting: list[bool] = []

    def barrier(self) -> Callable[[], bool]:
        self.covered.append([e.TYPE for e in self.events])

        def wait() -> bool:
            self.manifest_while_waiting.append(self.manifest.exists())
            return False

        return wait


def test_tolaria_publishes_a_checkpoint_only_once_its_events_are_in_the_log(tmp_path: Path) -> None:
    """The barrier is taken after the boundary's EpochCompleted and the manifest waits for it;
    a barrier that fails leaves no resume point and a RunFailed saying why."""
    sink = UnwrittenSink(tmp_path / CheckpointStore.MANIFEST)
    small_run(sink, epochs=2, checkpoint_dir=tmp_path).run()
    assert [covered.count(EpochCompleted.TYPE) for covered in sink.covered] == [1, 2]
    assert sink.manifest_while_waiting == [False, False] and not sink.manifest.exists()
    assert all("not published" in f.reason for f in sink.of_type(RunFailed))
    assert len(sink.of_type(RunFailed)) == 2 and not sink.of_type(CheckpointSaved)
