"""Agent checkpoints: beliefs, module state_dicts and plain state as one content-addressed blob.

``checkpoint`` packs an agent's tensors and its plain (JSON) state into one safetensors file,
stores it in the blob store under its digest, and records ``AgentBeliefsUpdated`` with that
digest through normal command handling. ``restore`` loads the agent's state from the log,
fetches the blob its beliefs name, and unpacks it. Tensors round-trip bit for bit: safetensors
stores each tensor's raw bytes with its dtype and shape.

Deterministic bytes, so equal content deduplicates. safetensors writes tensors in a fixed order,
but its ``__metadata__`` map is unordered; the plain state therefore goes into one metadata
entry, as JSON with sorted keys. Tensors are named ``beliefs/<name>`` and
``modules/<module>/<parameter>``.

Dying half-way: the blob is written first (one INSERT, whole or absent), the event second.
Dying between leaves the agent on its previous beliefs and an unreferenced blob that garbage
collection removes after its grace period.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from core.domain import AGENT, CommandContext, Handled, handle
from core.domain.agent import AgentState, UpdateAgentBeliefs
from core.domain.loading import StateLoader, load_at
from core.domain.snapshots import SnapshotStore
from core.errors import ChronicleError, InvalidInput
from core.ports import EventLog
from eventstore.state.blobs import BlobStore

__all__ = ["AgentMind", "NoAgentCheckpoint", "checkpoint", "decode_mind", "encode_mind", "restore"]

_FORMAT = 1
_META_KEY = "chronicle.agent"


class NoAgentCheckpoint(ChronicleError):
    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        super().__init__(f"agent {agent_id!r} has no beliefs checkpoint to restore")


@dataclass(frozen=True, slots=True)
class AgentMind:
    """What an agent holds beyond its event-sourced status: tensors and plain JSON state."""

    beliefs: Mapping[str, torch.Tensor] = field(default_factory=dict)
    modules: Mapping[str, Mapping[str, torch.Tensor]] = field(default_factory=dict)
    plain: Mapping[str, Any] = field(default_factory=dict)


def encode_mind(mind: AgentMind) -> bytes:
    """The safetensors bytes of ``mind``; equal minds give equal bytes."""
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in mind.beliefs.items():
        tensors[_name("beliefs", name)] = _own(tensor)
    for module, state_dict in mind.modules.items():
        for name, tensor in state_dict.items():
            tensors[_name("modules", _check_part(module), name)] = _own(tensor)
    plain = orjson.dumps(mind.plain, option=orjson.OPT_SORT_KEYS)
    if orjson.loads(plain) != mind.plain:
        raise InvalidInput("an agent's plain state must be JSON that round-trips (no NaN, str keys)")
    meta = orjson.dumps({"format": _FORMAT, "plain": orjson.Fragment(plain)}, option=orjson.OPT_SORT_KEYS)
    return bytes(save_tensors(tensors, metadata={_META_KEY: meta.decode()}))


def decode_mind(data: bytes) -> AgentMind:
    """The mind ``encode_mind`` packed into ``data``."""
    tensors = load_tensors(data)
    header = _header(data)
    beliefs: dict[str, torch.Tensor] = {}
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        kind, _, rest = key.partition("/")
        if kind == "beliefs":
            beliefs[rest] = tensor
        else:
            module, _, name = rest.partition("/")
            modules.setdefault(module, {})[name] = tensor
    return AgentMind(beliefs, modules, header["plain"])


async def checkpoint(
    log: EventLog,
    blobs: BlobStore,
    agent_id: str,
    mind: AgentMind,
    context: CommandContext,
    at: datetime,
    *,
    loader: StateLoader | None = None,
) -> Handled[AgentState]:
    """Store ``mind`` as a blob and point the agent's beliefs at it (nothing new if unchanged)."""
    ref = await blobs.put(encode_mind(mind))
    command = UpdateAgentBeliefs(agent_id, ref.digest, ref.size_bytes, at)
    return await handle(log, AGENT.stream_id(agent_id), command, AGENT, context, loader=loader)


async def restore(
    log: EventLog, blobs: BlobStore, agent_id: str, snapshots: SnapshotStore | None = None
) -> AgentMind:
    """The mind the agent's current beliefs name; raises NoAgentCheckpoint if it never had one."""
    loaded = await load_at(log, snapshots, AGENT.stream_id(agent_id), AGENT)
    state: AgentState = loaded.state
    if state.beliefs is None:
        raise NoAgentCheckpoint(agent_id)
    return decode_mind(await blobs.get(state.beliefs.digest))


def _own(tensor: torch.Tensor) -> torch.Tensor:
    # A private, contiguous CPU copy: safetensors refuses shared storage (tied weights) and views.
    return tensor.detach().to("cpu", copy=True).contiguous()


def _check_part(part: str) -> str:
    if not part or "/" in part:
        raise InvalidInput(f"a module name is non-empty and has no '/', got {part!r}")
    return part


def _name(*parts: str) -> str:
    return "/".join(parts)


def _header(data: bytes) -> dict[str, Any]:
    size = int.from_bytes(data[:8], "little")
    header = orjson.loads(data[8 : 8 + size])
    meta = orjson.loads(header["__metadata__"][_META_KEY])
    if meta.get("format") != _FORMAT:
        raise InvalidInput(f"agent checkpoint format {meta.get('format')!r} is not {_FORMAT}")
    return dict(meta)
