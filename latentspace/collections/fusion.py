"""Fusing ranked lists: reciprocal rank fusion, and a convex combination of normalised scores.

Both weigh the vector side by ``alpha`` and the keyword side by ``1 - alpha``. Which one
hybrid search uses by default, and with which constant, was measured on real query ->
document sets (``bench/hybrid.py``, table in ``bench/RESULTS.md``).
"""

from __future__ import annotations

from typing import Literal

Fusion = Literal["rrf", "convex"]
FUSIONS = ("rrf", "convex")
#: measured by bench/hybrid.py (two real query sets, MRR@10 and recall@10): a convex
#: combination at alpha 0.5 was best on both (mean MRR@10 0.538 against 0.529 for the best
#: RRF, 0.521 for RRF's usual k=60); RRF's best constant was k=5-10, not 60
DEFAULT_FUSION: Fusion = "convex"
RRF_K = 10


def reciprocal_rank_fusion(
    rankings: dict[str, list[int]], weights: dict[str, float], k0: int = RRF_K
) -> list[tuple[int, float, dict[str, int]]]:
    """Fuse ranked lists of keys: score = sum_w weight / (k0 + rank). Returns (key, score, ranks) best first."""
    scores: dict[int, float] = {}
    ranks: dict[int, dict[str, int]] = {}
    for name, keys in rankings.items():
        w = weights.get(name, 1.0)
        for r, key in enumerate(keys, start=1):
            scores[key] = scores.get(key, 0.0) + w / (k0 + r)
            ranks.setdefault(key, {})[name] = r
    order = sorted(scores, key=lambda key: (-scores[key], min(ranks[key].values())))
    return [(key, scores[key], ranks[key]) for key in order]


def convex_fusion(
    scored: dict[str, list[tuple[int, float]]], weights: dict[str, float]
) -> list[tuple[int, float, dict[str, int]]]:
    """Fuse scored lists of keys: each list's scores min-max scaled to [0, 1] over what it
    retrieved (a key a list did not retrieve scores 0 there), then summed with the weights."""
    scores: dict[int, float] = {}
    ranks: dict[int, dict[str, int]] = {}
    for name, items in scored.items():
        w = weights.get(name, 1.0)
        if not items:
            continue
        values = [s for _, s in items]
        lo, hi = min(values), max(values)
        span = hi - lo
        for r, (key, s) in enumerate(items, start=1):
            scores[key] = scores.get(key, 0.0) + w * ((s - lo) / span if span > 0 else 1.0)
            ranks.setdefault(key, {})[name] = r
    order = sorted(scores, key=lambda key: (-scores[key], min(ranks[key].values())))
    return [(key, scores[key], ranks[key]) for key in order]


def fuse(scored: dict[str, list[tuple[int, float]]], alpha: float, method: Fusion = "rrf",
         k0: int = RRF_K) -> list[tuple[int, float, dict[str, int]]]:
    """Hybrid fusion of a ``vector`` and a ``keyword`` list of (key, score), best first."""
    weights = {"vector": alpha, "keyword": 1.0 - alpha}
    if method == "convex":
        return convex_fusion(scored, weights)
    return reciprocal_rank_fusion({n: [k for k, _ in items] for n, items in scored.items()}, weights, k0)
