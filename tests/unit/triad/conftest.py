"""Small builders shared by the triad tests: a tiny host, a Kasmina grafted on it, a sink that
records what the step thread emitted."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import pytest
import torch
from torch import nn

from core.triad.contracts import TelemetryPacket
from core.triad.events import RunEvent
from core.triad.kasmina import Kasmina, KasminaConfig
from core.triad.ports import already_recorded

E = TypeVar("E")


class RecordingSink:
    """An EventSink that keeps everything, for asserting on what a run emitted."""

    def __init__(self) -> None:
        self.events: list[RunEvent] = []
        self.metrics: list[TelemetryPacket] = []

    def emit(self, event: RunEvent) -> None:
        self.events.append(event)

    def metric(self, packet: TelemetryPacket) -> None:
        self.metrics.append(packet)

    def barrier(self) -> Callable[[], bool]:
        return already_recorded  # kept in memory the moment it is emitted

    def of_type(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # The machine is shared; one intra-op thread keeps tiny models fast and timings stable.
    torch.set_num_threads(1)


def tiny_host(width: int = 6) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            stem=nn.Linear(3, width),
            stem_act=nn.ReLU(),
            head=nn.Linear(width, 2),
        )
    )


def grafted(per_point: int = 1, config: KasminaConfig | None = None) -> tuple[nn.Sequential, Kasmina]:
    host = tiny_host()
    kasmina = Kasmina(config or KasminaConfig(), run_seed=7)
    kasmina.graft(host, ["stem_act"], torch.zeros(2, 3), per_point=per_point)
    return host, kasmina
