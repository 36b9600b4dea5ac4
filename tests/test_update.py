"""Collection.update: change some fields of existing records, keep the rest."""

from __future__ import annotations

import numpy as np
import pytest

import latentspace as ls

from .conftest import snapshot, unit_rows

SPEC = ls.SpaceSpec(model="test/model", dim=8, normalize=True, metric="cosine", modality="vector")


@pytest.fixture
def col(store):
    c = store.create_collection("c", space=SPEC)
    c.add(["a", "b", "c"], documents=["alpha", "beta", "gamma"],
          metadatas=[{"n": 1, "tag": "x"}, {"n": 2, "tag": "y"}, {"n": 3}], vectors=unit_rows(3, 8, seed=1))
    return c


def test_metadata_is_merged_and_everything_else_kept(col):
    before = {r.id: r for r in col.get(include_vectors=True)}
    res = col.update(["a", "b"], metadatas=[{"n": 10}, {"extra": True}])
    assert (res.replaced, res.added) == (2, 0)
    after = {r.id: r for r in col.get(include_vectors=True)}
    assert after["a"].metadata == {"n": 10, "tag": "x"} and after["b"].metadata == {"n": 2, "tag": "y", "extra": True}
    for i in "abc":
        assert after[i].document == before[i].document
        np.testing.assert_array_equal(after[i].vector, before[i].vector)
    assert after["c"].metadata == {"n": 3}
    hit = col.search(vector=before["a"].vector, k=1)[0]  # searches see the new metadata at once
    assert hit.id == "a" and hit.metadata == {"n": 10, "tag": "x"}
    assert col.count(where={"n": 10}) == 1 and col.count(where={"n": 1}) == 0


def test_replace_metadata_whole_documents_and_vectors(col):
    col.update(["a"], metadatas=[{"only": 1}], merge=False)
    assert col.get(ids=["a"])[0].metadata == {"only": 1}
    old = col.get(ids=["b"], include_vectors=True)[0].vector
    col.update(["b"], documents=["beta, rewritten"])  # no encoder: the stored vector is kept
    rec = col.get(ids=["b"], include_vectors=True)[0]
    assert rec.document == "beta, rewritten" and rec.metadata == {"n": 2, "tag": "y"}
    np.testing.assert_array_equal(rec.vector, old)
    assert [h.id for h in col.search("rewritten", mode="keyword")] == ["b"]  # the text index follows
    new = unit_rows(1, 8, seed=99)
    col.update(["c"], vectors=new, space=SPEC)
    np.testing.assert_allclose(col.get(ids=["c"], include_vectors=True)[0].vector, new[0], atol=1e-6)
    assert col.search(vector=new[0], k=1)[0].id == "c"
    assert col.update(["a"], metadatas=[{}]).unchanged == 1  # merging nothing changes nothing


def test_bad_updates_change_nothing(col):
    before = snapshot(col)
    with pytest.raises(ls.NotFoundError, match="'zz'"):
        col.update(["a", "zz"], metadatas=[{"n": 0}, {"n": 0}])
    with pytest.raises(ls.InvalidInputError, match="what to change"):
        col.update(["a"])
    with pytest.raises(ls.InvalidInputError, match="one entry per id"):
        col.update(["a", "b"], metadatas=[{"n": 0}])
    with pytest.raises(ls.InvalidInputError):
        col.update(["a"], metadatas={"n": 0})
    with pytest.raises(ls.InvalidInputError):
        col.update(["a"], metadatas=[{"$bad": 1}])
    with pytest.raises(ls.InvalidInputError):
        col.update(["a"], vectors=np.full((1, 8), np.nan, dtype=np.float32), space=SPEC)
    with pytest.raises(ls.InvalidInputError, match="dim"):
        col.update(["a"], vectors=unit_rows(1, 4))
    with pytest.raises(ls.SpaceMismatchError, match="model"):
        col.update(["a"], vectors=unit_rows(1, 8), space=SPEC.replace(model="other/model"))
    with pytest.raises(ls.InvalidInputError):
        col.update(["a", "a"], metadatas=[{}, {}])
    assert snapshot(col) == before


def test_new_text_is_embedded_again_and_metadata_updates_keep_the_embedding(store, tiny_encoder):
    col = store.create_collection("t", encoder=tiny_encoder)
    col.add(["p", "q"], documents=["the cat sat on the mat", "stocks fell sharply"], metadatas=[{"k": 1}, {"k": 2}])
    col.update(["p"], documents=["interest rates rose again"])
    got = col.get(ids=["p"], include_vectors=True)[0].vector
    np.testing.assert_allclose(got, tiny_encoder.encode_documents(["interest rates rose again"])[0], atol=1e-5)
    q_vec = col.get(ids=["q"], include_vectors=True)[0].vector
    col.update(["q"], metadatas=[{"k": 20}])
    np.testing.assert_array_equal(col.get(ids=["q"], include_vectors=True)[0].vector, q_vec)
    # the record still counts as embedded from its text: upserting the same content is a no-op
    res = col.upsert(["q"], documents=["stocks fell sharply"], metadatas=[{"k": 20}])
    assert res.unchanged == 1 and res.replaced == 0


def test_documents_longer_than_the_model_reads_are_counted_and_warned_once(store, tiny_encoder):
    import warnings

    col = store.create_collection("t", encoder=tiny_encoder)
    limit = tiny_encoder.token_limit
    long_doc = " ".join(["the cat sat on the mat"] * (limit // 3))
    assert tiny_encoder.count_tokens([long_doc])[0] > limit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = col.add(["a", "b", "c"], documents=[long_doc, "a short one", long_doc + " more"])
    truncation = [w for w in caught if issubclass(w.category, ls.TruncationWarning)]
    assert res.truncated == 2 and len(truncation) == 1  # once per call, with the count
    assert "2 of 3 document(s)" in str(truncation[0].message) and "chunk" in str(truncation[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: no warning at all
        assert col.add(["d"], documents=["short"]).truncated == 0
