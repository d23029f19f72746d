"""Ordering keys: find the tasks submitted before this one with the same key, by index.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

A worker runs a task with an ordering key only when no task of the same tenant and key
submitted before it is still live (``api.worker.worker``). This partial index answers that
question in one range scan per claim, whatever the size of the log.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX events_ordering_key_idx ON events (tenant_id, (data->>'ordering_key'), global_position) "
        "WHERE event_type = 'TaskSubmitted' AND data->>'ordering_key' IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX events_ordering_key_idx")
