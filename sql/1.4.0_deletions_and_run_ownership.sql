-- 1.4.0: what the catalogue needs to stay right across many runs.
--
-- * Deletions leave a trace. A row deleted from `products` leaves a tombstone in
--   `products_deleted` (a trigger, so every way of deleting counts: the Supabase dashboard, SQL,
--   the API). The next migration run archives the Stripe product of each pending tombstone
--   (never deletes it) and records when and by which run. Inserting a row again under a deleted
--   id (an editor restoring it) removes its tombstone: the row is a product again.
-- * The checkpoint records which migration run wrote the row's sync state last
--   (`synced_run_id`): a rollback of run R only touches the rows R was the last to write, so it
--   never undoes a later run's work or an editor's.
-- * The checkpoint records the metadata keys last sent to Stripe (`synced_metadata_keys`, a JSON
--   array). Stripe merges metadata on update, so a key removed in the CMS must be sent with an
--   empty value; NULL (rows synced before 1.4.0) means "unknown": the next update of such a row
--   reads the product's keys from Stripe first.
-- * `price_key_generation`: the generation of the idempotency key of the row's next new price.
--   Stripe saves and replays the first result of a key for 24 hours, failures included; after a
--   replayed failure and a check that the price does not exist, the pipeline records a new
--   generation here before it sends the create again, so a resumed run uses the same new key.

ALTER TABLE products
    ADD COLUMN synced_run_id text,
    ADD COLUMN synced_metadata_keys jsonb,
    ADD COLUMN price_key_generation integer NOT NULL DEFAULT 0;

CREATE TABLE products_deleted (
    id                 uuid PRIMARY KEY,             -- the deleted row's CMS id
    stripe_product_id  text,                         -- its recorded Stripe product, if any
    sync_partition     smallint    NOT NULL,         -- its catalogue bucket (Dagster partition)
    row_data           jsonb,                        -- the row as it was when deleted
    deleted_at         timestamptz NOT NULL DEFAULT now(),
    archived_at        timestamptz,                  -- when a run archived its Stripe product
    archived_run_id    text                          -- which run did
);

CREATE INDEX idx_products_deleted_pending ON products_deleted (sync_partition, id)
    WHERE archived_at IS NULL;

CREATE FUNCTION products_record_deletion() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO products_deleted (id, stripe_product_id, sync_partition, row_data)
    VALUES (OLD.id, OLD.stripe_product_id, OLD.sync_partition, to_jsonb(OLD))
    ON CONFLICT (id) DO UPDATE
        SET stripe_product_id = EXCLUDED.stripe_product_id,
            sync_partition    = EXCLUDED.sync_partition,
            row_data          = EXCLUDED.row_data,
            deleted_at        = now(),
            archived_at       = NULL,
            archived_run_id   = NULL;
    RETURN OLD;
END;
$$;

CREATE TRIGGER products_record_deletion
    AFTER DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION products_record_deletion();

CREATE FUNCTION products_forget_deletion() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM products_deleted WHERE id = NEW.id;
    RETURN NEW;
END;
$$;

CREATE TRIGGER products_forget_deletion
    AFTER INSERT ON products
    FOR EACH ROW EXECUTE FUNCTION products_forget_deletion();

-- The bucket of a CMS id, as products.sync_partition computes it (for ids that have no row).
CREATE FUNCTION cms_partition(cms_id text) RETURNS smallint
LANGUAGE sql IMMUTABLE AS $$
    SELECT (abs(hashtext(cms_id)) % 16)::smallint;
$$;

-- Which of `ids` (a JSON array of texts: the CMS ids found on Stripe products) are not rows of
-- `products`, with their bucket. Texts that are not uuids are left out (not ours).
CREATE FUNCTION cms_ids_without_row(ids jsonb)
RETURNS TABLE (id uuid, sync_partition smallint)
LANGUAGE sql STABLE AS $$
    SELECT candidate.id::uuid, cms_partition(candidate.id::uuid::text)
    FROM jsonb_array_elements_text(ids) AS candidate(id)
    WHERE candidate.id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
      AND NOT EXISTS (SELECT 1 FROM products p WHERE p.id = candidate.id::uuid);
$$;

