"""Outlier scores for every record: distance to its k nearest neighbours, or local outlier factor.

Both come from the collection's neighbour graph (its HNSW index), so scoring 100,000
records costs 100,000 index queries. LOF is scikit-learn's ``LocalOutlierFactor`` run on
that graph as a sparse precomputed distance matrix (the same numbers it computes from raw
vectors when the neighbours agree: a test checks it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..collections.graph import NeighborGraph, neighbor_graph
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


def outlier_scores(col, method: Method = "knn", *, k: int = 10, where: dict | None = None) -> OutlierReport:
    """Score every record (or those matching ``where``).

    ``knn``: mean distance to the ``k`` nearest other records (the metric's distance).
    ``lof``: local outlier factor with ``k`` neighbours (about 1 for inliers, larger for outliers).
    """
    check_choice(method, "method", "outlier_scores", ("knn", "lof"))
    k = check_int(k, "k", "outlier_scores", 1, 1_000)
    t0 = time.perf_counter()
    graph = neighbor_graph(col, k, where)
    dist = np.maximum(graph.distances, 0.0).astype(np.float64)  # float error: 1 - cos may be -1e-7
    scores = knn_scores(dist) if method == "knn" else lof_scores(graph, dist)
    rec = graph.records
    return OutlierReport(method, graph.k, rec.ids, scores, rec.documents, time.perf_counter() - t0)


def knn_scores(dist: np.ndarray) -> np.ndarray:
    finite = np.isfinite(dist)
    return np.where(finite, dist, 0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)


def lof_scores(graph: NeighborGraph, dist: np.ndarray) -> np.ndarray:
    from scipy.sparse import csr_matrix
    from sklearn.neighbors import LocalOutlierFactor

    n, k = graph.indices.shape
    idx = graph.indices
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
