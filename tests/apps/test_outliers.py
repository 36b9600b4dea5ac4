"""Outlier scores from the neighbour graph: equal to scikit-learn's on raw vectors; real outliers rank first."""

from __future__ import annotations

import numpy as np
import pytest

import latentspace as ls
from latentspace.apps.outliers import outlier_scores


@pytest.fixture
def small_docs(store, real_docs, default_enc):
    texts, vecs, _, _ = real_docs
    col = store.create_collection("docs", space=default_enc.spec)
    col.add([f"p{i}" for i in range(2000)], documents=texts[:2000], vectors=vecs[:2000])
    return col, vecs[:2000]


def test_lof_equals_scikit_learn_on_raw_vectors(small_docs):
    from sklearn.neighbors import LocalOutlierFactor

    col, x = small_docs
    ours = outlier_scores(col, "lof", k=10)
    ref = -LocalOutlierFactor(n_neighbors=10, metric="cosine", algorithm="brute").fit(x).negative_outlier_factor_
    pos = {i: n for n, i in enumerate(ours.ids)}
    mine = np.array([ours.scores[pos[f"p{i}"]] for i in range(2000)])
    close = np.isclose(mine, ref, rtol=1e-3, atol=1e-3)
    assert close.mean() >= 0.98, close.mean()  # the rest differ only where HNSW missed a neighbour
    top_ours = {i for i, _, _ in ours.top(20)}
    top_ref = {f"p{i}" for i in np.argsort(-ref)[:20]}
    assert len(top_ours & top_ref) >= 18


def test_knn_score_is_the_mean_distance_to_k_nearest(small_docs):
    col, x = small_docs
    ours = outlier_scores(col, "knn", k=5)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    ref = (1 - np.sort(sims, axis=1)[:, ::-1][:, :5]).mean(axis=1)
    pos = {i: n for n, i in enumerate(ours.ids)}
    mine = np.array([ours.scores[pos[f"p{i}"]] for i in range(2000)])
    assert np.isclose(mine, ref, atol=1e-4).mean() >= 0.98


@pytest.mark.parametrize("method", ["knn", "lof"])
def test_noise_images_rank_first_among_digits(digits_col, method):
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 1, (10, 64)).astype(np.float32)
    digits_col.add([f"noise{i}" for i in range(10)], vectors=noise)
    rep = outlier_scores(digits_col, method, k=10)
    top = [i for i, _, _ in rep.top(10)]
    assert sum(i.startswith("noise") for i in top) >= 9, top
    scores = rep.scores
    assert np.isfinite(scores).all() and len(scores) == len(digits_col)


def test_filtered_scores_only_the_matching_records(digits_col):
    rep = outlier_scores(digits_col, "lof", where={"label": 3})
    assert len(rep.ids) == digits_col.count({"label": 3})


def test_bad_input(store, digits_col):
    n = len(digits_col)
    with pytest.raises(ls.InvalidInputError, match="method"):
        outlier_scores(digits_col, "iforest")
    with pytest.raises(ls.InvalidInputError, match="'k'"):
        outlier_scores(digits_col, k=0)
    one = store.create_collection("one", space=ls.SpaceSpec(model="test/x", dim=4))
    with pytest.raises(ls.InvalidInputError, match="at least 2"):
        outlier_scores(one)
    one.add(["a"], vectors=np.array([[1, 0, 0, 0]], dtype=np.float32))
    with pytest.raises(ls.InvalidInputError, match="at least 2"):
        outlier_scores(one)
    assert len(digits_col) == n


def test_a_record_s_own_chunks_do_not_make_it_look_ordinary(store, real_docs, default_enc):
    """Among docstrings, a recipe cut in three chunks: per chunk each has close neighbours (its
    own chunks) and scores like any other row; per record it is the most unusual one."""
    from latentspace.ingest import Item, chunk_items, ingest

    texts = real_docs[0][:300]
    odd = ("Preheat the oven to 200 degrees. Whisk the eggs with the sugar until pale, fold in the flour and the "
           "melted butter, pour the batter into a buttered tin and bake for twenty-five minutes until golden. ") * 4
    col = store.create_collection("docs", encoder=default_enc)
    col.add([f"p{i}" for i in range(len(texts))], documents=texts, vectors=real_docs[1][:300], space=default_enc.spec)
    ingest(col, chunk_items([Item("odd", odd, {})], 300, 0))
    chunks = [r.id for r in col.get(where={"source_id": "odd"})]
    assert len(chunks) >= 3
    per_record = outlier_scores(col, "knn", k=3)
    assert per_record.top(1)[0][0] == "odd" and len(per_record.ids) == len(texts) + 1
    per_chunk = outlier_scores(col, "knn", k=3, unit="chunk")
    rank = {i: r for r, (i, _, _) in enumerate(per_chunk.top(len(per_chunk.ids)))}
    assert min(rank[c] for c in chunks) > 50  # its siblings hide it among the ordinary rows
    lof = outlier_scores(col, "lof", k=3)
    assert lof.top(1)[0][0] == "odd"
