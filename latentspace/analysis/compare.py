"""Comparing two spaces on the same items: CKA, neighbourhood overlap, similarity ranks.

Linear and debiased linear CKA are computed in feature space (O(n d^2), no n x n
matrix). RBF CKA needs Gram matrices: at most ``MAX_GRAM`` points (a seeded sample above
that, reported in the result).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InvalidInputError
from ._checks import paired
from .neighbors import knn

MAX_GRAM = 5000


def linear_cka(x: Any, y: Any) -> float:
    """Linear CKA (Kornblith et al. 2019): ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``."""
    x, y = paired(x, y, "linear_cka")
    xc, yc = x - x.mean(0), y - y.mean(0)
    num = np.linalg.norm(yc.T @ xc) ** 2
    den = np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)
    if den == 0:
        raise InvalidInputError("linear_cka: one of the spaces is constant (all rows equal).")
    return float(num / den)


def _hsic_unbiased_linear(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased HSIC (Song et al. 2012) of linear kernels, without forming them.

    With K = X X^T and L = Y Y^T and their diagonals zeroed (K~, L~):
    tr(K~ L~) = ||X^T Y||_F^2 - sum_i |x_i|^2 |y_i|^2,  1^T K~ 1 = |sum_i x_i|^2 - sum_i |x_i|^2,
    1^T K~ L~ 1 = (K~ 1) . (L~ 1)  with  K~ 1 = X (X^T 1) - diag(K).
    """
    n = x.shape[0]
    kd = np.einsum("ij,ij->i", x, x)
    ld = np.einsum("ij,ij->i", y, y)
    tr = np.linalg.norm(x.T @ y) ** 2 - (kd * ld).sum()
    k1 = x @ x.sum(0) - kd
    l1 = y @ y.sum(0) - ld
    sk, sl = k1.sum(), l1.sum()
    return float((tr + sk * sl / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 @ l1)) / (n * (n - 3)))


def debiased_linear_cka(x: Any, y: Any) -> float:
    """Debiased linear CKA: CKA built on the unbiased HSIC estimator (needs n >= 4)."""
    x, y = paired(x, y, "debiased_linear_cka", min_rows=4)
    xy = _hsic_unbiased_linear(x, y)
    xx = _hsic_unbiased_linear(x, x)
    yy = _hsic_unbiased_linear(y, y)
    if xx <= 0 or yy <= 0:
        raise InvalidInputError("debiased_linear_cka: a space has no variance left after debiasing (too few points?).")
    return float(xy / np.sqrt(xx * yy))


def _rbf_gram(x: np.ndarray, threshold: float) -> np.ndarray:
    g = x @ x.T
    sq = np.diag(g)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * g, 0.0)
    med = np.median(d2)
    if med == 0:
        raise InvalidInputError("rbf_cka: the median squared distance is 0 (mostly duplicate points).")
    return np.exp(-d2 / (2 * threshold**2 * med))


def _center(g: np.ndarray) -> np.ndarray:
    means = g.mean(0)
    means = means - means.mean() / 2
    return g - means[:, None] - means[None, :]


def rbf_cka(x: Any, y: Any, threshold: float = 1.0, max_points: int = MAX_GRAM, seed: int = 0) -> dict[str, Any]:
    """CKA with Gaussian kernels of bandwidth ``threshold`` x the median distance."""
    x, y = paired(x, y, "rbf_cka", min_rows=3)
    n = x.shape[0]
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
        x, y = x[idx], y[idx]
    kx, ky = _center(_rbf_gram(x, threshold)), _center(_rbf_gram(y, threshold))
    value = float((kx.ravel() @ ky.ravel()) / (np.linalg.norm(kx) * np.linalg.norm(ky)))
    return {"cka": value, "points": int(x.shape[0]), "sampled": n > max_points}


def knn_agreement(x: Any, y: Any, k: int = 10, metric: str = "cosine", metric_y: str | None = None) -> np.ndarray:
    """Per item: the share of its k nearest neighbours that the two spaces agree on
    (``metric_y``: the second space's metric, when it differs)."""
    x, y = paired(x, y, "knn_agreement", min_rows=k + 1)
    a, _ = knn(x, k, metric)
    b, _ = knn(y, k, metric_y or metric)
    return np.array([len(set(r) & set(s)) / k for r, s in zip(a.tolist(), b.tolist())])


def knn_overlap(x: Any, y: Any, k: int = 10, metric: str = "cosine") -> float:
    """Mean share of each item's k nearest neighbours that the two spaces agree on."""
    return float(knn_agreement(x, y, k, metric).mean())


def similarity_rank_correlation(x: Any, y: Any, pairs: int = 100_000, seed: int = 0) -> float:
    """Spearman correlation of cosine similarities over random pairs of items (no n x n matrix)."""
    from scipy.stats import spearmanr

    x, y = paired(x, y, "similarity_rank_correlation", min_rows=3)
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, pairs)
    j = rng.integers(0, n - 1, pairs)
    j = j + (j >= i)  # never a point with itself
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    yn = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-300)
    sx = np.einsum("ij,ij->i", xn[i], xn[j])
    sy = np.einsum("ij,ij->i", yn[i], yn[j])
    return float(spearmanr(sx, sy).statistic)


def compare(x: Any, y: Any, k: int = 10, seed: int = 0, max_points: int = 20_000) -> dict[str, Any]:
    """Every comparison of two spaces over the same items, in one dict."""
    x, y = paired(x, y, "compare", min_rows=k + 1)
    n = x.shape[0]
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
        x, y = x[idx], y[idx]
    return {
        "points": int(x.shape[0]),
        "sampled": n > max_points,
        "linear_cka": linear_cka(x, y),
        "debiased_linear_cka": debiased_linear_cka(x, y),
        "rbf_cka": rbf_cka(x, y, seed=seed)["cka"],
        f"knn_overlap@{k}": knn_overlap(x, y, k),
        "similarity_rank_correlation": similarity_rank_correlation(x, y, seed=seed),
    }


__all__ = [
    "linear_cka", "debiased_linear_cka", "rbf_cka", "knn_overlap", "similarity_rank_correlation", "compare",
]
