"""A collection's records as arrays, and its k-nearest-neighbour graph through its own index.

The applications (dedup, outliers, clustering, classification) work on these two views.
The graph comes from the collection's HNSW index (the one its searches use), so it costs
``n`` index queries and never an ``n x n`` matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import InvalidInputError
from ..core.validation import check_int
from ..storage.filter import parse as parse_filter

if TYPE_CHECKING:
    from .collection import Collection


@dataclass(frozen=True)
class RecordArrays:
    """Records in store order: ``ids[i]``, ``vectors[i]``, ``documents[i]``, ``metadatas[i]``."""

    ids: list[str]
    vectors: np.ndarray
    documents: list[str | None]
    metadatas: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class NeighborGraph:
    """Each record's ``k`` nearest other records: ``indices[i, j]`` is a position in
    ``records`` (``-1`` where fewer than ``k`` were found), ``distances[i, j]`` the
    collection metric's distance (cosine: ``1 - cos``)."""

    records: RecordArrays
    indices: np.ndarray
    distances: np.ndarray

    @property
    def k(self) -> int:
        return self.indices.shape[1]


def record_arrays(col: Collection, where: dict | None = None) -> RecordArrays:
    """All records of a collection (or those matching ``where``) with their vectors."""
    rows = col._storage.rows(None, parse_filter(where), None, 0, True)
    dim = col.spec.dim
    vectors = np.stack([r.vector for r in rows]).astype(np.float32, copy=False) if rows else np.zeros((0, dim), np.float32)
    return RecordArrays(
        ids=[r.id for r in rows],
        vectors=vectors,
        documents=[r.document for r in rows],
        metadatas=[r.metadata for r in rows],
    )


def search_among(col: Collection, ids: list[str], query: np.ndarray, k: int) -> list:
    """The ``k`` best of the records ``ids`` for ``query``, scored exactly (a re-rank of
    candidates); ids that no longer exist are left out."""
    return col._storage.search_among(ids, np.asarray(query, dtype=np.float32)[None], k)[0]


def require_records(records: RecordArrays, col: Collection, what: str, at_least: int = 1) -> None:
    if len(records) < at_least:
        have = "is empty" if not len(records) else f"has {len(records)} matching record(s)"
        raise InvalidInputError(
            f"{what} needs at least {at_least} record(s); collection {col.name!r} {have}. "
            "Add records first, or loosen the filter."
        )


def neighbor_graph(
    col: Collection, k: int = 10, where: dict | None = None, *, exact: bool = False, ef: int | None = None,
    records: RecordArrays | None = None,
) -> NeighborGraph:
    """Every record's ``k`` nearest other records (itself excluded), through the collection's index.

    ``exact=True`` scans instead (the reference); ``ef`` widens the HNSW search (default
    ``max(ef_search, 2k)``). With ``where``, only matching records take part.
    """
    k = check_int(k, "k", "neighbor_graph", 1, 1_000)
    records = records if records is not None else record_arrays(col, where)
    n = len(records)
    if n < 2:
        require_records(records, col, "A neighbour graph", at_least=2)
    indices, distances = neighbors_of(col, records, np.arange(n), min(k, n - 1), where, exact=exact, ef=ef)
    return NeighborGraph(records, indices, distances)


def neighbors_of(
    col: Collection, records: RecordArrays, which: np.ndarray, k: int, where: dict | None = None, *,
    exact: bool = False, ef: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other records of the records at positions ``which``: (positions, distances)."""
    return col._storage.neighbors(records.ids, records.vectors, np.asarray(which), k, parse_filter(where),
                                  exact=exact, ef=ef)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def write_metadata(col: Collection, records: RecordArrays, values, key: str, batch: int = 5_000) -> int:
    """Set ``metadata[key] = values[i]`` on each record (its vector and document kept). Returns records written."""
    values = values.tolist() if isinstance(values, np.ndarray) else list(values)
    total = 0
    for s in range(0, len(records), batch):
        part = slice(s, s + batch)
        metas = [{**m, key: v} for m, v in zip(records.metadatas[part], values[part])]
        res = col.upsert(records.ids[part], documents=records.documents[part], metadatas=metas,
                         vectors=records.vectors[part], space=col.spec)
        total += res.added + res.replaced
    return total
