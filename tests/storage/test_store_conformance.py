"""One conformance suite for every Store backend (tests/storage/conftest.py lists them)."""

from __future__ import annotations

import numpy as np
import pytest

import latentspace as ls

from ..conftest import unit_rows
from .conftest import BACKENDS, require


@pytest.fixture
def backend(backend_name, tmp_path):
    """Opens the store: again on the same folder after a close, for a backend that persists."""
    opened = []

    def make():
        s = BACKENDS[backend_name](tmp_path / "store")
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


SPEC = ls.SpaceSpec(model="test/model", dim=16, normalize=True, metric="cosine", modality="vector")


def fill(col, n=200, seed=0):
    x = unit_rows(n, SPEC.dim, seed)
    ids = [f"r{i}" for i in range(n)]
    docs = [f"record {i} about {'cats' if i % 3 == 0 else 'dogs'} number{i}" for i in range(n)]
    metas = [{"i": i, "group": ["a", "b", "c"][i % 3], "even": i % 2 == 0, "tags": ["x", f"t{i % 5}"]} for i in range(n)]
    col.add(ids, documents=docs, metadatas=metas, vectors=x)
    return x, ids, docs, metas


def test_create_get_list_delete(backend):
    st = backend()
    col = st.create_collection("c1", space=SPEC)
    assert col.spec == SPEC and len(col) == 0
    with pytest.raises(ls.AlreadyExistsError):
        st.create_collection("c1", space=SPEC)
    st.create_collection("c2", space=SPEC.replace(metric="l2"))
    assert [i.name for i in st.list_collections()] == ["c1", "c2"]
    assert st.get_collection("c2").spec.metric == "l2"
    assert st.get_or_create_collection("c1", space=SPEC).name == "c1"
    assert st.get_or_create_collection("c3", space=SPEC).name == "c3"
    st.delete_collection("c1")
    with pytest.raises(ls.NotFoundError):
        st.get_collection("c1")
    with pytest.raises(ls.NotFoundError):
        col.search(vector=unit_rows(1, 16)[0])
    with pytest.raises(ls.NotFoundError):
        st.delete_collection("c1")


def test_rename_collection(backend):
    st = backend()
    col = st.create_collection("old", space=SPEC)
    x, ids, _, metas = fill(col, 30)
    st.create_collection("taken", space=SPEC)
    before = col.search(vector=x[4], k=5)
    for bad, err in ((("old", "taken"), ls.AlreadyExistsError), (("nope", "new"), ls.NotFoundError),
                     (("old", "bad/name"), ls.InvalidInputError), (("old", ""), ls.InvalidInputError)):
        with pytest.raises(err):
            st.rename_collection(*bad)
    assert [c.name for c in st.list_collections()] == ["old", "taken"]  # nothing changed
    st.rename_collection("old", "new")
    assert [c.name for c in st.list_collections()] == ["new", "taken"]
    with pytest.raises(ls.NotFoundError):
        st.get_collection("old")
    renamed = st.get_collection("new")
    assert len(renamed) == 30 and renamed.get(ids=["r4"])[0].metadata == metas[4]
    assert [h.id for h in renamed.search(vector=x[4], k=5)] == [h.id for h in before]
    col.add(["late"], vectors=unit_rows(1, 16, seed=77))  # a handle opened before the rename still works
    assert len(renamed) == 31
    require(st, "persistent")
    st.close()
    again = ls.open_store(st.path)
    assert len(again.get_collection("new")) == 31
    again.close()


def test_add_get_count_and_persist(backend):
    st = backend()
    col = st.create_collection("c", space=SPEC)
    x, ids, docs, metas = fill(col)
    assert len(col) == 200
    assert col.count(where={"group": "a"}) == 67
    got = col.get(ids=["r5", "missing", "r1"], include_vectors=True)
    assert [r.id for r in got] == ["r5", "r1"]
    assert got[0].document == docs[5] and got[0].metadata == metas[5]
    np.testing.assert_array_equal(got[0].vector, x[5])
    assert [r.id for r in col.get(where={"i": {"$lt": 3}})] == ["r0", "r1", "r2"]
    assert len(col.get(limit=10, offset=195)) == 5
    require(st, "persistent")
    st.close()
    st2 = backend()
    col2 = st2.get_collection("c")
    assert len(col2) == 200 and col2.spec == SPEC
    hits = col2.search(vector=x[7], k=1)
    assert hits[0].id == "r7" and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_search_modes_agree_and_scores_mean_higher_is_better(backend):
    st = backend()
    for metric in ("cosine", "dot", "l2"):
        col = st.create_collection(f"m-{metric}", space=SPEC.replace(metric=metric))
        x, *_ = fill(col)
        q = unit_rows(5, 16, seed=9)
        for qi in q:
            ann = col.search(vector=qi, k=10)
            ex = col.search(vector=qi, k=10, mode="exact")
            assert [h.id for h in ann] == [h.id for h in ex]
            scores = [h.score for h in ex]
            assert scores == sorted(scores, reverse=True)
            ref = x @ qi if metric != "l2" else -np.linalg.norm(x - qi, axis=1)
            np.testing.assert_allclose(scores, np.sort(ref)[::-1][:10], atol=1e-4)
            dists = ls.distances(ex)
            assert dists == sorted(dists)
            # the single-query fast path and the batch path give the same scores and distances
            np.testing.assert_allclose([h.score for h in ann], scores, atol=1e-4)
            np.testing.assert_allclose(ls.distances(ann), dists, atol=1e-4)
        for qi, hits in zip(q, col.search_batch(vectors=q, k=10)):
            np.testing.assert_allclose([h.score for h in hits], [h.score for h in col.search(vector=qi, k=10)],
                                       atol=1e-6)


