-- Back to 1.0.0. Every event row stays; the attempt history and the processing columns go.
DROP TABLE stripe_event_processing;
DROP INDEX idx_stripe_events_unprocessed;
ALTER TABLE stripe_events
    DROP COLUMN processing_attempts,
    DROP COLUMN processed_at,
    DROP COLUMN metadata;
