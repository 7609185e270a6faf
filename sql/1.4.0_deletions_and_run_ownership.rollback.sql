-- Back to 1.3.0: deletions leave no trace again, the checkpoint forgets which run wrote it and
-- which metadata keys it sent; price keys lose their generation.
DROP FUNCTION restore_sync_state(jsonb, text);
DROP FUNCTION record_deletions_archived(jsonb);
DROP FUNCTION cms_ids_without_row(jsonb);
DROP FUNCTION cms_partition(text);
DROP TRIGGER products_forget_deletion ON products;
DROP FUNCTION products_forget_deletion();
DROP TRIGGER products_record_deletion ON products;
DROP FUNCTION products_record_deletion();
DROP TABLE products_deleted;

-- The checkpoint as 1.3.0 defined it.
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
        stripe_drift_at    = CASE WHEN r.sync_status = 'failed' THEN p.stripe_drift_at END,
        sync_run_id        = NULL
    FROM jsonb_to_recordset(results) AS r(
        id uuid, stripe_product_id text, stripe_price_id text, sync_status text, sync_error text,
        sync_content_hash text, synced_unit_amount bigint, synced_currency text,
        synced_version timestamptz
    )
    WHERE p.id = r.id
    RETURNING p.id;
$$;

ALTER TABLE products
    DROP COLUMN price_key_generation,
    DROP COLUMN synced_metadata_keys,
    DROP COLUMN synced_run_id;
