-- 1.1.0: the webhook handler's processing bookkeeping: metadata, processed_at and attempt counts
-- on each event, and one row per processing attempt.

ALTER TABLE stripe_events
    ADD COLUMN metadata            jsonb   NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN processed_at        timestamptz,
    ADD COLUMN processing_attempts integer NOT NULL DEFAULT 0;

-- The processing job's queue: events not yet processed, oldest first.
CREATE INDEX idx_stripe_events_unprocessed
    ON stripe_events (created_at)
    WHERE processed_at IS NULL;

CREATE TABLE stripe_event_processing (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id        text        NOT NULL REFERENCES stripe_events (event_id),
    attempt_number  integer     NOT NULL CHECK (attempt_number > 0),
    status          text        NOT NULL DEFAULT 'started'
                    CHECK (status IN ('started', 'succeeded', 'failed', 'ignored')),
    error_message   text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, attempt_number)
);

CREATE TRIGGER stripe_event_processing_set_updated_at
    BEFORE UPDATE ON stripe_event_processing
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
