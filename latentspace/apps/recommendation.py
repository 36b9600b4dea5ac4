"""Recommendation from example records: "more like these, less like those".

Two strategies, as Qdrant's recommendation API describes them:

- ``average``: one query vector, ``avg(positives) + (avg(positives) - avg(negatives))``
  (just the positives' average without negatives), searched like any vector.
- ``best_score``: each candidate scores its best similarity to any positive; with
  negatives, a candidate closer to a negative than to every positive scores
  ``-(best negative similarity)`` and sinks. Candidates are the union of each positive's
  nearest neighbours in the collection's index (``k * oversample`` each), scored exactly.

The example records themselves never come back. Per record (the default), an example id
may name a record stored as chunks (``metadata["source_id"]``) or one of its chunks: the
record's chunks are its examples (``average`` takes their mean), none of them comes back,
and each record comes back once, as its best chunk. ``unit="chunk"`` treats rows as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..collections.chunks import SOURCE_KEY, UNITS, Unit, record_of
from ..collections.graph import unit_rows
from ..storage.hits import Hit
from ..core.errors import InvalidInputError, NotFoundError
from ..core.validation import MAX_K, check_choice, check_ids, check_int, check_k

Strategy = Literal["average", "best_score"]


def _examples(col, ids: list[str], what: str, unit: str) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """(vectors, which example each vector belongs to, the record ids they stand for)."""
    recs = col.get(ids=ids, include_vectors=True)
    found = {r.id: r for r in recs}
    missing = [i for i in ids if i not in found]
    by_example: dict[int, list[np.ndarray]] = {}
    records: set[str] = set()
    if unit == "record":
        wanted = {record_of(r.id, r.metadata) for r in recs} | set(missing)
        chunks = col.get(where={SOURCE_KEY: {"$in": sorted(wanted)}}, include_vectors=True) if wanted else []
        of_record: dict[str, list[np.ndarray]] = {}
        for r in chunks:
            of_record.setdefault(r.metadata[SOURCE_KEY], []).append(r.vector)
        missing = [i for i in missing if i not in of_record]
        for n, i in enumerate(ids):
            rid = record_of(i, found[i].metadata) if i in found else i
            if rid in of_record or i in found:
                by_example[n] = of_record.get(rid) or [found[i].vector]
                records.add(rid)
    else:
        by_example = {n: [found[i].vector] for n, i in enumerate(ids) if i in found}
        records = set(ids)
    if missing:
        raise NotFoundError(
            f"recommend: {what} id(s) not in collection {col.name!r}: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}. Use ids of stored records."
        )
    owner = np.concatenate([np.full(len(v), n) for n, v in sorted(by_example.items())])
    vectors = np.stack([v for _, vs in sorted(by_example.items()) for v in vs]).astype(np.float32)
    return vectors, owner, records


def _similarity(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        return unit_rows(a) @ unit_rows(b).T
    if metric == "dot":
        return a @ b.T
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return -np.sqrt(np.maximum(d2, 0))


def recommend(
    col, positive_ids: Sequence[str], negative_ids: Sequence[str] = (), *, k: int = 10, where: dict | None = None,
    strategy: Strategy = "average", oversample: int = 4, unit: Unit = "record",
) -> list[Hit]:
    """Records like ``positive_ids`` (and unlike ``negative_ids``), best first, inputs excluded.

    Per record (default): one hit per record, its best chunk; the examples' records are left out."""
    pos = check_ids(positive_ids, "recommend(positive_ids)")
    neg = check_ids(negative_ids, "recommend(negative_ids)", allow_empty=True)
    k = check_k(k, "recommend")
    check_choice(strategy, "strategy", "recommend", ("average", "best_score"))
    check_choice(unit, "unit", "recommend", UNITS)
    oversample = check_int(oversample, "oversample", "recommend", 1, 100)
    both = set(pos) & set(neg)
    if both:
        raise InvalidInputError(f"recommend: id(s) {sorted(both)[:5]} are both positive and negative.")
    pv, p_owner, p_records = _examples(col, pos, "positive", unit)
    if neg:
        nv, n_owner, n_records = _examples(col, neg, "negative", unit)
    else:
        nv, n_owner, n_records = np.zeros((0, col.spec.dim), np.float32), np.zeros(0, np.int64), set()
    if p_records & n_records:
        raise InvalidInputError(f"recommend: record(s) {sorted(p_records & n_records)[:5]} are both positive and "
                                "negative (through their chunks).")
    exclude = p_records | n_records
    spec = col.spec
    per_record = unit == "record"

    def kept(hits) -> list[Hit]:
        out, seen = [], set()
        for h in hits:
            rid = record_of(h.id, h.metadata) if per_record else h.id
            if rid in exclude or h.id in exclude or rid in seen:
                continue
            seen.add(rid)  # one hit per record: its best chunk
            out.append(h)
        return out

    depth = min(MAX_K, (k * oversample if per_record else k) + len(pv) + len(nv))
    if strategy == "average":
        q = _mean_of_means(pv, p_owner)
        if len(nv):
            q = q + (q - _mean_of_means(nv, n_owner))
        if spec.metric == "cosine" or spec.normalize:
            if not np.linalg.norm(q) > 0:
                raise InvalidInputError("recommend: the positives and negatives cancel out (zero query vector); "
                                        "use strategy='best_score' or other examples.")
            q = unit_rows(q)
        hits = col.search(vector=q.astype(np.float32), space=spec, k=depth, where=where)
        return kept(hits)[:k]
    # best_score: candidates near any positive, scored exactly against all examples
    per = min(MAX_K, k * oversample + len(pv) + len(nv))
    lists = col.search_batch(vectors=pv, space=spec, k=per, where=where, include_vectors=True)
    cand: dict[str, Hit] = {}
    for hits in lists:
        for h in hits:
            rid = record_of(h.id, h.metadata) if per_record else h.id
            if rid not in exclude and h.id not in exclude:
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
    order = np.argsort(-score, kind="stable")
    return kept(hits[i]._replace(score=float(score[i]), vector=None) for i in order.tolist())[:k]


def _mean_of_means(x: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """The mean of each example's vectors (a record: its chunks), then their mean: every
    example weighs the same, however many chunks it has."""
    sums = np.zeros((int(owner.max()) + 1, x.shape[1]))
    np.add.at(sums, owner, x)
    counts = np.bincount(owner)
    return (sums[counts > 0] / counts[counts > 0, None]).mean(axis=0)
