"""Geometry diagnostics of one space: is it healthy for nearest-neighbour search?

Each function takes an ``(n, d)`` array and returns plain floats; :func:`diagnose` runs
them all and explains what each number means. Memory: no function holds more than a
(block x n) slice of distances; kNN goes through :mod:`.neighbors`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..core.errors import InvalidInputError
from ._checks import points, sample_rows
from .neighbors import BLOCK, knn


def distance_concentration(x: Any, sample: int = 1000, seed: int = 0, metric: str = "euclidean") -> dict[str, float]:
    """Relative contrast ``mean(D_mean / D_min)`` and ``mean(D_min / D_max)`` over sampled query points.

    Distances concentrate in high dimension: relative contrast near 1 (and min/max near 1)
    means nearest and farthest neighbours are hardly distinguishable.
    """
    x = points(x, min_rows=3, where="distance_concentration")
    n = x.shape[0]
    q_idx = np.random.default_rng(seed).choice(n, min(sample, n), replace=False)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    sq = np.einsum("ij,ij->i", x, x)
    rc, ratio = [], []
    for s in range(0, len(q_idx), BLOCK):
        qi = q_idx[s : s + BLOCK]
        g = x[qi] @ x.T
        d = 1.0 - g if metric == "cosine" else np.sqrt(np.maximum(sq[qi, None] - 2 * g + sq[None, :], 0.0))
        d[np.arange(len(qi)), qi] = np.nan
        dmin, dmax, dmean = np.nanmin(d, axis=1), np.nanmax(d, axis=1), np.nanmean(d, axis=1)
        # a duplicate's distance is 0 up to float error (1 - cos of equal vectors ~ 1e-7): not a neighbour
        ok = dmin > 1e-5 * np.maximum(dmean, 1e-30)
        rc.extend((dmean[ok] / dmin[ok]).tolist())
        ratio.extend((dmin[ok] / dmax[ok]).tolist())
    if not rc:
        raise InvalidInputError("distance_concentration: every sampled point has an exact duplicate; deduplicate first.")
    return {"relative_contrast": float(np.mean(rc)), "min_max_ratio": float(np.mean(ratio)), "queries": len(rc)}


def hubness(x: Any, k: int = 10, metric: str = "euclidean", neighbors=None) -> dict[str, float]:
    """k-occurrence skewness (Radovanović et al. 2010) and the share of anti-hubs (N_k = 0)."""
    x = points(x, min_rows=k + 2, where="hubness")
    idx = neighbors[0][:, :k] if neighbors is not None else knn(x, k, metric)[0]
    counts = np.bincount(idx.ravel(), minlength=x.shape[0]).astype(np.float64)
    mu, sd = counts.mean(), counts.std()
    skew = float(((counts - mu) ** 3).mean() / sd**3) if sd > 0 else 0.0
    return {
        "k": k,
        "k_occurrence_skewness": skew,
        "antihub_share": float((counts == 0).mean()),
        "max_k_occurrence": int(counts.max()),
    }


def isotropy(x: Any, top: int = 10) -> dict[str, float]:
    """Partition-function isotropy ``min_c Z(c) / max_c Z(c)`` over the principal directions
    (Mu and Viswanath 2018; 1 = isotropic), and the share of variance in the top components."""
    x = points(x, min_rows=2, where="isotropy")
    evals, evecs = np.linalg.eigh(x.T @ x)
    proj = x @ evecs  # (n, d): x . c for every eigenvector c
    m = proj.max(axis=0)
    log_z = m + np.log(np.exp(proj - m).sum(axis=0))
    iso = float(np.exp(log_z.min() - log_z.max()))
    xc = x - x.mean(axis=0)
    var = np.linalg.svd(xc, compute_uv=False) ** 2
    total = var.sum()
    share = (var / total) if total > 0 else np.zeros_like(var)
    return {
        "partition_isotropy": iso,
        "top1_variance_share": float(share[:1].sum()),
        f"top{top}_variance_share": float(share[:top].sum()),
        "mean_norm_of_mean": float(np.linalg.norm(x.mean(axis=0))),
    }


def twonn_dimension(x: Any, discard: float = 0.1, neighbors=None) -> float:
    """TwoNN intrinsic dimension (Facco et al. 2017): the slope of ``-log(1 - F(mu))``
    against ``log(mu)``, ``mu = r2 / r1``, fitted through the origin with the largest
    ``discard`` fraction of ratios left out."""
    x = points(x, min_rows=3, where="twonn_dimension")
    _, d = neighbors if neighbors is not None else knn(x, 2)
    r1, r2 = d[:, 0], d[:, 1]
    ok = r1 > 0
    mu = np.sort(r2[ok] / r1[ok])
    n = len(mu)
    if n < 3:
        raise InvalidInputError("twonn_dimension: too few distinct points (exact duplicates are left out).")
    keep = int(np.floor(n * (1 - discard)))
    f = np.arange(1, n + 1) / n
    xs = np.log(mu[:keep])
    ys = -np.log(1 - f[:keep])
    return float((xs @ ys) / (xs @ xs))


def mle_dimension(x: Any, k: int = 20, neighbors=None) -> float:
    """Levina-Bickel MLE of intrinsic dimension with k neighbours, averaged over points as
    MacKay and Ghahramani suggest (the mean of the inverse estimates, inverted)."""
    x = points(x, min_rows=k + 2, where="mle_dimension")
    _, d = neighbors if neighbors is not None else knn(x, k)
    d = d[:, :k]
    ok = (d[:, 0] > 0)
    d = d[ok]
    if len(d) < 2:
        raise InvalidInputError("mle_dimension: too few distinct points (exact duplicates are left out).")
    inv = np.log(d[:, -1:] / d[:, :-1]).sum(axis=1) / (k - 1)
    return float(1.0 / inv.mean())


def norm_stats(x: Any, tolerance: float = 1e-3) -> dict[str, float]:
    x = points(x, min_rows=1, where="norm_stats")
    norms = np.linalg.norm(x, axis=1)
    return {
        "mean": float(norms.mean()), "std": float(norms.std()), "min": float(norms.min()), "max": float(norms.max()),
        "non_unit_share": float((np.abs(norms - 1.0) > tolerance).mean()),
    }


@dataclass
class Diagnosis:
    """The diagnostics of one space, with what each number means."""

    n_points: int
    dim: int
    sampled: bool
    concentration: dict[str, float]
    hubness: dict[str, float]
    isotropy: dict[str, float]
    intrinsic_dimension: dict[str, float]
    norms: dict[str, float]
    claims_normalized: bool | None = None
    notes: list[str] = field(default_factory=list)
    #: points (of those analysed) whose vector equals another's; the statistics above are of
    #: the distinct vectors
    duplicates: int = 0
    distinct: int = 0  # the distinct vectors analysed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def findings(self) -> list[tuple[str, str, bool]]:
        """(metric, one-line explanation, is_a_concern) for a report."""
        c, h, i, idim, nm = self.concentration, self.hubness, self.isotropy, self.intrinsic_dimension, self.norms
        out = [
            ("relative contrast", f"{c['relative_contrast']:.3f}: mean distance / nearest distance. Near 1 means "
             "near and far neighbours are hard to tell apart (distance concentration).", c["relative_contrast"] < 1.2),
            ("nearest / farthest", f"{c['min_max_ratio']:.3f}: near 1 means every point is about as far as every other.",
             c["min_max_ratio"] > 0.8),
            ("hubness", f"k-occurrence skewness {h['k_occurrence_skewness']:.2f} (k={h['k']}): a few points are the "
             "neighbours of very many. Above ~1.5 search results are dominated by hubs.", h["k_occurrence_skewness"] > 1.5),
            ("anti-hubs", f"{h['antihub_share']:.1%} of points are nobody's neighbour: they can never be retrieved "
             "by a neighbour of theirs.", h["antihub_share"] > 0.2),
            ("isotropy", f"partition isotropy {i['partition_isotropy']:.3g} (1 = all directions alike); the top "
             f"component carries {i['top1_variance_share']:.1%} of the variance. Low isotropy wastes dimensions on a "
             "common direction; centering often helps.", i["partition_isotropy"] < 0.1),
            ("intrinsic dimension", f"TwoNN {idim['twonn']:.1f}, MLE {idim['mle']:.1f} of {self.dim} dimensions: how many "
             "the data really uses.", False),
            ("norms", f"mean {nm['mean']:.3f} (min {nm['min']:.3f}, max {nm['max']:.3f}); "
             f"{nm['non_unit_share']:.1%} not of unit norm.",
             bool(self.claims_normalized) and nm["non_unit_share"] > 0),
        ]
        analysed = self.duplicates + self.distinct
        share = self.duplicates / analysed
        out.insert(0, ("exact duplicates", f"{self.duplicates:,} of {analysed:,} points ({share:.1%}) "
                       "repeat another's vector; every other statistic is of the distinct vectors. Duplicates waste "
                       "results (k hits of one text): see `latentspace dedup`.", share > 0.01))
        return out



def diagnose(
    x: Any,
    *,
    k: int = 10,
    sample: int | None = 5000,
    seed: int = 0,
    metric: str = "euclidean",
    normalized: bool | None = None,
    total: int | None = None,
) -> Diagnosis:
    """All diagnostics on ``x`` (an array, or a Collection: its vectors, sampled with ``seed``).

    Above ``sample`` points a seeded random sample is analysed, and the report says so.
    ``total`` says that the array ``x`` is already a sample of that many points.
    """
    claims = normalized
    notes: list[str] = []
    if hasattr(x, "get") and hasattr(x, "spec"):
        from .vectors import collection_vectors

        arr, total = collection_vectors(x, sample, seed)
        if claims is None:
            claims = bool(x.spec.normalize)
        n_total = total
    else:
        arr = points(x, min_rows=max(k + 2, 22), where="diagnose")
        n_total = total or arr.shape[0]
    arr = points(arr, min_rows=max(k + 2, 22), where="diagnose")
    arr, idx = sample_rows(arr, sample, seed)
    sampled = idx is not None or arr.shape[0] < n_total
    if sampled:
        notes.append(f"analysed a random sample of {arr.shape[0]:,} of {n_total:,} points (seed {seed}).")
    arr, duplicates = _distinct(arr)
    if duplicates:
        notes.append(f"{duplicates:,} of {arr.shape[0] + duplicates:,} points are exact duplicates of another; the "
                     f"statistics are of the {arr.shape[0]:,} distinct vectors (duplicates make nearest distances 0 "
                     "and contrast meaningless).")
    arr = points(arr, min_rows=max(k + 2, 22), where="diagnose (distinct vectors)")
    nb = knn(arr, max(k, 20), metric)
    # the intrinsic-dimension estimators need a true metric: Euclidean neighbours
    eu = nb if metric == "euclidean" else knn(arr, 20, "euclidean")
    return Diagnosis(
        n_points=n_total,
        dim=arr.shape[1],
        sampled=sampled,
        concentration=distance_concentration(arr, sample=1000, seed=seed, metric=metric),
        hubness=hubness(arr, k, metric, neighbors=nb),
        isotropy=isotropy(arr),
        intrinsic_dimension={
            "twonn": twonn_dimension(arr, neighbors=(eu[0][:, :2], eu[1][:, :2])),
            "mle": mle_dimension(arr, 20, neighbors=(eu[0][:, :20], eu[1][:, :20])),
        },
        norms=norm_stats(arr),
        claims_normalized=claims,
        notes=notes,
        duplicates=duplicates,
        distinct=int(arr.shape[0]),
    )


def _distinct(x: np.ndarray) -> tuple[np.ndarray, int]:
    """The distinct rows of ``x`` (first occurrences, in order) and how many rows repeated one."""
    rows = np.ascontiguousarray(x).view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, first = np.unique(rows, return_index=True)
    first.sort()
    return x[first], x.shape[0] - len(first)
