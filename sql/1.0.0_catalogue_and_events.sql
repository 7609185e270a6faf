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
    -- Change detection: hash of the product fields last sent, the price last sent, and the CMS
    -- version (its updated_at) that Stripe reflects. An edit made while a run is in flight changes
    -- updated_at, so the row stays in scope for the next run even though this run synced it.
    sync_content_hash   text,
    synced_unit_amount  bigint,
    synced_currency     text,
    synced_version      timestamptz,
    -- Drift seen in Stripe (edited or archived in the dashboard), recorded by the webhook handlers.
    stripe_drift        jsonb,
    stripe_drift_at     timestamptz,
    -- What the next migration run must look at: never synced, failed, edited since, or drifted.
    needs_sync          boolean GENERATED ALWAYS AS (
                            sync_status IN ('pending', 'failed')
                            OR synced_version IS DISTINCT FROM updated_at
                            -- the webhook handlers keep the newest event seen even when it
                            -- matches; only a real difference puts the row back in scope
                            OR COALESCE(stripe_drift ->> 'in_sync', '') = 'false'
                        ) STORED,
    -- A stable bucket of the id (0-15): the Dagster partition the row belongs to.
    sync_partition      smallint GENERATED ALWAYS AS (abs(hashtext(id::text)) % 16) STORED
);

CREATE INDEX idx_products_needs_sync ON products (sync_partition, id) WHERE needs_sync;
CREATE INDEX idx_products_partition ON products (sync_partition, id);

-- updated_at is the CMS edit time: only the columns editors own move it, so writing the sync
-- state back does not make a row look edited.
CREATE FUNCTION products_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.name, NEW.description, NEW.price, NEW.currency, NEW.images, NEW.active, NEW.metadata)
       IS DISTINCT FROM
       (OLD.name, OLD.description, OLD.price, OLD.currency, OLD.images, OLD.active, OLD.metadata)
    THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER products_set_updated_at
    BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION products_set_updated_at();

-- The migration's checkpoint: the sync state of a batch of products in one call. It only updates
-- rows that exist (a product deleted in the CMS meanwhile is not re-created as an empty row), and
-- returns the ids it updated.
CREATE FUNCTION apply_sync_results(results jsonb)
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

-- Snapshots of product rows taken by a migration run before it writes anything; rollback
-- restores them.
CREATE TABLE products_backup (
    run_id      text        NOT NULL,
    product_id  uuid        NOT NULL,
    row_data    jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, product_id)
);

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
