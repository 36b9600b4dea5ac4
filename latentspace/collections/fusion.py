"""Reciprocal rank fusion of ranked lists."""

from __future__ import annotations

RRF_K = 60


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
