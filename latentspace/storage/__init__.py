"""Storage backends. The embedded default: SQLite (truth) + HNSW index files (derived)."""
