-- 1.0.0: the CMS product catalogue with its Stripe sync columns, the raw webhook events table,
-- and failed-payment recovery attempts.
-- gen_random_uuid() is built into PostgreSQL 13+; uuid_generate_v4() would need the uuid-ossp extension.

CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE products (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text,
    description         text,
    -- As the CMS stores it: major units, typed by editors ("19.99", "12,50", "€ 12.50").
    -- Parsed into integer cents by the pipeline, which refuses what it cannot read exactly.
    price               text,
    currency            text,
    images              jsonb       NOT NULL DEFAULT '[]'::jsonb,
    active              boolean     NOT NULL DEFAULT true,
    metadata            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- Stripe sync state, written back by the migration after every batch (the checkpoint).
    stripe_product_id   text UNIQUE,
    stripe_price_id     text,
    sync_status         text        NOT NULL DEFAULT 'pending'
                        CHECK (sync_status IN ('pending', 'synced', 'failed', 'archived')),
    sync_error          text,
    synced_at           timestamptz,
    -- Change detection: hash of the product fields last sent, and the price last sent.
    sync_content_hash   text,
    synced_unit_amount  bigint,
    synced_currency     text,
    -- Drift seen in Stripe (edited or archived in the dashboard), recorded by the webhook handlers.
    stripe_drift        jsonb,
    stripe_drift_at     timestamptz
);

CREATE INDEX idx_products_sync_status ON products (sync_status);

CREATE TRIGGER products_set_updated_at
    BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE stripe_events (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id     text        NOT NULL UNIQUE,
    type         text        NOT NULL,
    payload      jsonb       NOT NULL,
    livemode     boolean     NOT NULL DEFAULT false,
    api_version  text,
    created_at   timestamptz NOT NULL,               -- the event's `created`, from Stripe
    received_at  timestamptz NOT NULL DEFAULT now(), -- when we stored it
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_stripe_events_type ON stripe_events (type);
CREATE INDEX idx_stripe_events_created_at ON stripe_events (created_at);

CREATE TRIGGER stripe_events_set_updated_at
    BEFORE UPDATE ON stripe_events
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE payment_recovery_attempts (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- One recovery per failure event; no foreign key so archiving the event keeps the attempt.
    event_id           text        NOT NULL UNIQUE,
    event_type         text        NOT NULL,
    customer_id        text,
    invoice_id         text,
    payment_intent_id  text,
    amount             bigint,
    currency           text,
    failure_code       text,
    failure_message    text,
    status             text        NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'in_progress', 'recovered', 'abandoned')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER payment_recovery_attempts_set_updated_at
    BEFORE UPDATE ON payment_recovery_attempts
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
