"""Crypto-shredding: each data subject's keys, wrapped by a master key kept outside the database.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

- ``master_keys``: the id (a fingerprint) of every master key that ever wrapped a data key;
  the one not retired wraps new data keys. The keys themselves are files
  (``CHRONICLE_MASTER_KEY_DIR``), never in the database.
- ``subject_keys``: one AES-256 data key per (tenant, subject) in use, wrapped (AES-GCM) by a
  master key. Forgetting a subject sets ``wrapped_key`` to NULL and stamps ``forgotten_at``:
  the row stays, so a read can tell a destroyed key (redact) from a missing one (an error).
  A subject has at most one live key; after it is forgotten, new data gets a new key.

Neither table is granted to the tenant or auditor roles (revision 0005), and
``subject_keys`` has row-level security on with no policy.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = (
    """CREATE TABLE master_keys (
        id text PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now(),
        retired_at timestamptz)""",
    # At most one master key is current.
    "CREATE UNIQUE INDEX master_keys_one_current ON master_keys ((true)) WHERE retired_at IS NULL",
    """CREATE TABLE subject_keys (
        key_id uuid PRIMARY KEY,
        tenant_id text NOT NULL DEFAULT '',
        subject text NOT NULL,
        wrapped_key bytea,
        master_key_id text REFERENCES master_keys (id),
        created_at timestamptz NOT NULL DEFAULT now(),
        forgotten_at timestamptz,
        CHECK ((wrapped_key IS NULL) = (forgotten_at IS NOT NULL)))""",
    "CREATE UNIQUE INDEX subject_keys_live ON subject_keys (tenant_id, subject) WHERE forgotten_at IS NULL",
    # No policy at all: nobody but the owner (who bypasses it) reads a key, whatever is granted later.
    "ALTER TABLE subject_keys ENABLE ROW LEVEL SECURITY",
)


def upgrade() -> None:
    for statement in TABLES:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE subject_keys")
    op.execute("DROP TABLE master_keys")
