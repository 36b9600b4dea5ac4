"""How hits are made from the row cache: rows deleted meanwhile, cache misses, nested metadata."""

from __future__ import annotations

import latentspace as ls
from latentspace.storage.hits import Hit, make_hits
from latentspace.core.frozen import FrozenDict

from .conftest import unit_rows

SPEC = ls.SpaceSpec(model="test/model", dim=8, normalize=True, metric="cosine", modality="vector")


def test_make_hits_leaves_out_rows_deleted_meanwhile_or_keeps_their_place():
    m = FrozenDict(a=1)
    hits = make_hits(("a", None, "c"), ("da", None, "dc"), (m, FrozenDict(), m), [0.9, 0.8, 0.7], [0.1, 0.2, 0.3])
    assert [h.id for h in hits] == ["a", "c"] and all(type(h) is Hit for h in hits)
    assert hits[1] == Hit("c", 0.7, "dc", {"a": 1}, 0.3, None, None)
    kept = make_hits(("a", None), (None, None), (m, m), [1.0, 0.5], [0.0, 0.5], keep_gone=True)
    assert kept[0].id == "a" and kept[1] is None
    assert make_hits((), (), (), [], []) == []


def test_hit_columns_fetch_misses_and_parse_nested_metadata_per_call(tmp_path):
    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("c", space=SPEC)
    col.add(["flat", "nested", "none"], documents=["f", "n", None],
            metadatas=[{"k": 1}, {"tags": ["x"], "d": {"y": 2}}, {}], vectors=unit_rows(3, 8, seed=1))
    storage = col._storage
    rids = [r[0] for r in storage._q("SELECT rid FROM records WHERE collection_id = ? ORDER BY rid", (storage.cid,))]
    storage.clear_row_cache()  # every lookup a miss: filled from SQLite
    ids, docs, metas = storage.hit_columns(rids + [10**9])  # the last rid does not exist
    assert ids == ("flat", "nested", "none", None) and docs == ("f", "n", None, None)
    assert [dict(m) for m in metas] == [{"k": 1}, {"tags": ["x"], "d": {"y": 2}}, {}, {}]
    assert all(isinstance(m, FrozenDict) for m in metas)
    again = storage.hit_columns(rids)[2]
    assert again[0] is metas[0]  # flat metadata: the cache's own read-only object, shared
    assert again[1] == metas[1] and again[1] is not metas[1]  # nested: parsed per call
    assert again[1]["tags"] is not metas[1]["tags"]
    assert storage.hit_columns([]) == ((), (), ())
    st.close()


def test_vectors_by_id_and_search_among(tmp_path):
    from latentspace.collections.graph import search_among

    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("c", space=SPEC)
    x = unit_rows(4, 8, seed=2)
    col.add(["a", "b", "c", "d"], documents=["A", "B", "C", "D"], metadatas=[{"n": i} for i in range(4)], vectors=x)
    found, vecs = col._storage.vectors(["c", "zz", "a"])  # in the order asked; unknown ids left out
    assert found == ["c", "a"] and vecs.shape == (2, 8) and vecs.dtype == "float32"
    assert (vecs == x[[2, 0]]).all()
    hits = search_among(col, ["c", "zz", "a"], x[0], 2)  # exact, among these ids only
    assert [(h.id, h.document, h.metadata) for h in hits] == [("a", "A", {"n": 0}), ("c", "C", {"n": 2})]
    assert abs(hits[0].score - 1.0) < 1e-6 and abs(hits[1].score - float(x[2] @ x[0])) < 1e-6
    assert abs(hits[1].distance - (1.0 - hits[1].score)) < 1e-6
    assert col._storage.vectors(["nope"])[1].shape == (0, 8)
    st.close()


def test_row_cache_stays_in_its_bound_and_results_stay_right(tmp_path, monkeypatch):
    from latentspace.storage.embedded import rowcache as collection_storage

    monkeypatch.setattr(collection_storage, "ROW_CACHE_BYTES", 3_000)
    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("c", space=SPEC)
    x = unit_rows(60, 8, seed=3)
    metas = [{"n": i, "tags": ["t"]} if i % 2 else {"n": i} for i in range(60)]
    col.add([f"r{i}" for i in range(60)], documents=[f"doc {i}" for i in range(60)], metadatas=metas, vectors=x)
    for batch in (col.search_batch(vectors=x, k=5), [col.search(vector=v, k=5) for v in x]):
        for i, hits in enumerate(batch):
            assert hits[0].id == f"r{i}" and hits[0].document == f"doc {i}" and hits[0].metadata == metas[i]
            assert all(h.metadata == metas[int(h.id[1:])] for h in hits)
    storage = col._storage
    cached = [storage.cached_entry(r) for r in storage._row_order]
    assert 0 < storage._row_cache_bytes <= 3_000 and 0 < len(cached) < 60 and None not in cached
    assert storage._row_cache_bytes == sum(collection_storage._entry_bytes(e) for e in cached)
    assert sum(e is not None for e in storage._row_slots) == len(cached)  # evicted slots emptied
    st.close()


