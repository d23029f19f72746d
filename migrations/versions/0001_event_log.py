"""The event log: events, streams, snapshots, projection checkpoints and the append function.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The one lock every writer of `events` takes; see chronicle_append below for why.
APPEND_LOCK = 7_291_033_451  # arbitrary, fixed forever: changing it would let two writers race


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("stream_id", sa.Text, primary_key=True),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.Text),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_hash", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "events",
        # CACHE 1 (the default) is required: with a per-backend cache, two processes would
        # draw interleaved blocks of positions, and commit order would no longer be position
        # order, which is what makes readers gap-safe (see chronicle_append).
        sa.Column("global_position", sa.BigInteger, sa.Identity(always=True, cache=1), primary_key=True),
        sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("stream_id", sa.Text, nullable=False),
        sa.Column("stream_version", sa.Integer, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("schema_version", sa.SmallInteger, nullable=False),
        sa.Column("data", pg.JSONB, nullable=False),
        sa.Column("metadata", pg.JSONB, nullable=False),
        sa.Column("tenant_id", sa.Text),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("event_id", name="events_event_id_key"),
        sa.UniqueConstraint("stream_id", "stream_version", name="events_stream_version_key"),
    )
    # read_all filters: each index ends in global_position so a filtered read is one range scan.
    op.create_index("events_type_idx", "events", ["event_type", "global_position"])
    op.create_index("events_tenant_idx", "events", ["tenant_id", "global_position"])
    op.execute("CREATE INDEX events_category_idx ON events (split_part(stream_id, '-', 1), global_position)")
    # recorded_at grows with global_position, so a BRIN index answers time ranges for almost
    # nothing on the write path.
    op.execute("CREATE INDEX events_recorded_at_idx ON events USING brin (recorded_at)")

    op.create_table(
        "snapshots",
        sa.Column("stream_id", sa.Text, primary_key=True),
        sa.Column("stream_version", sa.Integer, primary_key=True),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("state", pg.JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )

    for statement in (*APPEND_ONLY_SQL, *HASH_CHAIN_SQL, APPEND_SQL):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS chronicle_append")
    op.execute("DROP AGGREGATE IF EXISTS chronicle_chain(bytea, bytea)")
    op.execute("DROP FUNCTION IF EXISTS chronicle_chain_step")
    op.execute("DROP FUNCTION IF EXISTS chronicle_canonical")
    op.drop_table("projection_checkpoints")
    op.drop_table("snapshots")
    op.drop_table("events")
    op.execute("DROP FUNCTION IF EXISTS chronicle_refuse_change")
    op.drop_table("streams")


APPEND_ONLY_SQL = (
    """
CREATE FUNCTION chronicle_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'chronicle: events are append-only; % on events is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$""",
    """CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION chronicle_refuse_change()""",
    """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_refuse_change()""",
    "REVOKE UPDATE, DELETE, TRUNCATE ON events FROM PUBLIC",
)

# Each event's hash is sha256(previous hash of its stream || canonical bytes of the event);
# a stream's first event chains from the empty string. The canonical bytes are the event's
# fields joined by newlines, data and metadata last as jsonb text. No field can hold a raw
# newline (ids, types and tenants are validated; jsonb text escapes it), so the join is
# unambiguous, and a verifier recomputes the bytes from the stored row alone. The function
# is STABLE (it formats values) so the planner inlines it into the append statement.
HASH_CHAIN_SQL = (
    """
CREATE FUNCTION chronicle_canonical(
    event_id uuid, stream_id text, stream_version integer, event_type text,
    schema_version smallint, tenant_id text, recorded_at timestamptz, data jsonb, metadata jsonb
) RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT convert_to(concat_ws(E'\\n', event_id, stream_id, stream_version, event_type,
        schema_version, coalesce(tenant_id, ''), (extract(epoch FROM recorded_at) * 1000000)::bigint,
        data, metadata), 'UTF8')
$$""",
    # PL/pgSQL, not SQL: an aggregate's transition function is never inlined, and a SQL
    # function call costs several times a PL/pgSQL one there.
    """
CREATE FUNCTION chronicle_chain_step(state bytea, seed bytea, canonical bytea)
RETURNS bytea LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN sha256(coalesce(state, seed) || canonical);
END $$""",
    # Used as a running window aggregate: chronicle_chain(seed, canonical) OVER (ORDER BY
    # version) yields each event's chained hash in one set-based pass.
    "CREATE AGGREGATE chronicle_chain(bytea, bytea) (SFUNC = chronicle_chain_step, STYPE = bytea)",
)

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
CREATE FUNCTION chronicle_append(
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
               coalesce(s.last_hash, '\\x'::bytea) AS last_hash,
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
                            data, metadata, tenant_id, hash)
        SELECT e.event_id, d.stream_id, d.cur_version + e.k::integer, e.event_type,
               e.schema_version, e.data, e.metadata, d.tenant_id,
               chronicle_chain(d.last_hash, chronicle_canonical(
                   e.event_id, d.stream_id, d.cur_version + e.k::integer, e.event_type,
                   e.schema_version, d.tenant_id, now(), e.data, e.metadata))
                   OVER (PARTITION BY d.idx ORDER BY e.k)
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
        RETURNING events.stream_id, events.stream_version, events.global_position, events.hash
    ),
    written AS (
        SELECT i.stream_id, min(i.global_position) AS first_pos, max(i.global_position) AS last_pos,
               max(i.stream_version) AS version,
               (array_agg(i.hash ORDER BY i.stream_version DESC))[1] AS last_hash
        FROM inserted i GROUP BY i.stream_id
    ),
    -- Data-modifying CTEs run to completion whether or not the final SELECT reads them.
    upserted AS (
        INSERT INTO streams AS s (stream_id, category, tenant_id, version, last_hash)
        SELECT w.stream_id, split_part(w.stream_id, '-', 1), d.tenant_id, w.version, w.last_hash
        FROM written w JOIN decided d ON d.stream_id = w.stream_id
        ON CONFLICT (stream_id) DO UPDATE
            SET version = EXCLUDED.version, last_hash = EXCLUDED.last_hash, updated_at = now()
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
