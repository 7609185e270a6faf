-- Back to an empty schema.
DROP TABLE payment_recovery_attempts;
DROP TABLE stripe_events;
DROP TABLE products_backup;
DROP FUNCTION apply_sync_results(jsonb);
DROP TABLE products;
DROP FUNCTION products_set_updated_at();
DROP FUNCTION set_updated_at();
