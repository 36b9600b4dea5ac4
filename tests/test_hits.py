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
    storage._row_cache.clear()  # every lookup a miss: filled from SQLite
    storage._row_cache_bytes = 0
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
    assert 0 < storage._row_cache_bytes <= 3_000 and len(storage._row_cache) < 60
    assert storage._row_cache_bytes == sum(collection_storage._entry_bytes(e) for e in storage._row_cache.values())
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
