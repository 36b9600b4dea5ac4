"""ANN recall@10 against exact search at default settings, on the test corpus's 8,420 real MiniLM vectors."""

from __future__ import annotations

import numpy as np
import pytest

import latentspace as ls


@pytest.fixture(scope="module")
def filled(real_docs, default_enc, tmp_path_factory):
    texts, vecs, qtexts, qvecs = real_docs
    st = ls.open_store(tmp_path_factory.mktemp("recall") / "s")
    col = st.create_collection("docs", encoder=default_enc)
    ids = [f"p{i}" for i in range(len(texts))]
    for s in range(0, len(ids), 5000):
        col.add(ids[s : s + 5000], documents=texts[s : s + 5000], vectors=vecs[s : s + 5000],
                metadatas=[{"bucket": i % 10} for i in range(s, min(s + 5000, len(ids)))], space=default_enc.spec)
    yield col, qvecs, default_enc
    st.close()


def recall(col, qvecs, spec, **kw):
    ann = col.search_batch(vectors=qvecs, space=spec, k=10, **kw)
    ex = col.search_batch(vectors=qvecs, space=spec, k=10, mode="exact", **kw)
    return float(np.mean([len({h.id for h in a} & {h.id for h in e}) / max(len(e), 1) for a, e in zip(ann, ex)]))


def test_recall_at_10_default_settings(filled, real_docs):
    col, qvecs, enc = filled
    assert len(col) == len(real_docs[0])
    r = recall(col, qvecs, enc.spec)
    assert r >= 0.95, r


def test_single_query_path_agrees_with_batch(filled):
    col, qvecs, enc = filled
    for q in qvecs[:20]:
        single = [h.id for h in col.search(vector=q, space=enc.spec, k=10)]
        batch = [h.id for h in col.search_batch(vectors=q[None], space=enc.spec, k=10)[0]]
        assert single == batch


@pytest.mark.parametrize("where", [{"bucket": 3}, {"bucket": {"$in": [1, 2, 3, 4, 5, 6, 7, 8]}}])
def test_filtered_recall(filled, where):
    col, qvecs, enc = filled
    r = recall(col, qvecs[:200], enc.spec, where=where)
    assert r >= 0.95, r
    hits = col.search(vector=qvecs[0], space=enc.spec, k=10, where=where)
    assert len(hits) == 10 and all(col.get(ids=[h.id])[0].metadata["bucket"] in
                                   (where["bucket"]["$in"] if isinstance(where["bucket"], dict) else [3])
                                   for h in hits)


def test_text_queries_find_their_own_document(filled):
    col, _, enc = filled
    docs = col.get(limit=5, offset=1234)
    for rec in docs:
        hits = col.search(rec.document, k=3)
        assert rec.id in [h.id for h in hits]


def test_the_filtered_plan_follows_measured_costs(filled, monkeypatch):
    """The planner learns both plans' costs from its own timings (the first large filtered
    search runs both) and then runs the cheaper one; answers stay right either way."""
    from latentspace.storage.embedded import planner

    col, qvecs, enc = filled
    storage = col._storage
    storage._plan_costs = planner.PlanCosts()
    where = {"bucket": {"$in": [1, 2, 3, 4, 5, 6, 7, 8]}}  # 80% of the records
    ran = []
    real_exact, real_walk = type(storage).exact, type(storage)._walk
    monkeypatch.setattr(type(storage), "exact", lambda self, *a, **kw: ran.append("exact") or real_exact(self, *a, **kw))
    monkeypatch.setattr(type(storage), "_walk", lambda self, *a, **kw: ran.append("walk") or real_walk(self, *a, **kw))
    first = col.search(vector=qvecs[0], space=enc.spec, k=10, where=where)
    assert ran == ["exact", "walk"] and storage._plan_costs.choose(100, 1000) is not None
    truth = col.search(vector=qvecs[0], space=enc.spec, k=10, where=where, mode="exact")
    assert [h.id for h in first] == [h.id for h in truth]  # the calibrating search answers exactly
    costs = storage._plan_costs
    costs.scan_per_row, costs.walk_at_full = 1e-9, 1.0  # scanning is cheap here: the plan follows
    ran.clear()
    col.search(vector=qvecs[1], space=enc.spec, k=10, where=where)
    assert ran == ["exact"]
    costs.scan_per_row, costs.walk_at_full = 1.0, 1e-9
    ran.clear()
    hits = col.search(vector=qvecs[1], space=enc.spec, k=10, where=where)
    assert ran == ["walk"] and len(hits) == 10
    m, n = col.count(where), len(col)
    assert planner.PlanCosts(2e-9, 1e-5).choose(m, n) == ("exact" if 2e-9 * m <= 1e-5 * n / m else "walk")
