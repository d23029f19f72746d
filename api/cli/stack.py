"""`chronicle up`: the whole stack as processes (placeholder; being built)."""

from __future__ import annotations

__all__ = ["up"]


def up() -> None:
    """Start the API, two workers and the projection daemon, and keep them running."""
    raise NotImplementedError
