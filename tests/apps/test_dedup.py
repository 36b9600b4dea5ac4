"""Near-duplicate detection through the ANN index, against an exact scan, on real docstrings."""

from __future__ import annotations

import numpy as np
import pytest

import latentspace as ls
from latentspace.apps.dedup import find_duplicates, remove_duplicates
from latentspace.ingest import chunk_text

from .conftest import unit


@pytest.fixture
def with_dups(store, real_docs, default_enc):
    """5,000 real paragraphs plus 300 near-copies (cos >= 0.995) and 50 exact copies."""
    texts, vecs, _, _ = real_docs
    texts, vecs = texts[:5000], vecs[:5000]
    rng = np.random.default_rng(7)
    src = rng.choice(5000, 350, replace=False)
    noisy = unit(vecs[src[:300]] + rng.normal(0, 0.003, (300, vecs.shape[1])).astype(np.float32))
    col = store.create_collection("docs", encoder=default_enc)
    col.add([f"p{i}" for i in range(5000)], documents=texts, vectors=vecs, space=default_enc.spec)
    col.add([f"dup{j}" for j in range(350)], documents=[texts[i] + " (copy)" for i in src],
            vectors=np.vstack([noisy, vecs[src[300:]]]), space=default_enc.spec)
    return col, src


def groups_as_sets(report):
    return {frozenset(g.ids) for g in report.groups}


def test_ann_finds_every_pair_the_exact_scan_finds(with_dups):
    col, src = with_dups
    ann = find_duplicates(col, 0.97)
    exact = find_duplicates(col, 0.97, exact=True)
    assert ann.pairs == exact.pairs and ann.pairs >= 350
    assert groups_as_sets(ann) == groups_as_sets(exact)
    # every injected copy sits in a group with its original
    where = {i: g for g in groups_as_sets(ann) for i in g}
    for j, i in enumerate(src):
        assert f"p{i}" in where[f"dup{j}"]
    # the reported weakest link is at or above the threshold
    assert min(g.min_similarity for g in ann.groups) >= 0.97


def test_remove_keeps_one_per_group_and_nothing_else(with_dups):
    col, _ = with_dups
    before = len(col)
    rep = find_duplicates(col, 0.97, keep="longest")
    for g in rep.groups:  # the copies carry " (copy)": the longest document is kept
        lengths = {r.id: len(r.document) for r in col.get(ids=g.ids)}
        assert lengths[g.keep] == max(lengths.values())
    deleted = remove_duplicates(col, rep)
    assert deleted == len(rep.duplicates) == sum(len(g.ids) - 1 for g in rep.groups)
    assert len(col) == before - deleted
    assert {r.id for r in col.get(ids=[g.keep for g in rep.groups])} == {g.keep for g in rep.groups}
    assert find_duplicates(col, 0.97).groups == []


def test_a_group_larger_than_k_is_found_whole(store):
    rng = np.random.default_rng(0)
    base = unit(rng.normal(size=(500, 32)).astype(np.float32))
    copies = np.repeat(base[:1], 60, axis=0)
    col = store.create_collection("v", space=ls.SpaceSpec(model="test/x", dim=32))
    col.add([f"b{i}" for i in range(500)], vectors=base)
    col.add([f"c{i}" for i in range(60)], vectors=copies)
    rep = find_duplicates(col, 0.999, k=5)
    assert len(rep.groups) == 1 and len(rep.groups[0].ids) == 61
    assert rep.groups[0].keep == "b0"  # "first": the first stored


def test_filter_limits_the_records_considered(with_dups):
    col, _ = with_dups
    col.upsert(["dup0"], documents=[col.get(ids=["dup0"])[0].document], metadatas=[{"tag": "x"}],
               vectors=col.get(ids=["dup0"], include_vectors=True)[0].vector[None], space=col.spec)
    rep = find_duplicates(col, 0.97, where={"tag": "x"})
    assert rep.records == 1 and rep.groups == []


def test_bad_input(store, with_dups):
    col, _ = with_dups
    count = len(col)
    empty = store.create_collection("empty", space=ls.SpaceSpec(model="test/x", dim=8))
    with pytest.raises(ls.InvalidInputError, match="empty"):
        find_duplicates(empty)
    for kwargs, match in [({"threshold": 1.5}, "threshold"), ({"k": 0}, "'k'"), ({"keep": "random"}, "keep"),
                          ({"where": {"$bad": 1}}, r"\$bad")]:
        with pytest.raises(ls.InvalidInputError, match=match):
            find_duplicates(col, **kwargs)
    assert len(col) == count


def test_records_made_of_chunks_are_compared_whole(store, real_docs, default_enc):
    """A copied record is a duplicate; a record sharing one chunk with another is not (per record),
    though that chunk pair is (per chunk). Deleting removes every chunk of the duplicate record."""
    from latentspace.ingest import Item, chunk_items, ingest

    texts = [t for t in real_docs[0] if len(t) >= 500][:120]
    col = store.create_collection("docs", encoder=default_enc)
    items = [Item(f"r{i}", t, {}) for i, t in enumerate(texts)]
    items.append(Item("copy-of-r3", texts[3], {}))  # a whole record again
    shared = chunk_text(texts[7], 250, 0)[0]  # one paragraph of r7 inside an otherwise other record
    items.append(Item("mixed", shared + "\n\n" + texts[-1][::-1], {}))
    ingest(col, chunk_items(items, 250, 0))
    per_record = find_duplicates(col, 0.99)
    groups = groups_as_sets(per_record)
    assert frozenset({"r3", "copy-of-r3"}) in groups and not any("mixed" in g for g in groups)
    assert per_record.unit == "record" and per_record.records == len(items) < len(col)
    per_chunk = groups_as_sets(find_duplicates(col, 0.99, unit="chunk"))
    assert any({"mixed#0", "r7#0"} <= g for g in per_chunk)  # the shared chunk itself is a duplicate
    n_copy = len(col.get(where={"source_id": "copy-of-r3"}))
    assert n_copy >= 2
    before = len(col)
    deleted = remove_duplicates(col, per_record)
    assert deleted == len(per_record.rows_to_delete()) >= n_copy
    removed = per_record.duplicates
    assert len(col) == before - deleted and not col.get(where={"source_id": {"$in": removed}})
    assert col.get(ids=["mixed#0", "r7#0"]) and len(col.get(where={"source_id": "mixed"})) >= 2
