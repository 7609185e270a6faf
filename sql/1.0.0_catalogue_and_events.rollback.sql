-- Back to an empty schema.
DROP TABLE payment_recovery_attempts;
DROP TABLE stripe_events;
DROP TABLE products;
DROP FUNCTION set_updated_at();
