"""Every read model Chronicle keeps, in the order a daemon starts them."""

from __future__ import annotations

from projections.models.agents import AgentRegistry
from projections.models.audit import AuditIndex
from projections.models.conversations import Conversations
from projections.models.runs import TrainingRuns
from projections.models.tasks import TaskBoard
from projections.runner.contract import Projection

__all__ = ["PROJECTIONS", "by_name"]

PROJECTIONS: tuple[Projection, ...] = (
    AgentRegistry(),
    TaskBoard(),
    Conversations(),
    TrainingRuns(),
    AuditIndex(),
)


def by_name(name: str) -> Projection:
    for projection in PROJECTIONS:
        if projection.name == name:
            return projection
    known = ", ".join(p.name for p in PROJECTIONS)
    raise KeyError(f"no projection named {name!r}; there are: {known}")
