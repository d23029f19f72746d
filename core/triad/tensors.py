"""Copying tensor trees (state dicts, optimizer states) for snapshots and restores.

Two hazards shape these helpers. ``Optimizer.load_state_dict`` keeps the tensors it is given
when their dtype and device already match, so loading a snapshot directly would let the next
optimizer step write into the snapshot; every restore therefore copies. And a snapshot taken on
a GPU goes to pinned host memory with non-blocking copies and one synchronisation at the end,
so the copy engine overlaps the transfers instead of stalling once per tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["clone_tree", "copy_optimizer_state_into", "copy_state_into", "snapshot_tree", "tree_bytes"]


def snapshot_tree(tree: Any, to_host: bool) -> Any:
    """A deep copy of ``tree`` whose tensors share nothing with the original.

    ``to_host``: copy CUDA tensors into pinned CPU memory (call ``torch.cuda.synchronize``
    once after the whole snapshot, not per tensor).
    """
    if isinstance(tree, torch.Tensor):
        if to_host and tree.is_cuda:
            target = torch.empty(tree.shape, dtype=tree.dtype, device="cpu", pin_memory=True)
            return target.copy_(tree.detach(), non_blocking=True)
        return tree.detach().clone()
    if isinstance(tree, Mapping):
        return {key: snapshot_tree(value, to_host) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(snapshot_tree(value, to_host) for value in tree)
    return tree


def clone_tree(tree: Any, device: torch.device | None = None) -> Any:
    """A deep copy, optionally moved to ``device`` (used when loading into an optimizer)."""
    if isinstance(tree, torch.Tensor):
        moved = tree if device is None else tree.to(device, non_blocking=True)
        return moved.clone() if moved is tree else moved
    if isinstance(tree, Mapping):
        return {key: clone_tree(value, device) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(clone_tree(value, device) for value in tree)
    return tree


def copy_state_into(module: torch.nn.Module, saved: Mapping[str, torch.Tensor]) -> None:
    """Restore parameters and buffers in place: no allocation, and every reference an optimizer
    holds to a parameter stays valid."""
    current = module.state_dict(keep_vars=False)
    if current.keys() != saved.keys():
        module.load_state_dict(dict(saved))
        return
    with torch.no_grad():
        for name, tensor in current.items():
            tensor.copy_(saved[name], non_blocking=True)


def copy_optimizer_state_into(optimizer: torch.optim.Optimizer, saved: Mapping[str, Any]) -> None:
    """Restore an optimizer's state, in place when its layout matches the snapshot's."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_state: Mapping[int, Mapping[str, Any]] = saved["state"]
    if not _same_layout(optimizer, params, saved_state):
        device = params[0].device if params else None
        optimizer.load_state_dict(clone_tree(saved, device))
        return
    with torch.no_grad():
        for index, param in enumerate(params):
            live = optimizer.state[param]
            for key, value in saved_state[index].items():
                if isinstance(value, torch.Tensor):
                    live[key].copy_(value, non_blocking=True)
                else:
                    live[key] = value
    for group, saved_group in zip(optimizer.param_groups, saved["param_groups"], strict=True):
        group.update({k: v for k, v in saved_group.items() if k != "params"})


def _same_layout(
    optimizer: torch.optim.Optimizer, params: list[torch.Tensor], saved_state: Mapping[int, Any]
) -> bool:
    if len(saved_state) != sum(1 for p in params if p in optimizer.state):
        return False
    for index, param in enumerate(params):
        live = optimizer.state.get(param)
        saved = saved_state.get(index)
        if (live is None) != (saved is None):
            return False
        if live is not None and saved is not None and live.keys() != saved.keys():
            return False
    return True


def tree_bytes(tree: Any) -> int:
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, Mapping):
        return sum(tree_bytes(v) for v in tree.values())
    if isinstance(tree, list | tuple):
        return sum(tree_bytes(v) for v in tree)
    return 0
