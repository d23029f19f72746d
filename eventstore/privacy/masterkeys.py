"""Master keys: files outside the database, one per key, named after the key's fingerprint.

``<dir>/<id>.key`` holds the base64 of 32 random bytes, mode 0600; ``id`` is the first 16 hex
digits of the key's SHA-256, so a file can never be loaded as another key. The database
records only ids (``master_keys``). A key file is removed only after no data key is wrapped
by it any more (``rotate``), so a crash at any point leaves every data key openable.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from core.errors import KeyUnavailable

__all__ = ["MasterKeyFiles", "fingerprint"]

KEY_BYTES = 32


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


class MasterKeyFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._loaded: dict[str, bytes] = {}

    def path(self, key_id: str) -> Path:
        return self.directory / f"{key_id}.key"

    def load(self, key_id: str) -> bytes:
        key = self._loaded.get(key_id)
        if key is not None:
            return key
        path = self.path(key_id)
        try:
            key = base64.b64decode(path.read_text().strip(), validate=True)
        except FileNotFoundError:
            raise KeyUnavailable(
                f"master key {key_id} is not in {self.directory}: every process of this database needs the "
                "same master keys (CHRONICLE_MASTER_KEY_DIR)"
            ) from None
        except ValueError as exc:
            raise KeyUnavailable(f"{path} does not hold a base64 key: {exc}") from exc
        if fingerprint(key) != key_id:
            raise KeyUnavailable(f"{path} holds a key whose fingerprint is not {key_id}")
        self._loaded[key_id] = key
        return key

    def create(self) -> str:
        """A new key, written and flushed to disk before its id is returned."""
        key = os.urandom(KEY_BYTES)
        key_id = fingerprint(key)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path(key_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, base64.b64encode(key) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._loaded[key_id] = key
        return key_id

    def remove(self, key_id: str) -> None:
        self._loaded.pop(key_id, None)
        self.path(key_id).unlink(missing_ok=True)
