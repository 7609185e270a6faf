-- 1.5.0: what the catalogue sensor asks every tick, in one query through the partial indexes:
-- per bucket, the rows a migration run would look at (needs_sync) and the deleted rows whose
-- Stripe product is not archived yet, with the newest edit, drift and deletion among them. A
-- failed row nobody touched since its failure (invalid in the CMS, refused by Stripe) is left
-- out: running again would fail it again; an edit brings it back.
CREATE FUNCTION catalog_pending_work()
RETURNS TABLE (
    sync_partition    smallint,
    rows_pending      bigint,
    newest_edit       timestamptz,
    newest_drift      timestamptz,
    deletions_pending bigint,
    newest_deletion   timestamptz
)
LANGUAGE sql STABLE AS $$
    WITH pending AS (
        SELECT sync_partition, count(*) AS n, max(updated_at) AS newest_edit,
               max(stripe_drift_at) AS newest_drift
        FROM products
        WHERE needs_sync
          AND NOT (sync_status = 'failed'
                   AND synced_version IS NOT DISTINCT FROM updated_at
                   AND sync_run_id IS NULL
                   AND COALESCE(stripe_drift ->> 'in_sync', '') <> 'false')
        GROUP BY sync_partition
    ), deleted AS (
        SELECT sync_partition, count(*) AS n, max(deleted_at) AS newest
        FROM products_deleted
        WHERE archived_at IS NULL
        GROUP BY sync_partition
    )
    SELECT sync_partition, COALESCE(p.n, 0), p.newest_edit, p.newest_drift, COALESCE(d.n, 0),
           d.newest
    FROM pending p
    FULL JOIN deleted d USING (sync_partition)
    ORDER BY sync_partition;
$$;
