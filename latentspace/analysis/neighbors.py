"""k nearest neighbours within one point set, without an n x n matrix.

Exact in row blocks (at most ``BLOCK`` x n distances in memory at once) up to
``EXACT_LIMIT`` points; above that through an hnswlib index (the store's own ANN library).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..core.errors import InvalidInputError

BLOCK = 256
EXACT_LIMIT = 20_000

Metric = Literal["euclidean", "cosine"]


def _prep(x: np.ndarray, metric: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms == 0).any():
            raise InvalidInputError("cosine neighbours need non-zero vectors; some rows are all zeros.")
        x = x / norms
    return x


def knn(x: np.ndarray, k: int, metric: Metric = "euclidean", method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of each point's k nearest other points, nearest first.

    Distances: Euclidean, or cosine distance ``1 - cos`` for ``metric="cosine"``.
    """
    n = x.shape[0]
    if not 1 <= k < n:
        raise InvalidInputError(f"k must be in [1, n_points - 1] = [1, {n - 1}]; got {k}.")
    if metric not in ("euclidean", "cosine"):
        raise InvalidInputError(f"metric must be 'euclidean' or 'cosine'; got {metric!r}.")
    xs = _prep(x, metric)
    if method == "exact" or (method == "auto" and n <= EXACT_LIMIT):
        return _exact(xs, k, metric)
    return _hnsw(xs, k, metric)


def _exact(x: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x)
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float64)
    for s in range(0, n, BLOCK):
        e = min(n, s + BLOCK)
        g = x[s:e] @ x.T
        if metric == "cosine":
            d = 1.0 - g
        else:
            d = np.maximum(sq[s:e, None] - 2.0 * g + sq[None, :], 0.0)
        d[np.arange(e - s), np.arange(s, e)] = np.inf  # not your own neighbour
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        pd = np.take_along_axis(d, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        idx[s:e] = np.take_along_axis(part, order, axis=1)
        dd = np.take_along_axis(pd, order, axis=1).astype(np.float64)
        dist[s:e] = np.sqrt(dd) if metric == "euclidean" else np.maximum(dd, 0.0)
    return idx, dist


def _hnsw(x: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    import hnswlib

    n, d = x.shape
    index = hnswlib.Index(space="ip" if metric == "cosine" else "l2", dim=d)
    index.init_index(max_elements=n, M=16, ef_construction=200, random_seed=0)
    index.add_items(x, np.arange(n))
    index.set_ef(max(2 * (k + 1), 64))
    labels, dists = index.knn_query(x, k=k + 1)
    idx = np.empty((n, k), dtype=np.int64)
    out = np.empty((n, k), dtype=np.float64)
    for i in range(n):
        keep = labels[i] != i
        row_l, row_d = labels[i][keep][:k], dists[i][keep][:k]
        idx[i], out[i] = row_l, row_d
    if metric == "euclidean":
        out = np.sqrt(np.maximum(out, 0.0))
    return idx, out
