-- Back to 1.1.0. Archived events return to stripe_events with their attempt history, so the
-- rows of every table that still exists are kept; the batch links and the batches go.
INSERT INTO stripe_events (
    id, event_id, type, payload, livemode, api_version, created_at, received_at, updated_at,
    metadata, processed_at, processing_attempts
)
SELECT id, event_id, type, payload, livemode, api_version, created_at, received_at, updated_at,
       metadata, processed_at, processing_attempts
FROM stripe_events_archive
ON CONFLICT (event_id) DO NOTHING;

INSERT INTO stripe_event_processing (
    id, event_id, attempt_number, status, error_message, started_at, completed_at, created_at,
    updated_at
)
SELECT (h->>'id')::uuid, a.event_id, (h->>'attempt_number')::integer, h->>'status',
       h->>'error_message', (h->>'started_at')::timestamptz, (h->>'completed_at')::timestamptz,
       (h->>'created_at')::timestamptz, (h->>'updated_at')::timestamptz
FROM stripe_events_archive a
CROSS JOIN LATERAL jsonb_array_elements(a.processing_history) AS h
ON CONFLICT DO NOTHING;

DROP FUNCTION archive_old_events(interval, integer);
DROP TABLE stripe_events_archive;
DROP INDEX idx_stripe_events_batch_id;
ALTER TABLE stripe_events DROP COLUMN batch_id;
DROP TABLE stripe_event_batches;
