"""Seals: the per-stream hash chain and a Merkle tree over the whole log, computed after commit.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Until now every append computed its events' chain links inside the append lock, which cost
10-27% of append throughput (single events at 32 producers: 88-89% of the throughput without
it; 100-event appends: 73-94%; measured 2026-12-01, see docs/compliance.md). Appends now store
events only. The sealer (``eventstore/audit/sealer.py``) integrates them afterwards, in global
order, as transparency logs do:

- ``seals``: one row per event, its leaf index in the Merkle tree (0, 1, 2, ... in global
  order), the RFC 9162 leaf hash of its canonical bytes, and its per-stream chain link
  sha256(previous link of the stream || canonical bytes), the first event chaining from the
  empty string, exactly as the chain was computed before.
- ``merkle_nodes``: every complete subtree above the leaves: (level, idx) covers leaves
  [idx * 2^level, (idx + 1) * 2^level). Any inclusion or consistency proof is O(log n)
  of these, read in one query.
- ``checkpoints``: signed tree heads, C2SP signed notes over (origin, size, root).
- ``signing_keys``: the public half of every key that ever signed a checkpoint, so that old
  checkpoints stay verifiable after a rotation. The private key never enters the database.

Seals, nodes and checkpoints are append-only like events. The old ``events.hash`` and
``streams.last_hash`` columns go: the seals recompute the same chain over every event,
including the ones appended before this revision.
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

APPEND_LOCK = 7_291_033_451  # the same lock as revision 0001: fixed forever

TABLES = (
    """CREATE TABLE seals (
        leaf bigint PRIMARY KEY,
        global_position bigint NOT NULL UNIQUE,
        leaf_hash bytea NOT NULL,
        stream_hash bytea NOT NULL,
        sealed_at timestamptz NOT NULL DEFAULT clock_timestamp())""",
    """CREATE TABLE merkle_nodes (
        level smallint NOT NULL CHECK (level > 0),
        idx bigint NOT NULL,
        hash bytea NOT NULL,
        PRIMARY KEY (level, idx))""",
    """CREATE TABLE checkpoints (
        size bigint PRIMARY KEY,
        root bytea NOT NULL,
        note text NOT NULL,
        key_name text NOT NULL,
        signed_at timestamptz NOT NULL DEFAULT clock_timestamp())""",
    """CREATE TABLE signing_keys (
        verifier_key text PRIMARY KEY,
        name text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        retired_at timestamptz)""",
)

APPEND_ONLY = ("seals", "merkle_nodes", "checkpoints")


def upgrade() -> None:
    op.execute(APPEND_SQL)
    op.execute("ALTER TABLE events DROP COLUMN hash")
    op.execute("ALTER TABLE streams DROP COLUMN last_hash")
    op.execute("DROP AGGREGATE chronicle_chain(bytea, bytea)")
    op.execute("DROP FUNCTION chronicle_chain_step")
    for statement in TABLES:
        op.execute(statement)
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION chronicle_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION chronicle_refuse_change()"
        )
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM PUBLIC")


def downgrade() -> None:
    """Back to chains computed in the append. Events appended since keep an empty hash."""
    first = importlib.import_module("migrations.versions.0001_event_log")
    for table in reversed(("signing_keys", *APPEND_ONLY)):
        op.execute(f"DROP TABLE {table}")
    op.execute("ALTER TABLE events ADD COLUMN hash bytea NOT NULL DEFAULT '\\x'")
    op.execute("ALTER TABLE events ALTER COLUMN hash DROP DEFAULT")
    op.execute("ALTER TABLE streams ADD COLUMN last_hash bytea NOT NULL DEFAULT '\\x'")
    op.execute("ALTER TABLE streams ALTER COLUMN last_hash DROP DEFAULT")
    for statement in first.HASH_CHAIN_SQL[1:]:
        op.execute(statement)
    op.execute(first.APPEND_SQL.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))


APPEND_SQL = f"""
-- Appends a batch of requests in one call; returns one row per request, in request order.
--
-- A request is one stream's events with an expected version. The client's group commit puts
-- at most one request per stream, and each event id at most once, into a batch, so every
-- request is decided independently of the others in a set-based pass. Requests that share a
-- group (a multi-stream append) commit together or not at all. A request that fails only
-- gets its outcome row; its neighbours in the batch are written.
--
-- Outcomes: ok | duplicate (every event id already stored, as this request: the original
-- result is returned and nothing is written) | wrong_version | id_conflict | tenant_mismatch
-- | aborted (another request of its group failed).
--
-- Expected version codes: >= 0 exact (0: no events yet), -1 any, -2 no stream,
-- -3 stream exists.
CREATE OR REPLACE FUNCTION chronicle_append(
    p_streams text[], p_expected integer[], p_tenants text[], p_groups integer[],
    p_counts integer[], p_event_ids uuid[], p_types text[], p_schema_versions smallint[],
    p_data jsonb[], p_metadata jsonb[]
) RETURNS TABLE (outcome text, version integer, first_position bigint, last_position bigint,
                 detail text)
