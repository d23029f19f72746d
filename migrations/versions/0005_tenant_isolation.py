"""Tenant isolation: row-level security on the log, the snapshots and every read model.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Two roles, created once per cluster (roles are cluster-wide) and granted to the role that runs
this migration so that its sessions may take them on:

- ``chronicle_tenant``: a transaction working for one tenant runs
  ``SET LOCAL ROLE chronicle_tenant`` and ``set_config('chronicle.tenant', tenant, true)``.
  It reads and writes only rows whose ``tenant_id`` equals that setting, whatever the query
  says; rows with no tenant and a transaction with no tenant set show nothing (fail closed).
- ``chronicle_auditor``: reads every row of every tenant, and the seals and checkpoints;
  writes nothing.

The owner of the tables (the role that migrates, runs the writer, the projection daemon and
the sealer) is trusted and bypasses these policies, as every superuser does. Views are
``security_invoker``, so a view reads with the rights of whoever queries it: without that, a
view owned by the owner would read past every policy.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TENANT_ROLE = "chronicle_tenant"
AUDITOR_ROLE = "chronicle_auditor"
TENANT = "current_setting('chronicle.tenant', true)"

# Tables whose rows carry tenant_id; each read-model view over its rows table.
TENANT_TABLES = (
    "events",
    "streams",
    "agent_registry_rows",
    "task_board_rows",
    "conversation_messages_rows",
    "training_runs_rows",
    "training_run_epochs_rows",
    "audit_index_rows",
)
VIEWS = (
    "agent_registry",
    "task_board",
    "conversation_messages",
    "training_runs",
    "training_run_epochs",
    "audit_index",
)
# Read by the auditor only: proofs, keys and the runner's bookkeeping.
AUDIT_TABLES = ("seals", "merkle_nodes", "checkpoints", "signing_keys", "projection_checkpoints")

APPEND_SIGNATURE = (
    "chronicle_append(text[], integer[], text[], integer[], integer[], uuid[], text[], smallint[], "
    "jsonb[], jsonb[])"
)


def upgrade() -> None:
    for role in (TENANT_ROLE, AUDITOR_ROLE):
        op.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
            f"THEN CREATE ROLE {role} NOLOGIN; END IF; END $$"
        )
        op.execute(f"GRANT {role} TO CURRENT_USER")
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_rows ON {table} TO {TENANT_ROLE} "
            f"USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})"
        )
        op.execute(f"CREATE POLICY auditor_reads ON {table} FOR SELECT TO {AUDITOR_ROLE} USING (true)")
        op.execute(f"GRANT SELECT ON {table} TO {TENANT_ROLE}, {AUDITOR_ROLE}")
    # Snapshots carry no tenant: a snapshot is visible when its stream is.
    op.execute("ALTER TABLE snapshots ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_rows ON snapshots FOR SELECT TO {TENANT_ROLE} USING (EXISTS ("
        "SELECT 1 FROM streams s WHERE s.stream_id = snapshots.stream_id))"
    )
    op.execute(f"CREATE POLICY auditor_reads ON snapshots FOR SELECT TO {AUDITOR_ROLE} USING (true)")
    op.execute(f"GRANT SELECT ON snapshots TO {TENANT_ROLE}, {AUDITOR_ROLE}")
    for view in VIEWS:
        op.execute(f"ALTER VIEW {view} SET (security_invoker = true)")
        op.execute(f"GRANT SELECT ON {view} TO {TENANT_ROLE}, {AUDITOR_ROLE}")
    # The views look up the active generation; names and versions only.
    op.execute(f"GRANT SELECT ON projections TO {TENANT_ROLE}, {AUDITOR_ROLE}")
    for table in AUDIT_TABLES:
        op.execute(f"GRANT SELECT ON {table} TO {AUDITOR_ROLE}")
    # A tenant's transaction may append to its own streams, through the one append function.
    op.execute(f"GRANT INSERT ON events TO {TENANT_ROLE}")
    op.execute(f"GRANT INSERT, UPDATE ON streams TO {TENANT_ROLE}")
    op.execute(f"GRANT USAGE ON SEQUENCE events_global_position_seq TO {TENANT_ROLE}")
    op.execute(f"GRANT EXECUTE ON FUNCTION {APPEND_SIGNATURE} TO {TENANT_ROLE}")


def downgrade() -> None:
    """Policies and grants go; the roles stay, since other databases of the cluster may use them."""
    roles = f"{TENANT_ROLE}, {AUDITOR_ROLE}"
    op.execute(f"REVOKE EXECUTE ON FUNCTION {APPEND_SIGNATURE} FROM {TENANT_ROLE}")
    op.execute(f"REVOKE USAGE ON SEQUENCE events_global_position_seq FROM {TENANT_ROLE}")
    for table in AUDIT_TABLES:
        op.execute(f"REVOKE SELECT ON {table} FROM {AUDITOR_ROLE}")
    op.execute(f"REVOKE SELECT ON projections FROM {roles}")
    for view in VIEWS:
        op.execute(f"REVOKE SELECT ON {view} FROM {roles}")
        op.execute(f"ALTER VIEW {view} RESET (security_invoker)")
    for table in (*TENANT_TABLES, "snapshots"):
        op.execute(f"REVOKE ALL ON {table} FROM {roles}")
        op.execute(f"DROP POLICY tenant_rows ON {table}")
        op.execute(f"DROP POLICY auditor_reads ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
