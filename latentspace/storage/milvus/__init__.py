"""The Milvus backend (``pip install 'latentspace[milvus]'``): see :mod:`.store`."""

from .store import MilvusStore, alias_of, name_of, parse_uri

__all__ = ["MilvusStore", "alias_of", "name_of", "parse_uri"]
