"""The storage seam: what a store backend and a collection backend do for the layers above.

Everything above storage (``Collection``, search modes, hybrid fusion, migration, the apps,
analysis, the CLI) reaches records only through these two interfaces, so it works
unchanged on any backend. String ids cross the boundary, never a backend's row ids; a
backend keeps its own locks, caches, change log and query planner. Filters arrive as the
validated tree of :mod:`.filter` (``None``: no filter), which each backend compiles its
own way. Every backend is held to one conformance suite (``tests/storage/``), against the
memory backend as the reference; :class:`Capabilities` says what a backend cannot do, and
the suite skips exactly that, saying why.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.space import SpaceSpec
from .filter import Node
from .hits import Hit
from .index import HnswParams


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports. A False entry is a documented gap, not an error: the
    conformance suite skips the matching checks and says why."""

    persistent: bool = True  # survives close and reopen
    multi_process: bool = True  # other processes may read and write the same store
    keyword: bool = True  # BM25 keyword search
    ann: bool = True  # an approximate index (else every search is exact)
    atomic_swap: bool = True  # two collection names swapped atomically (migration's switch)


@dataclass(frozen=True)
class Row:
    """One stored record as a backend returns it (``vector`` only when asked for)."""

    id: str
    document: str | None
    metadata: dict[str, Any]
    vector: np.ndarray | None
    content_hash: str


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as the catalog holds it: name, size, space, encoder config, settings."""

    name: str
    count: int
    spec: SpaceSpec
    encoder: dict[str, Any] | None
    hnsw: HnswParams
    metadata: dict[str, Any]
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "count": self.count, "spec": self.spec.to_dict(), "fingerprint": self.spec.fingerprint,
            "encoder": self.encoder, "hnsw": self.hnsw.to_dict(), "metadata": self.metadata,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectionInfo:
        return cls(d["name"], d["count"], SpaceSpec.from_dict(d["spec"]), d.get("encoder"),
                   HnswParams.from_dict(d.get("hnsw")), d.get("metadata") or {}, d.get("created_at", 0.0))


class CollectionBackend(ABC):
    """One collection's records: writes, reads, vector and keyword search."""

    spec: SpaceSpec
    name: str
    capabilities: Capabilities

    # -- size and content ------------------------------------------------------------------
    @abstractmethod
    def count(self, where: Node | None = None) -> int:
        """How many records (matching ``where``)."""

    @abstractmethod
    def count_with_documents(self) -> int:
        """How many records carry a document (text): what migration can re-embed."""

    @abstractmethod
    def hashes(self, ids: list[str]) -> dict[str, str]:
        """The content hash of each of ``ids`` that exists."""

    @abstractmethod
    def vectors(self, ids: list[str]) -> tuple[list[str], np.ndarray]:
        """The stored vectors of those of ``ids`` that exist, in the order asked: (ids, vectors)."""

    # -- writes ---------------------------------------------------------------------------
    @abstractmethod
    def write(self, ids: list[str], vectors: np.ndarray, documents: list[str | None], metadatas: list[dict],
              hashes: list[str], *, replace: bool) -> tuple[int, int]:
        """Write a batch atomically: all of it or nothing. ``replace=False`` refuses an id that
        exists (AlreadyExistsError, nothing written). Returns (added, replaced)."""

    @abstractmethod
    def delete(self, ids: list[str] | None, where: Node | None) -> int:
        """Delete by ids, by filter, or both (the ids that match). Returns how many."""

    # -- reads ----------------------------------------------------------------------------
    @abstractmethod
    def rows(self, ids: list[str] | None, where: Node | None, limit: int | None, offset: int,
             with_vectors: bool) -> list[Row]:
        """Records by id (in the order asked; unknown ids left out) and/or filter, in the
        backend's stable order (insertion order where it has one)."""

    def ids(self) -> list[str]:
        """Every record's id, in the order of :meth:`rows` (a backend may do it cheaper)."""
        return [r.id for r in self.rows(None, None, None, 0, False)]

    # -- search ---------------------------------------------------------------------------
    @abstractmethod
    def search(self, queries: np.ndarray, k: int, where: Node | None, *, exact: bool, ef: int | None,
               with_vectors: bool) -> list[list[Hit]]:
        """The ``k`` nearest records of each query (of those matching ``where``; fewer only
        when fewer match): lists of Hits (score higher-is-better, distance under the metric,
        as :func:`.index.to_scores` relates them), best first. ``exact=True`` scans."""

    @abstractmethod
    def search_one(self, vector: np.ndarray, k: int, ef: int | None, where: Node | None = None) -> list[Hit] | None:
        """One checked query vector (``where``: a parsed filter or None): the hot path. None
        hands it to :meth:`search`."""

    @abstractmethod
    def search_among(self, ids: list[str], queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Exact search restricted to the records ``ids`` (a re-rank of candidates)."""

    @abstractmethod
    def neighbors(self, ids: list[str], vectors: np.ndarray, which: np.ndarray, k: int, where: Node | None, *,
                  exact: bool = False, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest other records of the records at positions ``which`` of ``ids``
        (stored vectors ``vectors``; those matching ``where``): (positions in ``ids``, -1 where
        fewer were found; distances under the metric). The applications' neighbour graph."""

    @abstractmethod
    def keyword(self, texts: list[str], k: int, where: Node | None, *, with_vectors: bool) -> list[list[Hit]]:
        """BM25 keyword search: lists of Hits with positive scores, best first."""

    @abstractmethod
    def flush(self) -> None:
        """Persist whatever is derived and behind (indexes), so the next open is fast."""

    def change_seq(self) -> int | None:
        """A number that grows with every write to this collection (None: the backend cannot
        say). What derived views (the explorer's maps) are cached by."""
        return None

    def explain(self, where: Node | None, k: int = 10, ef: int | None = None) -> dict[str, Any]:
        """How a vector search for ``k`` with this filter would run now: ``matches`` (None:
        not counted), ``plan`` (``exact``, ``walk``, ``post``; None: the backend plans on its
        own side, or has not measured its plans yet), ``estimates`` (plan -> seconds a query)
        and ``measured`` (the plans timed on this filter). The default says nothing."""
        return {"matches": None, "plan": None, "estimates": {}, "measured": []}


class StoreBackend(ABC):
    """Where collections live: the catalog, atomic name swaps for migration, history.

    Names starting with ``~`` are the store's own (migration shadows ``~name~<fp>``, retired
    spaces ``~name~retired~<n>``): hidden from listings, renamed with their collection."""

    capabilities: Capabilities
    path: Any  # where it lives (a directory, or None in memory)
    messages: list[str]  # what the store did on its own (index rebuilds), oldest first
    _lock: Any  # one thread at a time on the backend

    def encoder_for(self, info: CollectionInfo) -> Any:
        """The encoder a collection opened without one embeds with (None: rebuilt from its
        stored config on first use). The remote backend answers with the server's encoder."""
        return None

    @abstractmethod
    def create_collection(self, name: str, spec: SpaceSpec, encoder: dict[str, Any] | None, params: Any,
                          metadata: dict[str, Any]) -> None:
        """Add a collection (AlreadyExistsError if the name is taken)."""

    @abstractmethod
    def open_collection(self, name: str) -> tuple[CollectionInfo, CollectionBackend]:
        """The catalog entry of ``name`` and its backend (NotFoundError naming the collections there)."""

    @abstractmethod
    def list_names(self) -> list[str]:
        """The visible collections' names, sorted."""

    @abstractmethod
    def list_collections(self) -> list[CollectionInfo]:
        """The visible collections, sorted by name."""

    @abstractmethod
    def collection_info(self, name: str) -> CollectionInfo: ...

    @abstractmethod
    def delete_collection(self, name: str) -> None: ...

    @abstractmethod
    def rename_collection(self, name: str, new_name: str) -> None:
        """Rename atomically, with the store's own names derived from it and the history."""

    @abstractmethod
    def swap(self, name: str, new_internal: str, action: str) -> None:
        """Atomically give ``name`` to collection ``new_internal``, retire the current one, log it."""

    @abstractmethod
    def collection_history(self, name: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def rollback_collection(self, name: str) -> None: ...

    @abstractmethod
    def drop_retired(self, name: str) -> int: ...

    @abstractmethod
    def retired_names(self, name: str) -> list[str]:
        """The store's names of the spaces ``name`` had before its switches and still keeps
        (``~name~retired~...``), oldest first: what a rollback returns to, and what the
        explorer shows beside the current space."""

    @abstractmethod
    def disk_bytes(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...


__all__ = ["Capabilities", "CollectionBackend", "CollectionInfo", "Row", "StoreBackend"]