def test_upsert_delete_and_index_follow(backend):
    st = backend()
    col = st.create_collection("c", space=SPEC)
    x, ids, *_ = fill(col, 50)
    assert col.search(vector=x[0], k=1)[0].id == "r0"
    new = unit_rows(1, 16, seed=77)
    res = col.upsert(["r0"], documents=["replaced"], metadatas=[{"i": -1}], vectors=new)
    assert (res.added, res.replaced) == (0, 1)
    assert col.search(vector=new[0], k=1)[0].id == "r0"
    assert col.search(vector=x[0], k=1)[0].id != "r0"
    assert col.get(ids=["r0"])[0].document == "replaced"
    same = col.upsert(["r0"], documents=["replaced"], metadatas=[{"i": -1}], vectors=new)
    assert same.unchanged == 1 and same.replaced == 0
    assert col.delete(ids=["r1", "r2", "nope"]) == 2
    assert col.delete(where={"i": {"$gte": 40}}) == 10
    assert len(col) == 38
    remaining = {r.id for r in col.get()}
    for qi in unit_rows(10, 16, seed=3):
        assert {h.id for h in col.search(vector=qi, k=38)} == remaining


def test_filtered_search_returns_k_whenever_k_match(backend):
    st = backend()
    col = st.create_collection("c", space=SPEC)
    x, *_ = fill(col, 300)
    q = unit_rows(1, 16, seed=5)[0]
    for where, n_match in (({"group": "b"}, 100), ({"i": {"$in": [1, 2, 3]}}, 3), ({"even": True}, 150)):
        hits = col.search(vector=q, k=10, where=where)
        assert len(hits) == min(10, n_match)
        ex = col.search(vector=q, k=10, where=where, mode="exact")
        assert [h.id for h in hits] == [h.id for h in ex]
    assert col.search(vector=q, k=5, where={"group": "zzz"}) == []


def test_keyword_and_hybrid(backend):
    st = backend()
    col = st.create_collection("c", space=SPEC)
    fill(col, 60)
    kw = col.search("number17", k=5, mode="keyword")
    assert kw[0].id == "r17" and kw[0].distance is None and kw[0].score > 0
    with pytest.raises(ls.InvalidInputError):
        col.search("cats", k=5, mode="hybrid")  # no encoder: text cannot be embedded


def test_k_larger_than_collection_returns_all(backend):
    st = backend()
    col = st.create_collection("c", space=SPEC)
    fill(col, 7)
    assert len(col.search(vector=unit_rows(1, 16)[0], k=100)) == 7
    assert len(col.search(vector=unit_rows(1, 16)[0], k=100, mode="exact")) == 7


def test_search_batch_matches_single(backend):
    st = backend()
    col = st.create_collection("c", space=SPEC)
    fill(col, 100)
    q = unit_rows(4, 16, seed=11)
    batch = col.search_batch(vectors=q, k=5)
    for qi, hits in zip(q, batch):
        assert [h.id for h in hits] == [h.id for h in col.search(vector=qi, k=5)]


