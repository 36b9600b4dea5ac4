"""The Store facade: opens a storage backend by URI and hands out Collections.

A store backend keeps collections (the catalog, records, indexes); this facade adds what
belongs above storage: the encoder a collection is bound to (checked against the stored
space), the default encoder, and :class:`Collection` objects. ``open_store`` picks the
backend from the URI: a path is the embedded store (SQLite + HNSW in a directory).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import AlreadyExistsError, InvalidInputError, NotFoundError
from ..core.space import METRICS, SpaceSpec
from ..core.validation import check_choice, check_metadata, check_name
from ..storage.index import HnswParams
from ..storage.base import CollectionInfo, StoreBackend
from ..storage.embedded import EmbeddedStore
from .collection import Collection

if TYPE_CHECKING:
    from ..embed.base import Encoder


class Store:
    """Where collections live. Each collection is bound to one space: an encoder's, or a
    :class:`SpaceSpec` for vectors you bring.

    The embedded store (a directory) allows one writer at a time (SQLite's lock;
    :class:`StoreLockedError` after ``lock_timeout`` seconds) and any number of reader
    processes, each seeing committed writes on its next query.
    """

    def __init__(self, backend: StoreBackend):
        self._backend = backend

    # -- the backend's identity and lifetime ---------------------------------------------
    @property
    def path(self) -> Path:
        return self._backend.path

    @property
    def messages(self) -> list[str]:
        """What the store did on its own (index rebuilds, replays), oldest first."""
        return self._backend.messages

    @property
    def _lock(self):
        """One thread at a time on the backend's connection and indexes."""
        return self._backend._lock

    def close(self) -> None:
        """Save derived index files that are behind, and close the store."""
        self._backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def backend(self) -> StoreBackend:
        """The storage backend under this store (what ``latentspace serve`` serves)."""
        return self._backend

    @property
    def capabilities(self):
        """What the backend supports (see :class:`latentspace.storage.base.Capabilities`)."""
        return self._backend.capabilities

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})" if self.path is not None else f"Store({self._backend!r})"

    def disk_bytes(self) -> int:
        return self._backend.disk_bytes()

    # -- collections ------------------------------------------------------------------------
    def create_collection(
        self,
        name: str,
        *,
        encoder: Encoder | None = None,
        space: SpaceSpec | None = None,
        metric: str | None = None,
        hnsw: HnswParams | dict | None = None,
        metadata: dict | None = None,
    ) -> Collection:
        """Create a collection bound to one space: an encoder's, or a SpaceSpec for your own vectors.
        With neither, the default encoder's (all-MiniLM-L6-v2)."""
        if not (isinstance(name, str) and name.startswith("~")):  # the store's own: shadows, retired spaces
            check_name(name)
        if encoder is not None and space is not None:
            raise InvalidInputError(
                "create_collection takes encoder= (embed documents with it) or space= (a SpaceSpec for vectors you "
                "bring), not both."
            )
        if metric is not None:
            check_choice(metric, "metric", "create_collection", METRICS)
        if space is not None and not isinstance(space, SpaceSpec):
            raise InvalidInputError(f"space= must be a SpaceSpec. Got {type(space).__name__}.")
        params = hnsw if isinstance(hnsw, HnswParams) else HnswParams.from_dict(hnsw)
        meta = check_metadata(metadata)
        if encoder is None and space is None:
            from ..embed import default_encoder

            encoder = default_encoder()
        spec = encoder.spec if encoder is not None else space
        if metric is not None:
            spec = spec.replace(metric=metric)
        self._backend.create_collection(name, spec, encoder.config() if encoder is not None else None, params, meta)
        return self.get_collection(name, encoder=encoder)

    def get_collection(self, name: str, *, encoder: Encoder | None = None) -> Collection:
        """Open a collection. An encoder, when given, must produce the collection's space."""
        if not (isinstance(name, str) and name.startswith("~")):
            check_name(name)
        info, storage = self._backend.open_collection(name)
        if encoder is not None and info.spec.differences(encoder.spec):
            info.spec.require_same(encoder.spec, f"Opening collection {name!r} with {encoder!r}")
        return Collection(self, storage, info, encoder if encoder is not None else self._backend.encoder_for(info))

    def get_or_create_collection(self, name: str, **options: Any) -> Collection:
        try:
            return self.get_collection(name, encoder=options.get("encoder"))
        except NotFoundError:
            try:
                return self.create_collection(name, **options)
            except AlreadyExistsError:  # created by another process meanwhile
                return self.get_collection(name, encoder=options.get("encoder"))

    def list_names(self) -> list[str]:
        return self._backend.list_names()

    def list_collections(self) -> list[CollectionInfo]:
        return self._backend.list_collections()

    def collection_info(self, name: str) -> CollectionInfo:
        return self._backend.collection_info(name)

    def delete_collection(self, name: str) -> None:
        self._backend.delete_collection(name)

    def rename_collection(self, name: str, new_name: str) -> None:
        """Give a collection a new name, atomically. Its history, retired spaces and any
        unfinished migration follow it; handles opened under the old name keep working."""
        self._backend.rename_collection(name, new_name)

    # -- spaces over time: migration's switch, rollback, history ------------------------------
    def _swap(self, name: str, new_internal: str, action: str) -> None:
        """Atomically give ``name`` to the collection ``new_internal`` and retire the current one."""
        self._backend.swap(name, new_internal, action)

    def collection_history(self, name: str) -> list[dict[str, Any]]:
        """The spaces ``name`` has had, oldest first: each switch and rollback."""
        return self._backend.collection_history(name)

    def rollback_collection(self, name: str) -> None:
        """Give ``name`` back to the space it had before its last switch (kept until dropped)."""
        self._backend.rollback_collection(name)

    def drop_retired(self, name: str) -> int:
        """Delete the retired spaces of ``name`` (no rollback past this). Returns how many."""
        return self._backend.drop_retired(name)

    def retired_spaces(self, name: str) -> list[CollectionInfo]:
        """The spaces ``name`` had before its switches, still kept, oldest first (open one with
        ``get_collection(info.name)`` to read or compare it)."""
        return [self._backend.open_collection(n)[0] for n in self._backend.retired_names(name)]