LANGUAGE plpgsql
-- The statement below is the same shape for every batch; planning it afresh on each call
-- (PL/pgSQL's default for the first calls) costs more than running it.
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- Gap safety. Readers tail the log by global_position and must never skip an event. A
    -- sequence hands out positions at insert time, not at commit time: if transaction A took
    -- position 10 and B took 11, and B committed first, a reader could see 11, move its
    -- checkpoint past 10, and never see A's event once A commits.
    --
    -- This transaction-scoped lock makes insert order equal commit order: a writer takes it
    -- before it draws any position and holds it until its transaction has committed or rolled
    -- back. PostgreSQL releases a transaction's locks only after its commit is visible to new
    -- snapshots, so the next writer draws its first position only after every lower position
    -- is visible. Any snapshot therefore sees a prefix of the log, less the positions of
    -- rolled-back transactions, which never fill in later. A reader that has seen position P
    -- can never be shown an event below P afterwards, so it never skips one, and it never
    -- waits on a timer for a gap either.
    --
    -- Serialising writers costs little here: the client already funnels its appends into one
    -- transaction at a time (group commit), so the lock is contended only between processes,
    -- and each process still commits whole batches. Every statement below runs after the lock
    -- is held and takes a fresh READ COMMITTED snapshot, so it sees every committed append.
    PERFORM pg_advisory_xact_lock({APPEND_LOCK});

    RETURN QUERY
    WITH req AS (
        SELECT r.idx::integer AS idx, r.stream_id, r.expected, r.tenant_id, r.grp, r.n,
               (sum(r.n) OVER (ORDER BY r.idx) - r.n)::integer AS first_event
        FROM unnest(p_streams, p_expected, p_tenants, p_groups, p_counts)
             WITH ORDINALITY AS r(stream_id, expected, tenant_id, grp, n, idx)
    ),
    -- Stored events that carry one of the batch's ids: a retry, or a reused id. One index
    -- scan for the whole batch; almost always empty.
    found AS (
        SELECT r.idx, count(*)::integer AS n_found,
               bool_and(e.stream_id = r.stream_id)
                 AND max(e.stream_version) - min(e.stream_version) + 1 = count(*) AS same_stream,
               min(e.global_position) AS first_pos, max(e.global_position) AS last_pos,
               max(e.stream_version) AS last_version
        FROM events e
        JOIN req r ON array_position(p_event_ids, e.event_id) - 1 - r.first_event
                      BETWEEN 0 AND r.n - 1
        WHERE e.event_id = ANY (p_event_ids)
        GROUP BY r.idx
    ),
    cur AS (
        SELECT req.*, s.stream_id IS NOT NULL AS stream_exists,
               coalesce(s.version, 0) AS cur_version, s.tenant_id AS stream_tenant,
               coalesce(f.n_found, 0) AS n_found, coalesce(f.same_stream, false) AS same_stream,
               f.first_pos, f.last_pos, f.last_version
        FROM req
        -- LATERAL keeps this an index probe per request: the generic plan cannot know how
        -- few requests a batch has, and a hash join would scan every stream. LIMIT 1 (the key
        -- is unique anyway) stops the planner from flattening it back into a join.
        LEFT JOIN LATERAL (
            SELECT * FROM streams WHERE streams.stream_id = req.stream_id LIMIT 1
        ) s ON true
        LEFT JOIN found f ON f.idx = req.idx
    ),
    judged AS (
        SELECT cur.*, CASE
            WHEN n_found = n AND same_stream THEN 'duplicate'
            WHEN n_found > 0 THEN 'id_conflict'
            WHEN stream_exists AND stream_tenant IS DISTINCT FROM tenant_id THEN 'tenant_mismatch'
            WHEN expected = -1 THEN 'ok'
            WHEN expected = -2 AND NOT stream_exists THEN 'ok'
            WHEN expected = -3 AND stream_exists THEN 'ok'
            WHEN expected = cur_version THEN 'ok'
            ELSE 'wrong_version' END AS verdict
        FROM cur
    ),
    decided AS (
        SELECT judged.*, CASE
            WHEN verdict = 'ok' AND NOT bool_and(verdict IN ('ok', 'duplicate'))
                                        OVER (PARTITION BY grp) THEN 'aborted'
            ELSE verdict END AS final
        FROM judged
    ),
    inserted AS (
        INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version,
                            data, metadata, tenant_id)
        SELECT e.event_id, d.stream_id, d.cur_version + e.k::integer, e.event_type,
               e.schema_version, e.data, e.metadata, d.tenant_id
        FROM decided d
        CROSS JOIN LATERAL unnest(
            p_event_ids[d.first_event + 1 : d.first_event + d.n],
            p_types[d.first_event + 1 : d.first_event + d.n],
            p_schema_versions[d.first_event + 1 : d.first_event + d.n],
            p_data[d.first_event + 1 : d.first_event + d.n],
            p_metadata[d.first_event + 1 : d.first_event + d.n]
        ) WITH ORDINALITY AS e(event_id, event_type, schema_version, data, metadata, k)
        WHERE d.final = 'ok'
        ORDER BY d.idx, e.k
        RETURNING events.stream_id, events.stream_version, events.global_position
    ),
    written AS (
        SELECT i.stream_id, min(i.global_position) AS first_pos, max(i.global_position) AS last_pos,
               max(i.stream_version) AS version
        FROM inserted i GROUP BY i.stream_id
    ),
    -- Data-modifying CTEs run to completion whether or not the final SELECT reads them.
    upserted AS (
        INSERT INTO streams AS s (stream_id, category, tenant_id, version)
        SELECT w.stream_id, split_part(w.stream_id, '-', 1), d.tenant_id, w.version
        FROM written w JOIN decided d ON d.stream_id = w.stream_id
        ON CONFLICT (stream_id) DO UPDATE
            SET version = EXCLUDED.version, updated_at = now()
        RETURNING s.stream_id
    )
    SELECT d.final,
           CASE d.final WHEN 'ok' THEN w.version WHEN 'duplicate' THEN d.last_version
                        ELSE d.cur_version END,
           CASE d.final WHEN 'ok' THEN w.first_pos WHEN 'duplicate' THEN d.first_pos END,
           CASE d.final WHEN 'ok' THEN w.last_pos WHEN 'duplicate' THEN d.last_pos END,
           CASE d.final WHEN 'tenant_mismatch' THEN d.stream_tenant END
    FROM decided d
    LEFT JOIN written w ON w.stream_id = d.stream_id AND d.final = 'ok'
    ORDER BY d.idx;

    -- A wake-up hint for subscribers in other processes; delivered only if we commit.
    PERFORM pg_notify('chronicle_events', '');
END $$
"""