def test_hit_metadata_is_read_only_and_stays_true_to_the_store(backend):
    import copy
    import json
    import pickle

    st = backend()
    col = st.create_collection("c", space=SPEC)
    x, ids, _, metas = fill(col, 60)
    flat = unit_rows(1, 16, seed=5)
    col.add(["flat"], documents=["flat cats"], metadatas=[{"k": 1}], vectors=flat)
    q = x[0]
    searches = [
        col.search(vector=flat[0], k=3),
        col.search_batch(vectors=flat, k=3)[0],
        col.search(vector=q, k=5),
        col.search_batch(vectors=x[:3], k=5)[1],
        col.search(vector=q, k=5, mode="exact"),
        col.search(vector=q, k=5, where={"group": "a"}),
        col.search(vector=q, k=5, include_vectors=True),
        col.search("cats", k=5, mode="keyword"),
    ]
    for hits in searches:
        for h in hits:
            m = h.metadata
            want = {"k": 1} if h.id == "flat" else metas[ids.index(h.id)]
            assert isinstance(m, dict) and m == want and json.loads(json.dumps(m)) == want
            for method, args in (("__setitem__", ("i", -1)), ("__delitem__", ("i",)), ("update", ({"i": -1},)),
                                 ("pop", ("i",)), ("clear", ()), ("setdefault", ("new", 1)), ("popitem", ()),
                                 ("__ior__", ({"i": -1},))):
                with pytest.raises(TypeError, match="read-only"):
                    getattr(m, method)(*args)
            mine = dict(m)
            mine["i"] = -1  # a copy is the user's own
            for c in (m.copy(), copy.copy(m), copy.deepcopy(m), m | {"i": -1}):
                assert type(c) is dict
            assert pickle.loads(pickle.dumps(m)) == want
            if "tags" in m:
                m["tags"].append("changed")  # nested values are parsed per hit: changing them changes nothing stored
    assert all(hits[0].id == "flat" for hits in searches[:2])
    again = col.search(vector=q, k=5) + col.search(vector=flat[0], k=3)
    assert all(h.metadata == ({"k": 1} if h.id == "flat" else metas[ids.index(h.id)]) for h in again)
    rec = col.get(ids=[ids[0]])[0]
    assert rec.metadata == metas[0]
    col.upsert(["copy"], metadatas=[again[-3].metadata], vectors=flat)  # a hit's metadata can be written back
    assert col.get(ids=["copy"])[0].metadata == {"k": 1}
    rec.metadata["i"] = -1  # records from get() are fresh and the caller's own


def test_hnsw_params_are_per_collection(backend):
    st = backend()
    col = st.create_collection("c", space=SPEC, hnsw={"M": 8, "ef_construction": 50, "ef_search": 20})
    assert st.collection_info("c").hnsw == ls.HnswParams(M=8, ef_construction=50, ef_search=20)
    fill(col, 50)
    assert len(col.search(vector=unit_rows(1, 16)[0], k=5)) == 5
    with pytest.raises(ls.InvalidInputError):
        st.create_collection("d", space=SPEC, hnsw={"M": 1})
    with pytest.raises(ls.InvalidInputError):
        st.create_collection("d", space=SPEC, hnsw={"links": 8})