def test_row_ids_past_the_list_are_cached_in_a_dict_alike(tmp_path, monkeypatch):
    """The row cache is a list indexed by row id up to LIST_SLOTS; row ids past it (a store
    grown that large) are cached in a dict, with the same hits, eviction and bound."""
    from latentspace.storage.embedded import rowcache

    monkeypatch.setattr(rowcache, "LIST_SLOTS", 25)
    monkeypatch.setattr(rowcache, "ROW_CACHE_BYTES", 6_000)
    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("c", space=SPEC)
    x = unit_rows(60, 8, seed=5)
    col.add([f"r{i}" for i in range(60)], documents=[f"doc {i}" for i in range(60)],
            metadatas=[{"n": i} for i in range(60)], vectors=x)
    storage = col._storage
    for _ in range(2):  # misses, then the cache (list and dict) answers
        for i, v in enumerate(x):
            one = col.search(vector=v, k=3)
            assert one == col.search_batch(vectors=v[None], k=3)[0]
            assert (one[0].id, one[0].document, one[0].metadata) == (f"r{i}", f"doc {i}", {"n": i})
    assert len(storage._row_slots) <= 25 and storage._far_rows
    assert all(r >= 25 for r in storage._far_rows)
    cached = [storage.cached_entry(r) for r in storage._row_order]
    assert storage._row_cache_bytes == sum(rowcache._entry_bytes(e) for e in cached) <= 6_000
    assert len(storage._far_rows) + sum(e is not None for e in storage._row_slots) == len(storage._row_order)
    st.close()


def test_hits_convert_to_a_frame_and_an_arrow_table_in_one_call(store):
    import numpy as np

    col = store.create_collection("v", space=ls.SpaceSpec(model="test/x", dim=4))
    col.add(["a", "b", "c"], documents=["one", "two", "three"], vectors=np.eye(4, dtype=np.float32)[:3],
            metadatas=[{"year": 2020, "id": "shadowed"}, {"year": 2021}, {}])
    hits = col.search(vector=np.eye(4, dtype=np.float32)[0], k=3)
    df = ls.hits_to_pandas(hits)
    assert list(df["id"]) == [h.id for h in hits] and list(df["rank"]) == [1, 2, 3]
    assert df.loc[0, "score"] == hits[0].score and df.loc[0, "metadata.id"] == "shadowed"
    assert df.set_index("id").loc["b", "year"] == 2021
    table = ls.hits_to_arrow(col.search_batch(vectors=np.eye(4, dtype=np.float32)[:2], k=2))
    assert table.num_rows == 4 and table.column("query").to_pylist() == [0, 0, 1, 1]
    assert {"id", "score", "distance", "document", "year"} <= set(table.column_names)
    assert ls.hits_to_pandas([]).empty and ls.hits_to_arrow([]).num_rows == 0


def test_hits_for_builds_the_same_hits_as_the_columns_and_parses_nested_metadata_per_call(tmp_path):
    """The single-query hot path (``hits_for``): the same hits as make_hits over the
    columns, flat metadata shared read-only, nested metadata parsed anew per call, cache
    misses fetched."""
    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("c", space=SPEC)
    col.add(["a", "b"], documents=["A", None], metadatas=[{"k": 1}, {}], vectors=unit_rows(2, 8, seed=3))
    storage = col._storage
    rids = [r[0] for r in storage._q("SELECT rid FROM records WHERE collection_id = ? ORDER BY rid", (storage.cid,))]
    storage.clear_row_cache()
    first = storage.hits_for(rids, [0.25, 0.5])  # misses: fetched
    again = storage.hits_for(rids, [0.25, 0.5])  # hits of the cache
    want = make_hits(*storage.hit_columns(rids), [0.75, 0.5], [0.25, 0.5])
    assert first == again == want and all(type(h) is Hit for h in again)
    assert again[0].metadata is first[0].metadata and isinstance(again[0].metadata, FrozenDict)
    assert storage.hits_for([], []) == []
    assert not storage._nested_cached
    col.add(["n"], metadatas=[{"tags": ["x"]}], vectors=unit_rows(1, 8, seed=4))
    rid = storage._q("SELECT rid FROM records WHERE id = 'n'")[0][0]
    one, two = storage.hits_for([rid], [0.0]), storage.hits_for([rid], [0.0])
    assert storage._nested_cached and one == two and one[0].metadata is not two[0].metadata
    assert one[0].metadata["tags"] is not two[0].metadata["tags"]  # no hit can change what another sees
    st.close()