-- A run archived the Stripe products of these deleted rows: `results` is a JSON array of
-- {"id", "stripe_product_id", "run_id"}. Also records Stripe products found carrying a CMS id
-- that no row has (deleted before tombstones existed), so they are not looked for again.
CREATE FUNCTION record_deletions_archived(results jsonb)
RETURNS SETOF uuid
LANGUAGE sql AS $$
    INSERT INTO products_deleted AS d (id, stripe_product_id, sync_partition, archived_at, archived_run_id)
    SELECT r.id, r.stripe_product_id, cms_partition(r.id::text), now(), r.run_id
    FROM jsonb_to_recordset(results) AS r(id uuid, stripe_product_id text, run_id text)
    WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = r.id)
    ON CONFLICT (id) DO UPDATE
        SET archived_at       = now(),
            archived_run_id   = EXCLUDED.archived_run_id,
            stripe_product_id = COALESCE(d.stripe_product_id, EXCLUDED.stripe_product_id)
    RETURNING d.id;
$$;

-- The checkpoint, as in 1.3.0, now also recording the run that wrote it and the metadata keys
-- sent to Stripe.
CREATE OR REPLACE FUNCTION apply_sync_results(results jsonb)
RETURNS SETOF uuid
LANGUAGE sql AS $$
    UPDATE products p
    SET stripe_product_id    = COALESCE(r.stripe_product_id, p.stripe_product_id),
        stripe_price_id      = COALESCE(r.stripe_price_id, p.stripe_price_id),
        sync_status          = r.sync_status,
        sync_error           = r.sync_error,
        synced_at            = CASE WHEN r.sync_status = 'failed' THEN p.synced_at ELSE now() END,
        sync_content_hash    = COALESCE(r.sync_content_hash, p.sync_content_hash),
        synced_unit_amount   = COALESCE(r.synced_unit_amount, p.synced_unit_amount),
        synced_currency      = COALESCE(r.synced_currency, p.synced_currency),
        synced_version       = r.synced_version,
        stripe_drift         = CASE WHEN r.sync_status = 'failed' THEN p.stripe_drift END,
        stripe_drift_at      = CASE WHEN r.sync_status = 'failed' THEN p.stripe_drift_at END,
        sync_run_id          = NULL,
        synced_run_id        = COALESCE(r.run_id, p.synced_run_id),
        synced_metadata_keys = COALESCE(r.synced_metadata_keys, p.synced_metadata_keys)
    FROM jsonb_to_recordset(results) AS r(
        id uuid, stripe_product_id text, stripe_price_id text, sync_status text, sync_error text,
        sync_content_hash text, synced_unit_amount bigint, synced_currency text,
        synced_version timestamptz, run_id text, synced_metadata_keys jsonb
    )
    WHERE p.id = r.id
    RETURNING p.id;
$$;

-- A rollback gives rows their sync state from before a run, and nothing else: only the sync
-- columns are written, only on rows that still exist, and only on rows the rolled-back run was
-- the last to write (`synced_run_id`). `states` is a JSON array of the backed-up sync columns
-- with `id`; `run_id` the run rolled back. Returns the ids restored.
CREATE FUNCTION restore_sync_state(states jsonb, run_id text)
RETURNS SETOF uuid
LANGUAGE sql AS $$
    UPDATE products p
    SET stripe_product_id    = s.stripe_product_id,
        stripe_price_id      = s.stripe_price_id,
        sync_status          = COALESCE(s.sync_status, 'pending'),
        sync_error           = s.sync_error,
        synced_at            = s.synced_at,
        sync_content_hash    = s.sync_content_hash,
        synced_unit_amount   = s.synced_unit_amount,
        synced_currency      = s.synced_currency,
        synced_version       = s.synced_version,
        sync_run_id          = NULL,
        synced_run_id        = s.synced_run_id,
        synced_metadata_keys = s.synced_metadata_keys
    FROM jsonb_to_recordset(states) AS s(
        id uuid, stripe_product_id text, stripe_price_id text, sync_status text, sync_error text,
        synced_at timestamptz, sync_content_hash text, synced_unit_amount bigint,
        synced_currency text, synced_version timestamptz, synced_run_id text,
        synced_metadata_keys jsonb
    )
    WHERE p.id = s.id
      AND p.synced_run_id IS NOT DISTINCT FROM restore_sync_state.run_id
    RETURNING p.id;
$$;
