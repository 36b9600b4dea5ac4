"""Recommendation from examples on digits: both strategies, negatives, exclusions, bad input."""

from __future__ import annotations

import pytest

import latentspace as ls
from latentspace.apps.recommendation import recommend


def ids_of(col, label, n, split="train"):
    return [r.id for r in col.get(where={"label": label, "split": split}, limit=n)]


def labels(col, hits):
    got = {r.id: r.metadata["label"] for r in col.get(ids=[h.id for h in hits])}
    return [got[h.id] for h in hits]


@pytest.mark.parametrize("strategy", ["average", "best_score"])
def test_more_like_these(digits_col, strategy):
    pos = ids_of(digits_col, 7, 3)
    hits = recommend(digits_col, pos, k=20, strategy=strategy)
    assert len(hits) == 20 and not {h.id for h in hits} & set(pos)
    assert labels(digits_col, hits).count(7) >= 18
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("strategy", ["average", "best_score"])
def test_negatives_push_away(digits_col, strategy):
    # 1s and 7s look alike: with 1s as negatives, fewer 1s come back
    pos = ids_of(digits_col, 1, 5)
    neg = ids_of(digits_col, 7, 5)
    plain = labels(digits_col, recommend(digits_col, pos, k=60, strategy=strategy))
    pushed = labels(digits_col, recommend(digits_col, pos, neg, k=60, strategy=strategy))
    assert pushed.count(7) <= plain.count(7)
    assert pushed.count(1) >= 50


def test_best_score_keeps_both_modes_of_the_examples(digits_col):
    pos = ids_of(digits_col, 0, 3) + ids_of(digits_col, 6, 3)
    best = labels(digits_col, recommend(digits_col, pos, k=30, strategy="best_score"))
    assert best.count(0) >= 8 and best.count(6) >= 8 and best.count(0) + best.count(6) >= 28


def test_filter_and_large_k(digits_col):
    pos = ids_of(digits_col, 3, 2)
    hits = recommend(digits_col, pos, k=50, where={"split": "test"})
    assert len(hits) == 50 and all(r.metadata["split"] == "test" for r in digits_col.get(ids=[h.id for h in hits]))
    everything = recommend(digits_col, pos, k=5000)
    assert len(everything) == len(digits_col) - 2


def test_bad_input(store, digits_col):
    n = len(digits_col)
    with pytest.raises(ls.NotFoundError, match="nope"):
        recommend(digits_col, ["d1", "nope"])
    with pytest.raises(ls.NotFoundError, match="negative"):
        recommend(digits_col, ["d1"], ["gone"])
    with pytest.raises(ls.InvalidInputError, match="both positive and negative"):
        recommend(digits_col, ["d1"], ["d1"])
    with pytest.raises(ls.InvalidInputError, match="strategy"):
        recommend(digits_col, ["d1"], strategy="popular")
    with pytest.raises(ls.InvalidInputError, match="'k'"):
        recommend(digits_col, ["d1"], k=10**9)
    with pytest.raises(ls.InvalidInputError, match="list of strings"):
        recommend(digits_col, "d1")
    empty = store.create_collection("e", space=ls.SpaceSpec(model="test/x", dim=4))
    with pytest.raises(ls.NotFoundError):
        recommend(empty, ["a"])
    assert len(digits_col) == n


@pytest.mark.parametrize("strategy", ["average", "best_score"])
def test_per_record_each_record_comes_back_once_and_never_the_examples(store, digits, strategy):
    """Digits stored as 'records' of four chunks each (four images of one class): asked by one
    chunk, per record the whole example record is left out and each record is one hit; per chunk
    the example's own sibling chunks come back first."""
    import numpy as np

    x, y = digits
    col = store.create_collection("d", space=ls.SpaceSpec(model="sklearn/digits", dim=64, normalize=False,
                                                         metric="l2", modality="vector"))
    order = np.argsort(y, kind="stable")[:1600]  # 160 images per class, grouped four by four
    ids = [f"r{n // 4}#{n % 4}" for n in range(len(order))]
    col.add(ids, vectors=x[order], metadatas=[{"source_id": f"r{n // 4}", "chunk": n % 4, "label": int(y[i])}
                                              for n, i in enumerate(order)])
    hits = recommend(col, ["r0#0"], k=15, strategy=strategy)
    records = [h.metadata["source_id"] for h in hits]
    assert len(hits) == 15 and len(set(records)) == 15 and "r0" not in records
    assert sum(h.metadata["label"] == y[order[0]] for h in hits) >= 13
    by_record = recommend(col, ["r0"], k=15, strategy=strategy)  # the record's own id works too
    assert "r0" not in [h.metadata["source_id"] for h in by_record] and len(by_record) == 15
    per_chunk = recommend(col, ["r0#0"], k=200, strategy=strategy, unit="chunk")
    assert {"r0#1", "r0#2", "r0#3"} <= {h.id for h in per_chunk}  # rows as they are: its siblings too
    assert len({h.metadata["source_id"] for h in per_chunk}) < len(per_chunk)
    with pytest.raises(ls.InvalidInputError, match="both positive and negative"):
        recommend(col, ["r0#0"], ["r0#1"], strategy=strategy)
    with pytest.raises(ls.NotFoundError, match="r999"):
        recommend(col, ["r999"], strategy=strategy)
