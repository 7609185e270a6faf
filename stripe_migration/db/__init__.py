"""Database plumbing: connection URLs and the versioned schema migrations in ``sql/``."""
