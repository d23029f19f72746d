"""The triad's errors.

TriadError (a core.errors.ChronicleError)
├── IllegalSeedTransition    the lifecycle has no such edge, or its gate refused it
├── SeedCommandRejected      a command Kasmina cannot apply (unknown slot, wrong kind)
└── CheckpointError
    ├── NoCheckpoint         nothing to resume from
    ├── CheckpointCorrupt    the bytes on disk do not match their recorded checksum
    └── CheckpointNotPublished  its events never reached the log, so it is not a resume point
"""

from __future__ import annotations

from core.errors import ChronicleError

__all__ = [
    "CheckpointCorrupt",
    "CheckpointError",
    "CheckpointNotPublished",
    "IllegalSeedTransition",
    "NoCheckpoint",
    "SeedCommandRejected",
    "TriadError",
]


class TriadError(ChronicleError):
    """Base of the training loop's own errors."""


class IllegalSeedTransition(TriadError):
    def __init__(self, slot: int, from_stage: str, to_stage: str, reason: str) -> None:
        self.slot = slot
        self.from_stage = from_stage
        self.to_stage = to_stage
        self.reason = reason
        super().__init__(f"slot {slot}: {from_stage} -> {to_stage} refused: {reason}")


class SeedCommandRejected(TriadError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class CheckpointError(TriadError):
    """A checkpoint could not be written or read."""


class NoCheckpoint(CheckpointError):
    pass


class CheckpointCorrupt(CheckpointError):
    pass


class CheckpointNotPublished(CheckpointError):
    pass
