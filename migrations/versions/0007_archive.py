"""Retention and archival: old streams move out of the hot ``events`` table, through one path.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

- ``retention_policies``: per category, keep a stream in the hot table for ``keep_days`` after
  its last event, or, with ``after_terminal``, after its last event when that event ends the
  stream's life (a task completed, failed, cancelled or dead-lettered).
- ``events_archive``: the same columns as ``events``, partitioned by month of ``recorded_at``
  (PostgreSQL's declarative partitioning). A month's partition is created when the first
  event of that month is archived, and can be detached and dumped to cold storage whole.
  Append-only like the log.
- ``chronicle_archive(streams, record)``: the one sanctioned path. In one transaction it
  moves whole streams' events from ``events`` into ``events_archive``, marks the streams
  archived, and appends the record (a ``StreamsArchived`` event, its ``events`` field set to the
  number moved) through ``chronicle_append``.
  It refuses a stream with an unsealed event, so the tree never has to read the archive to
  seal. The append-only trigger on ``events`` lets a DELETE through only while this function
  runs (a transaction-local setting it sets and clears).
- ``all_events``: the hot table and the archive, for the readers that must see every event
  whatever its age: the verifier, proofs, the sealer's previous links, rebuilds.

The hot table is not partitioned: its unique event id and (stream, version) keys would have
to include the partition key, and its global order (what makes readers gap-safe) spans every
partition anyway. Moving whole streams keeps it small instead.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TENANT = "current_setting('chronicle.tenant', true)"
APPEND_LOCK = 7_291_033_451  # the same lock as revision 0001: fixed forever

STATEMENTS = (
    """CREATE TABLE retention_policies (
        category text PRIMARY KEY CHECK (category ~ '^[A-Za-z][A-Za-z0-9_]{0,63}$'),
        keep_days integer NOT NULL CHECK (keep_days > 0),
        after_terminal boolean NOT NULL DEFAULT false,
        updated_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE events_archive (
        global_position bigint NOT NULL,
        event_id uuid NOT NULL,
        stream_id text NOT NULL,
        stream_version integer NOT NULL,
        event_type text NOT NULL,
        schema_version smallint NOT NULL,
        data jsonb NOT NULL,
        metadata jsonb NOT NULL,
        tenant_id text,
        recorded_at timestamptz NOT NULL,
        archived_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (global_position, recorded_at)
    ) PARTITION BY RANGE (recorded_at)""",
    "CREATE INDEX events_archive_stream_idx ON events_archive (stream_id, stream_version)",
    "CREATE INDEX events_archive_event_id_idx ON events_archive (event_id)",
    """CREATE TRIGGER events_archive_append_only BEFORE UPDATE OR DELETE ON events_archive
        FOR EACH ROW EXECUTE FUNCTION chronicle_refuse_change()""",
    "REVOKE UPDATE, DELETE, TRUNCATE ON events_archive FROM PUBLIC",
    "ALTER TABLE events_archive ENABLE ROW LEVEL SECURITY",
    f"""CREATE POLICY tenant_rows ON events_archive TO chronicle_tenant
        USING (tenant_id = {TENANT}) WITH CHECK (tenant_id = {TENANT})""",
    "CREATE POLICY auditor_reads ON events_archive FOR SELECT TO chronicle_auditor USING (true)",
    "GRANT SELECT ON events_archive TO chronicle_tenant, chronicle_auditor",
    """CREATE VIEW all_events WITH (security_invoker = true) AS
        SELECT global_position, event_id, stream_id, stream_version, event_type, schema_version,
               data, metadata, tenant_id, recorded_at FROM events
        UNION ALL
        SELECT global_position, event_id, stream_id, stream_version, event_type, schema_version,
               data, metadata, tenant_id, recorded_at FROM events_archive""",
    "GRANT SELECT ON all_events TO chronicle_tenant, chronicle_auditor",
    # The append-only trigger, with its one exception.
    """CREATE OR REPLACE FUNCTION chronicle_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'events'
       AND current_setting('chronicle.archiving', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'chronicle: events are append-only; % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$""",
    f"""CREATE FUNCTION chronicle_archive(p_streams text[], p_record_stream text, p_record_id uuid,
                                     p_record_data jsonb, p_record_metadata jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    moved bigint;
    month date;
    sealed_up_to bigint;
    v_outcome text;
BEGIN
    -- The append lock first (chronicle_append takes it too, below, and every writer takes it
    -- before touching a stream): no append runs while streams move, and the lock order is
    -- the writers' own, so the two cannot deadlock.
    PERFORM pg_advisory_xact_lock({APPEND_LOCK});
    SELECT coalesce(max(global_position), 0) INTO sealed_up_to FROM seals;
    IF EXISTS (SELECT 1 FROM events WHERE stream_id = ANY (p_streams)
               AND global_position > sealed_up_to) THEN
        RAISE EXCEPTION 'chronicle: a stream to archive has unsealed events; seal first'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOR month IN
        SELECT DISTINCT date_trunc('month', recorded_at AT TIME ZONE 'UTC')::date
        FROM events WHERE stream_id = ANY (p_streams)
    LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF events_archive FOR VALUES FROM (%L) TO (%L)',
            'events_archive_' || to_char(month, 'YYYY_MM'),
            (month::timestamp AT TIME ZONE 'UTC'),
            ((month + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
    END LOOP;
    PERFORM set_config('chronicle.archiving', 'on', true);
    WITH gone AS (
        DELETE FROM events WHERE stream_id = ANY (p_streams)
        RETURNING global_position, event_id, stream_id, stream_version, event_type, schema_version,
                  data, metadata, tenant_id, recorded_at
    )
    INSERT INTO events_archive (global_position, event_id, stream_id, stream_version, event_type,
                                schema_version, data, metadata, tenant_id, recorded_at)
    SELECT * FROM gone;
    GET DIAGNOSTICS moved = ROW_COUNT;
    PERFORM set_config('chronicle.archiving', 'off', true);
    UPDATE streams SET archived = true WHERE stream_id = ANY (p_streams);
    SELECT a.outcome INTO v_outcome FROM chronicle_append(
        ARRAY[p_record_stream], ARRAY[-1], ARRAY[NULL::text], ARRAY[0], ARRAY[1], ARRAY[p_record_id],
        ARRAY['StreamsArchived'], ARRAY[1::smallint],
        ARRAY[p_record_data || jsonb_build_object('events', moved)], ARRAY[p_record_metadata]) a;
    IF v_outcome <> 'ok' THEN
        RAISE EXCEPTION 'chronicle: recording the archival failed: %', v_outcome;
    END IF;
    RETURN moved;
END $$""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    """The archive's events go back into the hot table; the policies and the function go."""
    op.execute("DROP FUNCTION chronicle_archive")
    op.execute("DROP VIEW all_events")
    op.execute(
        "INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, "
        "schema_version, data, metadata, tenant_id, recorded_at) OVERRIDING SYSTEM VALUE "
        "SELECT global_position, event_id, stream_id, stream_version, event_type, schema_version, "
        "data, metadata, tenant_id, recorded_at FROM events_archive"
    )
    op.execute("UPDATE streams SET archived = false WHERE archived")
    op.execute("DROP TABLE events_archive")
    op.execute("DROP TABLE retention_policies")
    op.execute(
        """CREATE OR REPLACE FUNCTION chronicle_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'chronicle: events are append-only; % on events is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$"""
    )