def test_threads_share_a_store_safely(backend):
    import threading

    st = backend()
    col = st.create_collection("c", space=SPEC)
    fill(col, 100)
    errors = []

    def writer(t):
        try:
            for b in range(10):
                ids = [f"t{t}-{b}-{i}" for i in range(20)]
                col.add(ids, vectors=unit_rows(20, 16, seed=1000 * t + b), metadatas=[{"t": t}] * 20)
                col.delete(ids=ids[:5])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader():
        try:
            for i in range(100):
                hits = col.search(vector=unit_rows(1, 16, seed=i)[0], k=5)
                assert len(hits) == 5
                col.search(vector=unit_rows(1, 16, seed=i)[0], k=5, where={"group": "a"})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(3)] + [threading.Thread(target=reader)
                                                                                 for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(col) == 100 + 3 * 10 * 15
    assert col.count(where={"t": 1}) == 150


def test_a_collection_with_neither_encoder_nor_space_embeds_with_the_default_model(store, default_enc, monkeypatch):
    import latentspace.embed as E

    monkeypatch.setattr(E, "default_encoder", lambda: default_enc)  # the model loaded once per test run
    col = store.create_collection("docs")
    assert col.has_encoder and col.spec.fingerprint == default_enc.spec.fingerprint
    col.add(["a", "b"], documents=["The cat sat on the mat.", "Stocks fell sharply."])
    assert col.search("a kitten", k=1)[0].id == "a"
    with pytest.raises(ls.InvalidInputError, match="not both"):
        store.create_collection("x", encoder=default_enc, space=default_enc.spec)


def test_cached_filter_results_follow_writes_from_another_handle(tmp_path):
    """A filtered search caches the filter's matches until the next write, including a
    write through another handle on the same store (another connection, or process)."""
    path = tmp_path / "s"
    a = ls.open_store(path)
    col_a = a.create_collection("c", space=ls.SpaceSpec(model="m", dim=8, modality="vector"))
    vecs = unit_rows(30, 8)
    col_a.add([f"r{i}" for i in range(30)], vectors=vecs, metadatas=[{"g": i % 3} for i in range(30)])
    where = {"g": 0}
    before = {h.id for h in col_a.search(vector=vecs[0], k=30, where=where)}
    assert before == {f"r{i}" for i in range(0, 30, 3)}
    b = ls.open_store(path)
    col_b = b.get_collection("c")
    col_b.delete(ids=["r3"])
    col_b.add(["new"], vectors=vecs[1:2], metadatas=[{"g": 0}])
    after = {h.id for h in col_a.search(vector=vecs[0], k=30, where=where)}
    assert after == (before - {"r3"}) | {"new"}
    assert {h.id for h in col_a.search_batch(vectors=vecs[:2], k=30, where=where)[1]} == after
    b.close()
    a.close()


def test_hybrid_search_gives_the_reference_results_on_every_backend(backend, tiny_encoder):
    """Hybrid fuses the backend's vector and keyword lists in one place (collections.fusion), so
    every backend returns the memory backend's fused hits, ranks included. Keyword scores are
    each backend's BM25 (SQLite FTS5, Milvus' BM25 function, the memory scorer): RRF scores,
    which depend on ranks only, are equal; convex scores, which scale BM25 values, may differ."""
    docs = [f"note {i}: {'the cat sat on the mat' if i % 3 == 0 else 'a dog ran in the park'} number{i}"
            for i in range(40)]
    cols = []
    for st in (backend(), ls.open_store(":memory:")):
        col = st.create_collection("h", encoder=tiny_encoder)
        col.add([f"r{i}" for i in range(40)], documents=docs, metadatas=[{"i": i} for i in range(40)])
        cols.append(col)
    for fusion in ("convex", "rrf"):
        for alpha in (0.2, 0.5, 0.8):
            got, want = (c.search("cat on the mat number9", k=8, mode="hybrid", alpha=alpha, fusion=fusion)
                         for c in cols)
            assert [h.id for h in got] == [h.id for h in want]
            assert [h.ranks for h in got] == [h.ranks for h in want]
            if fusion == "rrf":
                np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-4, atol=1e-6)


def test_retired_spaces_are_listed_readable_and_dropped_by_exact_name(backend):
    """A switch keeps the old space under the store's own name; ``retired_spaces`` lists it
    (readable, comparable), ``drop_retired`` drops exactly that collection's (a name with '_'
    is not a pattern)."""
    st = backend()
    for name in ("a_b", "aXb"):
        col = st.create_collection(name, space=SPEC)
        col.add(["old"], vectors=unit_rows(1, 16, seed=1))
        shadow = st.create_collection(f"~{name}~next", space=SPEC.replace(model="test/next"))
        shadow.add(["new"], vectors=unit_rows(1, 16, seed=2))
        st._swap(name, f"~{name}~next", "switch")
    assert [r.id for r in st.get_collection("a_b").get()] == ["new"]
    retired = st.retired_spaces("a_b")
    assert len(retired) == 1 and retired[0].spec == SPEC and retired[0].name.startswith("~a_b~retired~")
    assert [r.id for r in st.get_collection(retired[0].name).get()] == ["old"]
    assert st.drop_retired("a_b") == 1
    assert st.retired_spaces("a_b") == [] and len(st.retired_spaces("aXb")) == 1


def test_explain_search_says_how_a_filtered_search_runs(backend):
    """Every backend answers explain_search with the same keys; where it counts the
    matches they equal count(where); the embedded store and the memory backend scan a small
    filter's matches exactly, and a bad filter or k is refused before anything runs."""
    st = backend()
    col = st.create_collection("c", space=SPEC)
    col.add([f"r{i}" for i in range(300)], vectors=unit_rows(300, 16, seed=9), metadatas=[{"b": i % 3} for i in range(300)])
    where = {"b": 1}
    info = col.explain_search(where, k=5)
    assert set(info) == {"matches", "plan", "estimates", "measured"}
    assert info["matches"] in (None, col.count(where=where))
    if type(st._backend).__name__ in ("EmbeddedStore", "MemoryStore"):
        assert info == {"matches": 100, "plan": "exact", "estimates": {}, "measured": []}
        assert col.explain_search()["matches"] == 300
    with pytest.raises(ls.InvalidInputError, match=r"where\['b'\]\['\$bad'\]"):
        col.explain_search({"b": {"$bad": 1}})
    with pytest.raises(ls.InvalidInputError):
        col.explain_search(where, k=0)
