"""The agent state machine, given/when/then: every allowed and every refused transition."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.domain import AGENT, IllegalTransition, InvalidCommand
from core.domain.agent import (
    AgentBeliefsUpdated,
    AgentDeregistered,
    AgentFailed,
    AgentRecovered,
    AgentRegistered,
    AgentStatus,
    AgentWentOffline,
    AgentWentOnline,
    Beliefs,
    BringAgentOnline,
    DeregisterAgent,
    MarkAgentFailed,
    RecoverAgent,
    RegisterAgent,
    TakeAgentOffline,
    UpdateAgentBeliefs,
)
from tests.unit.domain.spec import Spec

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ID = "a1"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64

OFFLINE = [AgentRegistered(ID, "planner", ("plan", "search"), T0)]
ONLINE = [*OFFLINE, AgentWentOnline(ID, T0)]
FAILED = [*ONLINE, AgentFailed(ID, "heartbeat lost", T0)]
DEREGISTERED = [*OFFLINE, AgentDeregistered(ID, "retired", T0)]

S = AgentStatus
HISTORY = {
    S.UNREGISTERED: [],
    S.OFFLINE: OFFLINE,
    S.ONLINE: ONLINE,
    S.FAILED: FAILED,
    S.DEREGISTERED: DEREGISTERED,
}

COMMANDS = {
    "RegisterAgent": RegisterAgent(ID, "planner", ("plan",), T0),
    "BringAgentOnline": BringAgentOnline(ID, T0),
    "TakeAgentOffline": TakeAgentOffline(ID, T0),
    "MarkAgentFailed": MarkAgentFailed(ID, "crash", T0),
    "RecoverAgent": RecoverAgent(ID, T0),
    "UpdateAgentBeliefs": UpdateAgentBeliefs(ID, DIGEST_B, 10, T0),
    "DeregisterAgent": DeregisterAgent(ID, "retired", T0),
}

# Written out here, independently of the decider's own table, so a change to either shows.
EXPECTED_ALLOWED = {
    "RegisterAgent": {S.UNREGISTERED},
    "BringAgentOnline": {S.OFFLINE},
    "TakeAgentOffline": {S.ONLINE},
    "MarkAgentFailed": {S.ONLINE},
    "RecoverAgent": {S.FAILED},
    "UpdateAgentBeliefs": {S.OFFLINE, S.ONLINE},
    "DeregisterAgent": {S.OFFLINE, S.ONLINE, S.FAILED},
}

REFUSED = [(s, n) for n, allowed in EXPECTED_ALLOWED.items() for s in AgentStatus if s not in allowed]
ALLOWED = [(s, n) for n, allowed in EXPECTED_ALLOWED.items() for s in allowed]


def agent() -> Spec:
    return Spec(AGENT)


def test_histories_reach_their_status() -> None:
    """Each given history folds to the status it is filed under."""
    for status, history in HISTORY.items():
        assert AGENT.fold(history).status is status


@pytest.mark.parametrize(("status", "name"), REFUSED, ids=[f"{s.value}-{n}" for s, n in REFUSED])
def test_refused_transition_names_state_and_command(status: AgentStatus, name: str) -> None:
    """A command outside its allowed statuses raises IllegalTransition naming status and command."""
    agent().given(HISTORY[status]).when(COMMANDS[name]).then_raises(
        IllegalTransition, state=status.value, command=name, aggregate="agent", aggregate_id=ID
    )


@pytest.mark.parametrize(("status", "name"), ALLOWED, ids=[f"{s.value}-{n}" for s, n in ALLOWED])
def test_allowed_transition_records_one_event(status: AgentStatus, name: str) -> None:
    """A command inside its allowed statuses records exactly one event."""
    assert len(AGENT.decide(COMMANDS[name], AGENT.fold(HISTORY[status]))) == 1


def test_register_sorts_and_deduplicates_capabilities() -> None:
    """Registering records the capabilities sorted and once each; the agent starts offline."""
    state = (
        agent()
        .when(RegisterAgent(ID, "planner", ("search", "plan", "search"), T0))
        .then(AgentRegistered(ID, "planner", ("plan", "search"), T0))
    )
    assert (state.status, state.capabilities, state.name) == (S.OFFLINE, ("plan", "search"), "planner")


def test_bring_online() -> None:
    """An offline agent coming online records AgentWentOnline and is online."""
    state = agent().given(OFFLINE).when(BringAgentOnline(ID, T0)).then(AgentWentOnline(ID, T0))
    assert state.status is S.ONLINE


def test_take_offline() -> None:
    """An online agent going offline records why and is offline."""
    state = (
        agent().given(ONLINE).when(TakeAgentOffline(ID, T0, "drain")).then(AgentWentOffline(ID, "drain", T0))
    )
    assert (state.status, state.reason) == (S.OFFLINE, "drain")


def test_mark_failed() -> None:
    """An online agent failing records the reason and is failed."""
    state = agent().given(ONLINE).when(MarkAgentFailed(ID, "oom", T0)).then(AgentFailed(ID, "oom", T0))
    assert (state.status, state.reason) == (S.FAILED, "oom")


def test_recover() -> None:
    """A failed agent recovering records AgentRecovered and is online again with no failure reason."""
    state = agent().given(FAILED).when(RecoverAgent(ID, T0)).then(AgentRecovered(ID, T0))
    assert (state.status, state.reason) == (S.ONLINE, None)


@pytest.mark.parametrize("history", [OFFLINE, ONLINE], ids=["offline", "online"])
def test_update_beliefs_records_the_digest(history: list) -> None:
    """Updating beliefs records the blob digest and size as belief version 1, status unchanged."""
    before = AGENT.fold(history).status
    state = (
        agent()
        .given(history)
        .when(UpdateAgentBeliefs(ID, DIGEST_A, 1024, T0))
        .then(AgentBeliefsUpdated(ID, DIGEST_A, 1024, 1, T0))
    )
    assert state.beliefs == Beliefs(DIGEST_A, 1024, 1) and state.status is before


def test_new_beliefs_get_the_next_version() -> None:
    """A different digest records the next belief version."""
    agent().given(ONLINE, AgentBeliefsUpdated(ID, DIGEST_A, 1, 1, T0)).when(
        UpdateAgentBeliefs(ID, DIGEST_B, 2, T0)
    ).then(AgentBeliefsUpdated(ID, DIGEST_B, 2, 2, T0))


def test_same_beliefs_again_record_nothing() -> None:
    """Re-sending the current digest records no event, since the content is the same."""
    agent().given(ONLINE, AgentBeliefsUpdated(ID, DIGEST_A, 1, 1, T0)).when(
        UpdateAgentBeliefs(ID, DIGEST_A, 1, T0)
    ).then()


@pytest.mark.parametrize("history", [OFFLINE, ONLINE, FAILED], ids=["offline", "online", "failed"])
def test_deregister(history: list) -> None:
    """Deregistering records the reason and the agent is deregistered."""
    state = (
        agent()
        .given(history)
        .when(DeregisterAgent(ID, "retired", T0))
        .then(AgentDeregistered(ID, "retired", T0))
    )
    assert state.status is S.DEREGISTERED


def test_command_for_another_agent_is_refused() -> None:
    """A command addressed to another agent than the stream holds raises InvalidCommand."""
    agent().given(OFFLINE).when(BringAgentOnline("a2", T0)).then_raises(InvalidCommand)


@pytest.mark.parametrize(
    "build",
    [
        lambda: RegisterAgent(ID, "x", "plan", T0),  # a str is not a tuple of capabilities
        lambda: RegisterAgent(ID, "x", ("",), T0),
        lambda: RegisterAgent(ID, "", (), T0),
        lambda: UpdateAgentBeliefs(ID, "a" * 64, 1, T0),
        lambda: UpdateAgentBeliefs(ID, "sha256:" + "A" * 64, 1, T0),
        lambda: UpdateAgentBeliefs(ID, DIGEST_A, -1, T0),
        lambda: MarkAgentFailed(ID, "", T0),
        lambda: BringAgentOnline("", T0),
    ],
    ids=[
        "capabilities-str",
        "empty-capability",
        "empty-name",
        "digest-without-algorithm",
        "digest-uppercase",
        "negative-size",
        "empty-reason",
        "empty-id",
    ],
)
def test_malformed_commands_are_refused_when_built(build: object) -> None:
    """A malformed agent command raises InvalidCommand at construction."""
    assert callable(build)
    with pytest.raises(InvalidCommand):
        build()
