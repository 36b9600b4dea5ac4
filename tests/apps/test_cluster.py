"""Clustering with labels: digits against their true classes, c-TF-IDF terms, write-back, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

import latentspace as ls
from latentspace.apps import clustering as C


def nmi(col, result):
    truth = {r.id: r.metadata["label"] for r in col.get()}
    return normalized_mutual_info_score([truth[i] for i in result.ids], result.labels)


def test_kmeans_on_digits_recovers_the_classes(digits_col):
    res = C.cluster(digits_col, "kmeans", n_clusters=10, seed=0)
    assert len(res.clusters) == 10 and res.noise == 0
    assert sum(c.size for c in res.clusters) == len(digits_col)
    assert nmi(digits_col, res) >= 0.65
    # central records of a cluster are its members
    lab = res.label_of()
    for c in res.clusters:
        assert all(lab[i] == c.label for i in c.central_ids) and len(c.central_ids) == 3


def test_hdbscan_graph_path_agrees_with_the_direct_one(digits_col, monkeypatch):
    direct = C.cluster(digits_col, "hdbscan", min_cluster_size=15)
    assert nmi(digits_col, direct) >= 0.5 and direct.noise > 0
    monkeypatch.setattr(C, "GRAPH_ABOVE", 100)  # force the sparse neighbour-graph path
    calls = []
    real = C.neighbor_graph
    monkeypatch.setattr(C, "neighbor_graph", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    graph = C.cluster(digits_col, "hdbscan", min_cluster_size=15)
    assert calls == [1]
    assert nmi(digits_col, graph) >= 0.5
    assert adjusted_rand_score(direct.labels, graph.labels) >= 0.8


def test_ctfidf_terms_name_what_sets_a_cluster_apart(store):
    rng = np.random.default_rng(0)
    topics = {"socket": "socket connection network host port", "json": "json decode encode object string",
              "sqlite": "sqlite database table query cursor"}
    docs, vecs, truth = [], [], []
    centres = rng.normal(size=(3, 16))
    for t, (name, words) in enumerate(topics.items()):
        for i in range(40):
            w = words.split()
            docs.append(" ".join(rng.choice(w, 6)) + " the value of this function returns")
            vecs.append(centres[t] + 0.05 * rng.normal(size=16))
            truth.append(name)
    col = store.create_collection("t", space=ls.SpaceSpec(model="test/x", dim=16, normalize=False, metric="l2"))
    col.add([f"r{i}" for i in range(len(docs))], documents=docs, vectors=np.asarray(vecs, dtype=np.float32))
    res = C.cluster(col, "kmeans", n_clusters=3, n_terms=3)
    named = {frozenset(c.terms) for c in res.clusters}
    for words in topics.values():  # each cluster's top terms are its own topic's words, no shared words
        assert any(t <= set(words.split()) and len(t) == 3 for t in named), named


def test_real_docstrings_clusters_are_labelled(docs_col):
    res = C.cluster(docs_col, "kmeans", n_clusters=20, n_terms=5, where={"$contains": "graph"})
    assert 20 == len(res.clusters) and sum(c.size for c in res.clusters) == docs_col.count({"$contains": "graph"})
    docs = {r.id: r.document.lower() for r in docs_col.get(ids=res.ids)}
    apart = 0
    for c in res.clusters:
        assert len(c.terms) == 5 and c.central_documents[0]
        # a cluster's terms occur in its own documents more often than in the others'
        own = {i for i, lab in zip(res.ids, res.labels) if lab == c.label}
        rate_in = np.mean([sum(t in docs[i] for t in c.terms) for i in own])
        rate_out = np.mean([sum(t in docs[i] for t in c.terms) for i in docs if i not in own])
        apart += rate_in > 1.5 * rate_out
    assert apart >= 18, apart


def test_write_back_sets_metadata_and_keeps_the_rest(digits_col):
    before = {r.id: r for r in digits_col.get(include_vectors=True)}
    res = C.cluster(digits_col, "kmeans", n_clusters=10, write_to="cluster", where={"split": "train"})
    after = {r.id: r for r in digits_col.get(include_vectors=True)}
    assert after.keys() == before.keys()
    lab = res.label_of()
    for i, r in after.items():
        if i in lab:
            assert r.metadata == {**before[i].metadata, "cluster": lab[i]}
        else:
            assert r.metadata == before[i].metadata
        np.testing.assert_array_equal(r.vector, before[i].vector)
    assert digits_col.count({"cluster": {"$exists": True}}) == digits_col.count({"split": "train"})
    hit = digits_col.search(vector=after["d0"].vector, space=digits_col.spec, k=1)[0]
    assert hit.id == "d0" and hit.metadata.get("cluster") == lab.get("d0")


def test_bad_input(store, digits_col):
    n = len(digits_col)
    with pytest.raises(ls.InvalidInputError, match="at most 1797 clusters"):
        C.cluster(digits_col, n_clusters=5000)
    with pytest.raises(ls.InvalidInputError, match="method"):
        C.cluster(digits_col, "dbscan")
    with pytest.raises(ls.InvalidInputError, match="min_cluster_size"):
        C.cluster(digits_col, "hdbscan", min_cluster_size=10_000)
    with pytest.raises(ls.InvalidInputError, match="metadata key"):
        C.cluster(digits_col, write_to="a b")
    with pytest.raises(ls.InvalidInputError, match="0 matching|empty"):
        C.cluster(digits_col, where={"label": 99})
    empty = store.create_collection("e", space=ls.SpaceSpec(model="test/x", dim=4))
    with pytest.raises(ls.InvalidInputError, match="empty"):
        C.cluster(empty)
    assert len(digits_col) == n and digits_col.count({"cluster": {"$exists": True}}) == 0


def test_umap_reduction_before_hdbscan_finds_more_of_the_digits(digits_col):
    pytest.importorskip("umap")
    plain = C.cluster(digits_col, "hdbscan", min_cluster_size=15)
    reduced = C.cluster(digits_col, "hdbscan", min_cluster_size=15, reduce_dim=5, seed=0)
    assert reduced.noise < plain.noise and nmi(digits_col, reduced) > nmi(digits_col, plain)
    again = C.cluster(digits_col, "hdbscan", min_cluster_size=15, reduce_dim=5, seed=0)
    np.testing.assert_array_equal(again.labels, reduced.labels)  # seeded
    km = C.cluster(digits_col, "kmeans", n_clusters=10, reduce_dim=5)
    assert nmi(digits_col, km) >= 0.65
    with pytest.raises(ls.InvalidInputError, match="reduce_dim"):
        C.cluster(digits_col, reduce_dim=1)


def test_words_in_every_cluster_are_no_cluster_s_terms(store):
    """Boilerplate words frequent in every cluster ("package provides contains") are left out;
    a topic word is kept even where it also appears once in another cluster."""
    rng = np.random.default_rng(1)
    topics = {"socket": "socket connection network host port", "json": "json decode encode object string",
              "sqlite": "sqlite database table query cursor"}
    docs, vecs = [], []
    centres = rng.normal(size=(3, 16))
    for t, words in enumerate(topics.values()):
        for i in range(40):
            docs.append(" ".join(rng.choice(words.split(), 6)) + " this package provides and contains"
                        + (" socket" if i == 0 else ""))
            vecs.append(centres[t] + 0.05 * rng.normal(size=16))
    col = store.create_collection("t", space=ls.SpaceSpec(model="test/x", dim=16, normalize=False, metric="l2"))
    col.add([f"r{i}" for i in range(len(docs))], documents=docs, vectors=np.asarray(vecs, dtype=np.float32))
    res = C.cluster(col, "kmeans", n_clusters=3, n_terms=5)
    every = {t for c in res.clusters for t in c.terms}
    assert not every & {"package", "provides", "contains"}
    assert any("socket" in c.terms for c in res.clusters)


def test_hdbscan_that_finds_one_big_cluster_says_so(store):
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(size=(300, 8)), 8 + rng.normal(size=(20, 8))]).astype(np.float32)
    col = store.create_collection("b", space=ls.SpaceSpec(model="test/x", dim=8, normalize=False, metric="l2"))
    col.add([f"r{i}" for i in range(len(x))], vectors=x)
    res = C.cluster(col, "hdbscan", min_cluster_size=15)
    assert res.clusters[0].size > 0.8 * len(x)
    assert any("one cluster" in n and "--reduce-dim" in n for n in res.notes) and "notes" in res.to_dict()
    assert C.cluster(col, "kmeans", n_clusters=2).notes == []
