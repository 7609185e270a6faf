-- 1.2.0: processing batches, and archival of old events into stripe_events_archive.

CREATE TABLE stripe_event_batches (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    batch_id         text        NOT NULL UNIQUE,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processing', 'completed', 'partial', 'failed')),
    event_count      integer     NOT NULL DEFAULT 0,
    processed_count  integer     NOT NULL DEFAULT 0,
    failed_count     integer     NOT NULL DEFAULT 0,
    started_at       timestamptz,
    completed_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER stripe_event_batches_set_updated_at
    BEFORE UPDATE ON stripe_event_batches
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE stripe_events
    ADD COLUMN batch_id text REFERENCES stripe_event_batches (batch_id) ON DELETE SET NULL;

CREATE INDEX idx_stripe_events_batch_id
    ON stripe_events (batch_id)
    WHERE batch_id IS NOT NULL;

-- Archived events keep every column they had, and their attempt history travels with them as a
-- JSON array (one object per stripe_event_processing row), so nothing is dropped silently.
CREATE TABLE stripe_events_archive (
    id                   uuid PRIMARY KEY,
    event_id             text        NOT NULL UNIQUE,
    type                 text        NOT NULL,
    payload              jsonb       NOT NULL,
    livemode             boolean     NOT NULL,
    api_version          text,
    created_at           timestamptz NOT NULL,
    received_at          timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    metadata             jsonb       NOT NULL,
    processed_at         timestamptz,
    processing_attempts  integer     NOT NULL,
    batch_id             text,
    processing_history   jsonb       NOT NULL DEFAULT '[]'::jsonb,
    archived_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_stripe_events_archive_created_at ON stripe_events_archive (created_at);

-- Moves at most batch_size events created before now() - older_than, oldest first, into the
-- archive with their attempt history, in one statement, and returns how many it moved. Call it
-- until it returns 0. Two callers at once take disjoint rows (SKIP LOCKED); a second call after
-- the first finds nothing left to move.
CREATE FUNCTION archive_old_events(older_than interval, batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    moved integer;
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'archive_old_events: older_than must be a non-negative interval, got %', older_than;
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'archive_old_events: batch_size must be a positive integer, got %', batch_size;
    END IF;

    WITH victims AS MATERIALIZED (
        SELECT e.id, e.event_id
        FROM stripe_events e
        WHERE e.created_at < now() - older_than
        ORDER BY e.created_at, e.id
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    ),
    history AS (
        SELECT p.event_id,
               jsonb_agg(to_jsonb(p) - 'event_id' ORDER BY p.attempt_number) AS attempts
        FROM stripe_event_processing p
        JOIN victims v ON v.event_id = p.event_id
        GROUP BY p.event_id
    ),
    dropped_history AS (
        DELETE FROM stripe_event_processing p
        USING victims v
        WHERE p.event_id = v.event_id
    ),
    deleted AS (
        DELETE FROM stripe_events e
        USING victims v
        WHERE e.id = v.id
        RETURNING e.*
    ),
    archived AS (
        INSERT INTO stripe_events_archive (
            id, event_id, type, payload, livemode, api_version, created_at, received_at,
            updated_at, metadata, processed_at, processing_attempts, batch_id, processing_history
        )
        SELECT d.id, d.event_id, d.type, d.payload, d.livemode, d.api_version, d.created_at,
               d.received_at, d.updated_at, d.metadata, d.processed_at, d.processing_attempts,
               d.batch_id, COALESCE(h.attempts, '[]'::jsonb)
        FROM deleted d
        LEFT JOIN history h ON h.event_id = d.event_id
        ON CONFLICT (event_id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO moved FROM deleted;

    RETURN moved;
END;
$$;
