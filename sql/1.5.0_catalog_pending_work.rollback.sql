-- Back to 1.4.0: the catalogue sensor's question goes away with it.
DROP FUNCTION catalog_pending_work();
