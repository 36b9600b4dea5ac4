"""The embedded store: a directory with one SQLite database (the truth) and HNSW index files
(derived). :class:`EmbeddedStore` is the store backend (the catalog), :class:`CollectionStorage`
the collection backend."""

from .catalog import EmbeddedStore
from .collection import CollectionStorage

__all__ = ["EmbeddedStore", "CollectionStorage"]
