"""API keys: each carries a tenant, an actor name and scopes; only a hash of its secret is kept.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

A key is shown once, at creation, as ``chr_<key_id>_<secret>``. The secret is 32 random
bytes, so a plain SHA-256 of it is as strong as a slow password hash would be (there is no
low-entropy guess to slow down); lookup is by ``key_id``, comparison in constant time.
Revoking stamps ``revoked_at``; the row stays, so the audit trail's actors keep a name.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE api_keys (
            key_id text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{12}$'),
            secret_sha256 bytea NOT NULL,
            tenant_id text NOT NULL,
            actor text NOT NULL,
            scopes text[] NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz)"""
    )
    # Nobody but the owner reads keys, whatever is granted later (revision 0005's roles).
    op.execute("ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY")


def downgrade() -> None:
    op.execute("DROP TABLE api_keys")
