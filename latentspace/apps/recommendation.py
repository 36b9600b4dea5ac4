"""Recommendation from example records: "more like these, less like those".

Two strategies, as Qdrant's recommendation API describes them:

- ``average``: one query vector, ``avg(positives) + (avg(positives) - avg(negatives))``
  (just the positives' average without negatives), searched like any vector.
- ``best_score``: each candidate scores its best similarity to any positive; with
  negatives, a candidate closer to a negative than to every positive scores
  ``-(best negative similarity)`` and sinks. Candidates are the union of each positive's
  nearest neighbours in the collection's index (``k * oversample`` each), scored exactly.

The example records themselves never come back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..collections.graph import unit_rows
from ..collections.hits import Hit
from ..core.errors import InvalidInputError, NotFoundError
from ..core.validation import MAX_K, check_choice, check_ids, check_int, check_k

Strategy = Literal["average", "best_score"]


def _examples(col, ids: list[str], what: str) -> np.ndarray:
    recs = col.get(ids=ids, include_vectors=True)
    found = {r.id: r.vector for r in recs}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFoundError(
            f"recommend: {what} id(s) not in collection {col.name!r}: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}. Use ids of stored records."
        )
    return np.stack([found[i] for i in ids]).astype(np.float32)


def _similarity(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        return unit_rows(a) @ unit_rows(b).T
    if metric == "dot":
        return a @ b.T
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return -np.sqrt(np.maximum(d2, 0))


def recommend(
    col, positive_ids: Sequence[str], negative_ids: Sequence[str] = (), *, k: int = 10, where: dict | None = None,
    strategy: Strategy = "average", oversample: int = 4,
) -> list[Hit]:
    """Records like ``positive_ids`` (and unlike ``negative_ids``), best first, inputs excluded."""
    pos = check_ids(positive_ids, "recommend(positive_ids)")
    neg = check_ids(negative_ids, "recommend(negative_ids)", allow_empty=True)
    k = check_k(k, "recommend")
    check_choice(strategy, "strategy", "recommend", ("average", "best_score"))
    oversample = check_int(oversample, "oversample", "recommend", 1, 100)
    both = set(pos) & set(neg)
    if both:
        raise InvalidInputError(f"recommend: id(s) {sorted(both)[:5]} are both positive and negative.")
    pv = _examples(col, pos, "positive")
    nv = _examples(col, neg, "negative") if neg else np.zeros((0, col.spec.dim), np.float32)
    exclude = set(pos) | set(neg)
    spec = col.spec
    depth = min(MAX_K, k + len(exclude))
    if strategy == "average":
        q = pv.mean(axis=0)
        if len(nv):
            q = q + (q - nv.mean(axis=0))
        if spec.metric == "cosine" or spec.normalize:
            if not np.linalg.norm(q) > 0:
                raise InvalidInputError("recommend: the positives and negatives cancel out (zero query vector); "
                                        "use strategy='best_score' or other examples.")
            q = unit_rows(q)
        hits = col.search(vector=q.astype(np.float32), space=spec, k=depth, where=where)
        return [h for h in hits if h.id not in exclude][:k]
    # best_score: candidates near any positive, scored exactly against all examples
    per = min(MAX_K, k * oversample + len(exclude))
    lists = col.search_batch(vectors=pv, space=spec, k=per, where=where, include_vectors=True)
    cand: dict[str, Hit] = {}
    for hits in lists:
        for h in hits:
            if h.id not in exclude:
                cand.setdefault(h.id, h)
    if not cand:
        return []
    hits = list(cand.values())
    x = np.stack([h.vector for h in hits])
    best_pos = _similarity(x, pv, spec.metric).max(axis=1)
    if len(nv):
        best_neg = _similarity(x, nv, spec.metric).max(axis=1)
        score = np.where(best_pos > best_neg, best_pos, -best_neg if spec.metric != "l2" else -1e6 - best_neg)
    else:
        score = best_pos
    order = np.argsort(-score, kind="stable")[:k]
    return [hits[i]._replace(score=float(score[i]), vector=None) for i in order.tolist()]
