"""The body of a transparency log checkpoint, as C2SP tlog-checkpoint specifies
(https://c2sp.org/tlog-checkpoint): the note text a log signs to commit to its tree head::

    <origin>
    <tree size in decimal>
    <base64 of the RFC 6962 root hash>
    [extension lines]

Parsing is strict so that one tree head has one spelling: a signature over the text then
covers exactly one (origin, size, root). Extension lines are allowed, as the spec says, and
ignored, since nothing here signs or audits them.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from core.proofs.merkle import HASH_SIZE

__all__ = ["Checkpoint", "parse_checkpoint"]

# Decimal without leading zeros, and at most 20 digits so that parsing stays cheap.
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_MAX_SIZE = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: the ``size`` first leaves of log ``origin`` hash to ``root``."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        if not self.origin or _has_control(self.origin):
            raise ValueError("a checkpoint origin is one non-empty line without control characters")
        if type(self.size) is not int or not 0 <= self.size <= _MAX_SIZE:
            raise ValueError(f"a tree size is a uint64, not {self.size}")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise ValueError(f"a root hash is {HASH_SIZE} bytes")

    def body(self) -> str:
        """The note text to sign."""
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint in a note's text; ValueError unless each line is spelled as the spec says."""
    if not text.endswith("\n") or _has_control(text.replace("\n", "")):
        raise ValueError("a checkpoint is newline-terminated lines without control characters")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not all(lines):
        raise ValueError("a checkpoint has an origin, a size and a root line, and no empty lines")
    origin, size, root = lines[:3]
    if not _SIZE.fullmatch(size) or int(size) > _MAX_SIZE:
        raise ValueError(f"tree size {size!r} is not a decimal uint64 without leading zeros")
    return Checkpoint(origin, int(size), _root(root))


def _root(line: str) -> bytes:
    """The root hash from its one canonical base64 spelling."""
    try:
        raw = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"root hash {line!r} is not base64") from None
    if len(raw) != HASH_SIZE or base64.b64encode(raw).decode() != line:
        raise ValueError(f"root hash {line!r} is not the base64 of {HASH_SIZE} bytes")
    return raw


def _has_control(text: str) -> bool:
    return any(c < " " for c in text)