def test_largest_k_is_the_k_largest_in_order_on_every_size():
    """Sorting a short array, selecting on a middling one and the sampled threshold on a long
    one all give the k largest, best first (ties, all-equal and k >= m included)."""
    import numpy as np

    from latentspace.storage.index import largest_k

    rng = np.random.default_rng(0)
    for m in (1, 5, 111, 256, 257, 1023, 1024, 5000, 20_000):
        for k in (1, 10, 100, m, m + 3):
            for s in (rng.standard_normal(m).astype(np.float32),
                      np.round(rng.standard_normal(m), 1).astype(np.float32),  # many ties
                      np.ones(m, np.float32)):
                got = largest_k(s, k)
                assert len(got) == min(k, m) and len(set(got.tolist())) == len(got)
                assert np.array_equal(s[got], np.sort(s)[::-1][: min(k, m)]), (m, k)


def test_single_query_exact_equals_the_batch_path():
    import numpy as np

    from latentspace.storage.index import exact_topk

    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    labels = np.arange(3000, dtype=np.int64) * 7
    for metric, unit in (("cosine", False), ("dot", False), ("l2", False)):
        q = rng.standard_normal((2, 16)).astype(np.float32)
        one_l, one_d = exact_topk(x, labels, q[:1], 10, metric, unit=unit)
        two_l, two_d = exact_topk(x, labels, q, 10, metric, unit=unit)
        assert np.array_equal(one_l[0], two_l[0]) and np.allclose(one_d[0], two_d[0], atol=1e-5), metric
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    q = xn[:2] + 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    one_l, one_d = exact_topk(xn, labels, q[:1], 10, "cosine", unit=True)
    two_l, two_d = exact_topk(xn, labels, q, 10, "cosine", unit=True)
    assert one_l[0, 0] == 0 and np.array_equal(one_l[0], two_l[0]) and np.allclose(one_d[0], two_d[0], atol=1e-6)


def _raw_space_in_three_groups(tmp_path, metric: str, seed: int, group: int):
    """3,000 vectors of norms 0.1 to 10 stored as given, metadata ``b = i % 3``: (store,
    collection, vectors, rng, the filter on ``group``, the positions it matches)."""
    import numpy as np

    spec = ls.SpaceSpec(model=f"test/{metric}", dim=8, normalize=False, metric=metric, modality="vector")
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((3000, 8)) * rng.uniform(0.1, 10.0, (3000, 1))).astype(np.float32)
    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("c", space=spec)
    col.add([f"r{i}" for i in range(3000)], vectors=x, metadatas=[{"b": i % 3} for i in range(3000)])
    return st, col, x, rng, {"b": group}, np.flatnonzero(np.arange(3000) % 3 == group)


def test_a_filtered_scan_of_an_unnormalised_cosine_space_keeps_the_rows_norms_until_a_write(tmp_path):
    """Cosine over vectors stored as given: the filtered scan divides by each row's norm,
    computed once per filter and forgotten at the next write; answers equal numpy's."""
    import numpy as np

    st, col, x, rng, where, sub = _raw_space_in_three_groups(tmp_path, "cosine", 5, 1)

    def truth(q):
        cos = (x[sub] @ q) / (np.linalg.norm(x[sub], axis=1) * np.linalg.norm(q))
        return [f"r{i}" for i in sub[np.argsort(-cos)[:10]]]

    qs = rng.standard_normal((5, 8)).astype(np.float32)
    for q in qs:
        for mode in ("exact", "vector"):
            got = [h.id for h in col.search(vector=q * 3.0, k=10, where=where, mode=mode)]
            if mode == "exact":
                assert got == truth(q)
            else:
                assert len(set(got) & set(truth(q))) >= 9
    state = next(iter(col._storage._filters.values()))
    assert state.norms is not None and np.allclose(state.norms, np.linalg.norm(x[sub], axis=1))
    col.upsert(["r1"], vectors=(qs[0] * 0.01)[None], metadatas=[{"b": 1}])  # now the nearest, whatever its norm
    assert col.search(vector=qs[0], k=1, where=where, mode="exact")[0].id == "r1"
    st.close()


