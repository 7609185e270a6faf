-- Back to 1.2.0: the marks of interrupted runs go (the next run trusts the recorded state again).
CREATE OR REPLACE FUNCTION apply_sync_results(results jsonb)
RETURNS SETOF uuid
LANGUAGE sql AS $$
    UPDATE products p
    SET stripe_product_id  = COALESCE(r.stripe_product_id, p.stripe_product_id),
        stripe_price_id    = COALESCE(r.stripe_price_id, p.stripe_price_id),
        sync_status        = r.sync_status,
        sync_error         = r.sync_error,
        synced_at          = CASE WHEN r.sync_status = 'failed' THEN p.synced_at ELSE now() END,
        sync_content_hash  = COALESCE(r.sync_content_hash, p.sync_content_hash),
        synced_unit_amount = COALESCE(r.synced_unit_amount, p.synced_unit_amount),
        synced_currency    = COALESCE(r.synced_currency, p.synced_currency),
        synced_version     = r.synced_version,
        stripe_drift       = CASE WHEN r.sync_status = 'failed' THEN p.stripe_drift END,
        stripe_drift_at    = CASE WHEN r.sync_status = 'failed' THEN p.stripe_drift_at END
    FROM jsonb_to_recordset(results) AS r(
        id uuid, stripe_product_id text, stripe_price_id text, sync_status text, sync_error text,
        sync_content_hash text, synced_unit_amount bigint, synced_currency text,
        synced_version timestamptz
    )
    WHERE p.id = r.id
    RETURNING p.id;
$$;

DROP INDEX idx_products_needs_sync;
ALTER TABLE products DROP COLUMN needs_sync;
ALTER TABLE products DROP COLUMN sync_run_id;
ALTER TABLE products ADD COLUMN needs_sync boolean GENERATED ALWAYS AS (
    sync_status IN ('pending', 'failed')
    OR synced_version IS DISTINCT FROM updated_at
    OR COALESCE(stripe_drift ->> 'in_sync', '') = 'false'
) STORED;
CREATE INDEX idx_products_needs_sync ON products (sync_partition, id) WHERE needs_sync;

-- archive_old_events as 1.2.0 defined it.
CREATE OR REPLACE FUNCTION archive_old_events(older_than interval, batch_size integer DEFAULT 1000)
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
