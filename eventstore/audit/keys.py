"""The checkpoint signing key: a file outside the database, and its public half inside it.

The private key lives in one file (``CHRONICLE_SIGNING_KEY_FILE``, by default
``DATA_DIR/signing.key``, mode 0600), as a C2SP ``PRIVATE+KEY+<name>+<id>+<key>`` line whose
name is the log's origin. Someone who can rewrite the database cannot sign a checkpoint
without it, so a checkpoint an auditor kept from before a rewrite exposes the rewrite.

Every public key that ever signed is recorded in ``signing_keys``, so checkpoints signed before
a rotation stay verifiable: ``rotate`` writes a new key file (the old one is kept beside it,
renamed after its key ID) and marks the old public key retired.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core.errors import InvalidInput
from core.proofs import (
    NoteError,
    Signer,
    Verifier,
    parse_signer_key,
    parse_verifier_key,
    signer_key,
    verifier_key,
)

__all__ = ["SigningKey", "known_verifiers", "load_or_create", "register", "rotate"]


@dataclass(frozen=True, slots=True)
class SigningKey:
    signer: Signer
    verifier_key: str  # the public key, as the C2SP vkey line an auditor is given

    @property
    def name(self) -> str:
        return self.signer.name


def _public(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _of(signer: Signer) -> SigningKey:
    return SigningKey(signer, verifier_key(signer.name, _public(signer.private_key)))


def _new(path: Path, origin: str) -> SigningKey:
    private_key = Ed25519PrivateKey.generate()
    line = signer_key(origin, private_key.private_bytes_raw())
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two processes starting at once never overwrite each other's key
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(line + "\n")
    return _of(parse_signer_key(line))


def load(path: Path, origin: str) -> SigningKey:
    try:
        signer = parse_signer_key(path.read_text().strip())
    except FileNotFoundError:
        raise InvalidInput(f"no signing key at {path} (CHRONICLE_SIGNING_KEY_FILE)") from None
    except NoteError as exc:
        raise InvalidInput(f"signing key file {path}: {exc}") from None
    if signer.name != origin:
        raise InvalidInput(
            f"signing key file {path} is for the log {signer.name!r}, not {origin!r} (CHRONICLE_LOG_ORIGIN)"
        )
    return _of(signer)


def load_or_create(path: Path, origin: str) -> SigningKey:
    """The key in ``path``, created there (mode 0600) if there is no file yet."""
    try:
        return _new(path, origin)
    except FileExistsError:
        return load(path, origin)


async def register(conn: asyncpg.Connection, key: SigningKey) -> None:
    """Record the key's public half, so its checkpoints can be verified for ever."""
    await conn.execute(
        "INSERT INTO signing_keys (verifier_key, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        key.verifier_key,
        key.name,
    )


async def known_verifiers(conn: asyncpg.Connection) -> list[Verifier]:
    """Every public key that ever signed a checkpoint of this log, the retired ones included."""
    rows = await conn.fetch("SELECT verifier_key FROM signing_keys ORDER BY created_at")
    return [parse_verifier_key(r["verifier_key"]) for r in rows]


def _replace(path: Path, origin: str, old: SigningKey) -> SigningKey:
    path.rename(path.with_name(f"{path.name}.{old.signer.key_hash:08x}.retired"))
    return _new(path, origin)


async def rotate(conn: asyncpg.Connection, path: Path, origin: str) -> tuple[SigningKey, SigningKey]:
    """Replace the key in ``path`` with a new one; (old, new). The old file is kept as
    ``<path>.<key id>.retired`` and its public key stays in ``signing_keys``, marked retired."""
    old = load(path, origin)
    await register(conn, old)
    new = _replace(path, origin, old)
    async with conn.transaction():
        await conn.execute(
            "UPDATE signing_keys SET retired_at = now() WHERE verifier_key = $1", old.verifier_key
        )
        await register(conn, new)
    return old, new
