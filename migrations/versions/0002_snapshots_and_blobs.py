"""Snapshots learn where they sit in the log; content-addressed blobs for agent tensors.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

A snapshot now records the global position and the recorded_at of the last event it folded,
so time travel to a position or a timestamp can start from it. Rows written under 0001 have
neither; they stay usable for loads by version and are skipped for loads by position or time
(NULL never compares as "at or before").

Blobs hold safetensors payloads under their digest (``sha256:<64 hex>``). A blob is written by
one INSERT ... ON CONFLICT DO NOTHING, so it is stored whole or not at all, and storing the same
content twice keeps one row. Unlike ``events``, both tables may be deleted from: superseded
snapshots and unreferenced blobs are removed by retention.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One statement per op.execute: asyncpg runs a single statement per call.
    op.execute("ALTER TABLE snapshots ADD COLUMN global_position bigint")
    op.execute("ALTER TABLE snapshots ADD COLUMN recorded_at timestamptz")
    op.execute(
        "CREATE TABLE blobs ("
        " digest text PRIMARY KEY CHECK (digest ~ '^sha256:[0-9a-f]{64}$'),"
        " data bytea NOT NULL,"
        " size_bytes bigint NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now())"
    )


def downgrade() -> None:
    op.execute("DROP TABLE blobs")
    op.execute("ALTER TABLE snapshots DROP COLUMN recorded_at")
    op.execute("ALTER TABLE snapshots DROP COLUMN global_position")
