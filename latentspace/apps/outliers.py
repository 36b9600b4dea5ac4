"""Outlier scores for every record: distance to its k nearest neighbours, or local outlier factor.

Both come from the collection's neighbour graph (its HNSW index), so scoring 100,000
records costs 100,000 index queries. LOF is scikit-learn's ``LocalOutlierFactor`` run on
that graph as a sparse precomputed distance matrix (the same numbers it computes from raw
vectors when the neighbours agree: a test checks it).

Per record (the default): a record stored as several chunks (``metadata["source_id"]``)
is scored once, by the mean of its chunks' vectors, among the other records; its own
chunks, always near each other, do not make it look ordinary. ``unit="chunk"`` scores rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..collections.chunks import UNITS, Unit, record_index, record_vectors
from ..collections.graph import neighbor_graph, record_arrays
from ..core.errors import InvalidInputError
from ..core.validation import check_choice, check_int

Method = Literal["knn", "lof"]


@dataclass(frozen=True)
class OutlierReport:
    """A score per record, higher = more unusual."""

    method: str
    k: int
    ids: list[str]
    scores: np.ndarray
    documents: list
    seconds: float = 0.0

    def top(self, n: int = 10) -> list[tuple[str, float, str | None]]:
        n = check_int(n, "n", "OutlierReport.top", 1, 1_000_000)
        order = np.argsort(-self.scores, kind="stable")[:n]
        return [(self.ids[i], float(self.scores[i]), self.documents[i]) for i in order.tolist()]

    def to_dict(self, n: int = 10) -> dict:
        return {"method": self.method, "k": self.k, "records": len(self.ids), "seconds": round(self.seconds, 3),
                "top": [{"id": i, "score": s, "document": (d or "")[:200]} for i, s, d in self.top(n)]}


def outlier_scores(col, method: Method = "knn", *, k: int = 10, where: dict | None = None,
                   unit: Unit = "record") -> OutlierReport:
    """Score every record (or those matching ``where``).

    ``knn``: mean distance to the ``k`` nearest other records (the metric's distance).
    ``lof``: local outlier factor with ``k`` neighbours (about 1 for inliers, larger for outliers).
    ``unit="record"`` (default) scores a record made of chunks once (see the module's docstring).
    """
    check_choice(method, "method", "outlier_scores", ("knn", "lof"))
    check_choice(unit, "unit", "outlier_scores", UNITS)
    k = check_int(k, "k", "outlier_scores", 1, 1_000)
    t0 = time.perf_counter()
    rec = record_arrays(col, where)
    index = record_index(rec.ids, rec.metadatas) if unit == "record" else None
    if index is not None and index.chunked:
        return _per_record(col, rec, index, method, k, t0)
    graph = neighbor_graph(col, k, where, records=rec)
    dist = np.maximum(graph.distances, 0.0).astype(np.float64)  # float error: 1 - cos may be -1e-7
    scores = knn_scores(dist) if method == "knn" else lof_scores(graph.indices, dist)
    return OutlierReport(method, graph.k, rec.ids, scores, rec.documents, time.perf_counter() - t0)


def _per_record(col, rec, index, method: str, k: int, t0: float) -> OutlierReport:
    from ..analysis.neighbors import knn

    m = len(index.ids)
    if m < 2:
        raise InvalidInputError(f"Outlier scores per record need at least 2 records; collection {col.name!r} has "
                                f"{m} (in {len(rec)} chunks). Pass unit='chunk' to score its chunks.")
    if col.spec.metric == "dot" and not col.spec.normalize:
        raise InvalidInputError("Outlier scores per record average a record's chunks, which needs a cosine or l2 "
                                "space; this collection compares unnormalized vectors by dot product: pass "
                                "unit='chunk'.")
    x = record_vectors(rec.vectors, index, normalize=col.spec.normalize or col.spec.metric == "cosine")
    idx, dist = knn(x, min(k, m - 1), "euclidean" if col.spec.metric == "l2" else "cosine")
    dist = np.maximum(dist, 0.0)
    scores = knn_scores(dist) if method == "knn" else lof_scores(idx, dist)
    first = np.unique(index.of, return_index=True)[1]  # each record's first chunk stands for its text
    return OutlierReport(method, idx.shape[1], index.ids, scores, [rec.documents[i] for i in first],
                         time.perf_counter() - t0)


def knn_scores(dist: np.ndarray) -> np.ndarray:
    finite = np.isfinite(dist)
    return np.where(finite, dist, 0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)


def lof_scores(indices: np.ndarray, dist: np.ndarray) -> np.ndarray:
    from scipy.sparse import csr_matrix
    from sklearn.neighbors import LocalOutlierFactor

    n, k = indices.shape
    idx = indices
    if (idx < 0).any():  # a record with fewer neighbours (tiny filtered sets): pad with its farthest
        last = np.maximum.accumulate(np.where(idx >= 0, np.arange(k), 0), axis=1)
        rows = np.arange(n)[:, None]
        idx = idx[rows, last]
        dist = dist[rows, last]
    # scikit-learn's graph convention (KNeighborsTransformer) lists each sample itself first
    # at distance 0; explicit zeros (exact duplicates) stay stored as neighbours
    idx = np.hstack([np.arange(n)[:, None], idx])
    dist = np.hstack([np.zeros((n, 1)), dist])
    mat = csr_matrix((dist.ravel(), idx.ravel(), np.arange(0, n * (k + 1) + 1, k + 1)), shape=(n, n))
    lof = LocalOutlierFactor(n_neighbors=k, metric="precomputed")
    lof.fit(mat)
    return -lof.negative_outlier_factor_