MEMORY = ":memory:"


def open_store(uri: str | os.PathLike, **options: Any) -> Store:
    """Open (or create) a store. ``uri``: a directory path, the embedded store (options:
    ``lock_timeout``, ``create``, ``verbose``, ``huge_pages``: False keeps the HNSW index
    on ordinary 4 KiB pages, see :mod:`latentspace.storage.hugepages`); ``":memory:"``, collections in this
    process's memory (exact search; gone when it ends); ``"milvus://host:19530"`` (also
    ``milvus://user:password@host:19530/db`` and ``milvus+https://``; options ``token``,
    ``db_name``, ``timeout``) or ``"milvus+lite:///folder"``, collections in Milvus
    (``pip install 'latentspace[milvus]'``); ``"http://host:port"``, a store served by
    ``latentspace serve`` (options ``api_key``, else ``$LATENTSPACE_API_KEY``, and
    ``timeout``): see :func:`connect`."""
    if not isinstance(uri, (str, os.PathLike)):
        raise InvalidInputError(f"open_store takes a path or ':memory:'. Got {type(uri).__name__}.")
    if uri == MEMORY:
        from ..storage.memory import MemoryStore

        if options:
            raise InvalidInputError(f"The memory store takes no options; got {sorted(options)}.")
        return Store(MemoryStore())
    if isinstance(uri, str) and uri.startswith(("http://", "https://")):
        from ..storage.remote import RemoteStore

        unknown = set(options) - {"api_key", "timeout"}
        if unknown:
            raise InvalidInputError(f"A remote store takes api_key and timeout; got {sorted(unknown)}.")
        return Store(RemoteStore(uri, **options))
    if isinstance(uri, str) and uri.startswith(("milvus://", "milvus+http://", "milvus+https://", "milvus+lite://")):
        from ..storage.milvus import MilvusStore

        unknown = set(options) - {"token", "db_name", "timeout", "create"}
        if unknown:
            raise InvalidInputError(f"The Milvus store takes token, db_name, timeout and create; got {sorted(unknown)}.")
        return Store(MilvusStore(uri, **options))
    return Store(EmbeddedStore(uri, **options))


def connect(url: str, api_key: str | None = None, *, timeout: float = 120.0) -> Store:
    """The store served by ``latentspace serve`` at ``url``, with the same API as a local one:
    ``ls.connect("http://localhost:8000", api_key="ls_...")``. The key defaults to
    ``$LATENTSPACE_API_KEY``; text is embedded on the server by each collection's encoder."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidInputError(f"connect takes the server's URL (http://host:port); got {url!r}.")
    return open_store(url, api_key=api_key, timeout=timeout)


__all__ = ["Store", "CollectionInfo", "connect", "open_store"]
