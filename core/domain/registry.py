"""The registry of every domain event Chronicle reads and writes, with its upcasters: agent,
task and conversation events, a data subject's forgetting, archival records, callback attempts, and a training
run's (``core.triad.events``)."""

from __future__ import annotations

from core.domain.agent.events import AGENT_EVENTS, AGENT_UPCASTERS
from core.domain.callback import CALLBACK_EVENTS
from core.domain.contracts import EventRegistry
from core.domain.conversation.events import CONVERSATION_EVENTS, CONVERSATION_UPCASTERS
from core.domain.retention import RETENTION_EVENTS, RETENTION_UPCASTERS
from core.domain.subject import SUBJECT_EVENTS, SUBJECT_UPCASTERS
from core.domain.task.events import TASK_EVENTS, TASK_UPCASTERS
from core.triad.events import RUN_EVENTS, RUN_UPCASTERS

__all__ = ["DOMAIN_EVENTS"]

DOMAIN_EVENTS = EventRegistry(
    [
        *AGENT_EVENTS,
        *TASK_EVENTS,
        *CONVERSATION_EVENTS,
        *RUN_EVENTS,
        *SUBJECT_EVENTS,
        *RETENTION_EVENTS,
        *CALLBACK_EVENTS,
    ],
    [
        *AGENT_UPCASTERS,
        *TASK_UPCASTERS,
        *CONVERSATION_UPCASTERS,
        *RUN_UPCASTERS,
        *SUBJECT_UPCASTERS,
        *RETENTION_UPCASTERS,
    ],
)
