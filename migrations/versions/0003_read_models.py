"""Read models: the projection runner's state, and the tables and views of every read model.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Generations. Every read-model table carries a ``generation`` column at the head of its primary
key, and readers go through a view that shows only the rows of the projection's active
generation (``projections.active_generation``). A rebuild writes a new generation beside the
live one, and swaps it in by updating that one row, in the transaction that applies the last
events: a reader's statement sees the old model or the new one, never a mix and never a
half-built one, and no DDL runs at rebuild time. The old generation's rows are deleted after.

``projection_checkpoints`` has one row per (projection, generation): the position applied, how
many events were applied (so a test can prove none was applied twice), and the last failure.
It is empty in every database migrated so far (nothing used it), so it is recreated.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (view, rows table, projection, columns the view shows: every column but generation)
VIEWS = (
    (
        "agent_registry",
        "agent_registry_rows",
        "agent_registry",
        "agent_id, tenant_id, name, status, capabilities, registered_at, last_seen_at, "
        "current_task, beliefs_digest, status_reason, version, updated_position",
    ),
    (
        "task_board",
        "task_board_rows",
        "task_board",
        "task_id, tenant_id, status, queue, priority, handler, assignee, attempt, max_attempts, "
        "fencing_token, lease_expires_at, not_before, progress, error, reason, submitted_at, "
        "started_at, finished_at, updated_at, version, updated_position",
    ),
    (
        "conversation_messages",
        "conversation_messages_rows",
        "conversations",
        "conversation_id, sequence, tenant_id, message_id, sender, recipient, body, "
        "correlation_id, causation_id, sent_at, delivered_at, acknowledged_at, updated_position",
    ),
    (
        "training_runs",
        "training_runs_rows",
        "training_runs",
        "run_id, tenant_id, status, device, epochs_planned, epochs_completed, attempts, "
        "val_accuracy, best_val_accuracy, rollbacks, budget_overruns, last_checkpoint_epoch, "
        "started_at, finished_at, reason, updated_position",
    ),
    (
        "training_run_epochs",
        "training_run_epochs_rows",
        "training_runs",
        "run_id, attempt, epoch, tenant_id, train_loss, val_loss, val_accuracy, train_accuracy, "
        "learning_rate, decision, decision_reason, seeds, rolled_back, budget_overruns, "
        "checkpoint_sha256, abandoned, completed_at, updated_position",
    ),
    (
        "audit_index",
        "audit_index_rows",
        "audit_index",
        "global_position, recorded_at, recorded_max, lateness_max, tenant_id, actor, event_type, "
        "stream_id, category, stream_version, event_id, correlation_id, causation_id, command_id",
    ),
)

TABLES = (
    """CREATE TABLE projections (
        name text PRIMARY KEY,
        version integer NOT NULL,
        active_generation integer,
        rebuilding_generation integer,
        rebuilding_version integer,
        updated_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE projection_checkpoints (
        name text NOT NULL REFERENCES projections (name) ON DELETE CASCADE,
        generation integer NOT NULL,
        position bigint NOT NULL DEFAULT 0,
        applied_events bigint NOT NULL DEFAULT 0,
        last_applied_at timestamptz,
        last_event_recorded_at timestamptz,
        failed_position bigint,
        failed_at timestamptz,
        error text,
        PRIMARY KEY (name, generation))""",
    """CREATE TABLE agent_registry_rows (
        generation integer NOT NULL,
        agent_id text NOT NULL,
        tenant_id text,
        name text NOT NULL,
        status text NOT NULL,
        capabilities text[] NOT NULL,
        registered_at timestamptz NOT NULL,
        last_seen_at timestamptz NOT NULL,
        current_task text,
        beliefs_digest text,
        status_reason text,
        version integer NOT NULL,
        updated_position bigint NOT NULL,
        PRIMARY KEY (generation, agent_id))""",
    "CREATE INDEX agent_registry_tenant_idx ON agent_registry_rows (generation, tenant_id, status)",
    "CREATE INDEX agent_registry_task_idx ON agent_registry_rows (generation, current_task)",
    """CREATE TABLE task_board_rows (
        generation integer NOT NULL,
        task_id text NOT NULL,
        tenant_id text,
        status text NOT NULL,
        queue text NOT NULL,
        priority text NOT NULL,
        handler text NOT NULL,
        assignee text,
        attempt integer NOT NULL,
        max_attempts integer NOT NULL,
        fencing_token integer NOT NULL,
        lease_expires_at timestamptz,
        not_before timestamptz,
        progress double precision,
        error text,
        reason text,
        submitted_at timestamptz NOT NULL,
        started_at timestamptz,
        finished_at timestamptz,
        updated_at timestamptz NOT NULL,
        version integer NOT NULL,
        updated_position bigint NOT NULL,
        PRIMARY KEY (generation, task_id))""",
    # The board pages in submission order (projections.models.tasks.tasks): each filter's index
    # ends in the keyset (submitted_at, task_id).
    "CREATE INDEX task_board_submitted_idx ON task_board_rows (generation, submitted_at, task_id)",
    "CREATE INDEX task_board_tenant_idx ON task_board_rows"
    " (generation, tenant_id, status, submitted_at, task_id)",
    "CREATE INDEX task_board_queue_idx ON task_board_rows"
    " (generation, queue, status, priority, submitted_at, task_id)",
    "CREATE INDEX task_board_assignee_idx ON task_board_rows (generation, assignee)",
    "CREATE INDEX task_board_lease_idx ON task_board_rows (generation, lease_expires_at)"
    " WHERE lease_expires_at IS NOT NULL",
    """CREATE TABLE conversation_messages_rows (
        generation integer NOT NULL,
        conversation_id text NOT NULL,
        sequence integer NOT NULL,
        tenant_id text,
        message_id text NOT NULL,
        sender text NOT NULL,
        recipient text NOT NULL,
        body jsonb NOT NULL,
        correlation_id text NOT NULL,
        causation_id text,
        sent_at timestamptz NOT NULL,
        delivered_at timestamptz,
        acknowledged_at timestamptz,
        updated_position bigint NOT NULL,
        PRIMARY KEY (generation, conversation_id, sequence))""",
    """CREATE TABLE training_runs_rows (
        generation integer NOT NULL,
        run_id text NOT NULL,
        tenant_id text,
        status text NOT NULL,
        device text,
        epochs_planned integer,
        epochs_completed integer NOT NULL,
        attempts integer NOT NULL,
        val_accuracy double precision,
        best_val_accuracy double precision,
        rollbacks integer NOT NULL,
        budget_overruns integer NOT NULL,
        last_checkpoint_epoch integer,
        started_at timestamptz NOT NULL,
        finished_at timestamptz,
        reason text,
        updated_position bigint NOT NULL,
        PRIMARY KEY (generation, run_id))""",
    "CREATE INDEX training_runs_started_idx ON training_runs_rows (generation, started_at, run_id)",
    "CREATE INDEX training_runs_tenant_idx ON training_runs_rows (generation, tenant_id, started_at, run_id)",
    """CREATE TABLE training_run_epochs_rows (
        generation integer NOT NULL,
        run_id text NOT NULL,
        attempt integer NOT NULL,
        epoch integer NOT NULL,
        tenant_id text,
        train_loss double precision,
        val_loss double precision,
        val_accuracy double precision,
        train_accuracy double precision,
        learning_rate double precision,
        decision text,
        decision_reason text,
        seeds jsonb NOT NULL,
        rolled_back boolean NOT NULL,
        budget_overruns integer NOT NULL,
        checkpoint_sha256 text,
        abandoned boolean NOT NULL,
        completed_at timestamptz,
        updated_position bigint NOT NULL,
        PRIMARY KEY (generation, run_id, attempt, epoch))""",
    """CREATE TABLE audit_index_rows (
        generation integer NOT NULL,
        global_position bigint NOT NULL,
        recorded_at timestamptz NOT NULL,
        recorded_max timestamptz NOT NULL,
        lateness_max interval NOT NULL,
        tenant_id text,
        actor text,
        event_type text NOT NULL,
        stream_id text NOT NULL,
        category text NOT NULL,
        stream_version integer NOT NULL,
        event_id uuid NOT NULL,
        correlation_id text,
        causation_id text,
        command_id text,
        PRIMARY KEY (generation, global_position))""",
    # Every audit filter ends in global_position, so each query is one index range scan that a
    # keyset cursor continues. Tenant, event type and category are not indexed here: the audit
    # query joins `events` by position and scans its own indexes on (tenant_id | event_type |
    # category, global_position), the same range scans. Three more indexes here would cost every
    # insert into the audit index (one per event, in a rebuild too) about a quarter more time.
    # A time range becomes a range of positions first: recorded_max (the latest recorded_at at or
    # before a position) grows with the position, so one probe of its index finds where the
    # range starts, and lateness_max bounds where it ends (see projections/models/audit.py).
    "CREATE INDEX audit_actor_idx ON audit_index_rows (generation, actor, global_position)",
    "CREATE INDEX audit_stream_idx ON audit_index_rows (generation, stream_id, global_position)",
    "CREATE INDEX audit_correlation_idx ON audit_index_rows (generation, correlation_id, global_position)",
    "CREATE INDEX audit_causation_idx ON audit_index_rows (generation, causation_id, global_position)",
    "CREATE INDEX audit_command_idx ON audit_index_rows (generation, command_id)",
    "CREATE INDEX audit_recorded_max_idx ON audit_index_rows (generation, recorded_max, global_position)",
)


def upgrade() -> None:
    # One statement per op.execute: asyncpg runs a single statement per call.
    op.execute("DROP TABLE projection_checkpoints")
    for statement in TABLES:
        op.execute(statement)
    for view, rows, projection, columns in VIEWS:
        op.execute(
            f"CREATE VIEW {view} AS SELECT {columns} FROM {rows} WHERE generation = "
            f"(SELECT active_generation FROM projections WHERE name = '{projection}')"
        )


def downgrade() -> None:
    for view, rows, _, _ in VIEWS:
        op.execute(f"DROP VIEW {view}")
        op.execute(f"DROP TABLE {rows}")
    op.execute("DROP TABLE projection_checkpoints")
    op.execute("DROP TABLE projections")
    op.execute(
        "CREATE TABLE projection_checkpoints (name text PRIMARY KEY, position bigint NOT NULL, "
        "updated_at timestamptz NOT NULL DEFAULT now())"
    )