def test_a_filtered_l2_scan_keeps_the_rows_norms_until_a_write_and_equals_numpy(tmp_path):
    """l2 over the matching rows: their norms are computed once per filter (the scan adds
    them to -2<q, x> + |q|^2) and forgotten at the next write; single and batch answers
    equal numpy's Euclidean top 10, distances included."""
    import numpy as np

    st, col, x, rng, where, sub = _raw_space_in_three_groups(tmp_path, "l2", 6, 2)
    qs = rng.standard_normal((5, 8)).astype(np.float32) * 3.0
    batch = col.search_batch(vectors=qs, k=10, where=where, mode="exact")
    for q, from_batch in zip(qs, batch):
        d = np.linalg.norm(x[sub] - q, axis=1)
        order = np.argsort(d)[:10]
        hits = col.search(vector=q, k=10, where=where, mode="exact")
        lean = col.search(vector=q, k=10, where=where)  # 1,000 matches: the lean single-query scan
        for got in (hits, from_batch, lean):
            assert [h.id for h in got] == [f"r{i}" for i in sub[order]]
            assert np.allclose([h.distance for h in got], d[order], rtol=1e-4, atol=1e-3)
            assert all(h.score == -h.distance for h in got)
    state = next(iter(col._storage._filters.values()))
    assert state.norms is not None and np.allclose(state.norms, np.linalg.norm(x[sub], axis=1))
    col.upsert(["r2"], vectors=qs[0][None], metadatas=[{"b": 2}])  # now the nearest
    top = col.search(vector=qs[0], k=1, where=where, mode="exact")[0]
    assert top.id == "r2" and top.distance < 1e-3
    st.close()


def test_a_repeated_small_filter_makes_hits_from_its_rows_entries_until_a_write(tmp_path, monkeypatch):
    """A repeated filter of few rows keeps its rows' cache entries aligned with its rows
    (hits without row id lookups): the same hits as the batch path, entries that outlive the
    row cache, forgotten at a write; nested metadata and filters over ENTRIES_UP_TO rows make
    their hits by row id (nested metadata parsed per hit)."""
    from latentspace.storage.embedded import planner
    from latentspace.storage.filter import parse

    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("c", space=SPEC)
    n = 600
    col.add([f"r{i}" for i in range(n)], documents=[f"doc {i}" if i % 2 else None for i in range(n)],
            metadatas=[{"b": i % 3, "i": i} for i in range(n)], vectors=unit_rows(n, 8, seed=7))
    storage = col._storage
    where = {"b": 1}
    qs = unit_rows(6, 8, seed=8)

    def state():
        return storage._filters[parse(where)]

    def agree():
        for q in qs:
            one = col.search(vector=q, k=10, where=where)
            assert one == col.search_batch(vectors=q[None], k=10, where=where)[0]
            assert one == col.search(vector=q, k=10, where=where, mode="exact") and len(one) == 10
            assert all(h.metadata["b"] == where["b"] for h in one)

    col.search(vector=qs[0], k=10, where=where)
    assert state().entries is None  # a filter seen once makes its hits by row id
    agree()
    entries = state().entries
    sql = storage._q("SELECT rid, id FROM records WHERE collection_id = ? ORDER BY rid", (storage.cid,))
    ids_of = dict(sql)
    assert [e[0] for e in entries] == [ids_of[r] for r in state().rids.tolist()]
    assert state().nbytes() >= planner.ENTRY_BYTES * len(entries)
    storage.clear_row_cache()  # the entries serve without the row cache
    agree()
    assert state().entries is entries
    col.upsert(["r1"], vectors=qs[0][None], metadatas=[{"b": 1, "i": -1}], documents=["moved"])
    top = col.search(vector=qs[0], k=1, where=where)[0]
    assert (top.id, top.document, top.metadata["i"]) == ("r1", "moved", -1)
    col.delete(["r4"])
    for _ in range(3):
        assert "r4" not in {h.id for h in col.search(vector=unit_rows(1, 8, seed=11)[0], k=200, where=where)}
    assert state().entries and "r4" not in {e[0] for e in state().entries}
    agree()
    # nested metadata: no entries, each hit's metadata parsed anew
    col.upsert(["r7"], vectors=qs[1][None], metadatas=[{"b": 1, "tags": ["x"]}])
    agree()
    assert state().entries == ()
    one, two = (col.search(vector=qs[1], k=1, where=where)[0] for _ in range(2))
    assert one.id == two.id == "r7" and one.metadata["tags"] is not two.metadata["tags"]
    # a filter over ENTRIES_UP_TO rows: no entries, the same hits
    monkeypatch.setattr(planner, "ENTRIES_UP_TO", 50)
    where = {"b": 2}
    agree()
    assert state().entries == ()
    st.close()
