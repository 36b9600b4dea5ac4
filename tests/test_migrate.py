"""Migration to a new model: shadow build, agreement report, atomic switch, resume, rollback."""

import pytest

import latentspace as ls

DOCS = [f"document {i} about {'cats' if i % 2 else 'file data'} and number {i}" for i in range(60)]


@pytest.fixture
def two_encoders(tiny_st, tiny_bert_other):
    return (ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32"),
            ls.TransformersEncoder(str(tiny_bert_other), pooling="mean"))


def make(store, enc):
    col = store.create_collection("docs", encoder=enc)
    col.add([f"d{i}" for i in range(60)], documents=DOCS, metadatas=[{"i": i} for i in range(60)])
    return col


def test_migrate_switch_and_rollback(store, two_encoders):
    old, new = two_encoders
    col = make(store, old)
    report = col.migrate(new, batch_size=16, queries=20)
    assert report.switched and report.records == 60 and report.embedded == 60 and report.reused == 0
    assert 0.0 <= report.overlap_at_10 <= 1.0 and report.queries == 20 and report.estimated_tokens > 0
    moved = store.get_collection("docs")
    assert moved.spec.fingerprint == new.spec.fingerprint and len(moved) == 60
    assert moved.get(ids=["d7"])[0].metadata == {"i": 7}
    assert [c.name for c in store.list_collections()] == ["docs"]  # shadows and retired spaces stay hidden
    with pytest.raises(ls.SpaceMismatchError):
        store.get_collection("docs", encoder=old)
    store.rollback_collection("docs")
    back = store.get_collection("docs", encoder=old)
    assert back.spec.fingerprint == old.spec.fingerprint and len(back) == 60
    history = store.collection_history("docs")
    assert [h["action"].split()[0] for h in history] == ["migrate", "rollback"]
    assert history[0]["fingerprint"] == new.spec.fingerprint and history[1]["fingerprint"] == old.spec.fingerprint
    assert store.drop_retired("docs") == 1
    with pytest.raises(ls.NotFoundError):
        store.rollback_collection("docs")


def test_migration_resumes_without_re_embedding(store, two_encoders, monkeypatch):
    old, new = two_encoders
    col = make(store, old)
    calls = {"n": 0}
    real = ls.Collection.upsert

    def crash_after_two(self, *a, **kw):
        calls["n"] += 1
        if self.name.startswith("~") and calls["n"] > 2:
            raise KeyboardInterrupt("killed")
        return real(self, *a, **kw)

    monkeypatch.setattr(ls.Collection, "upsert", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        col.migrate(new, batch_size=16)
    monkeypatch.undo()
    assert store.get_collection("docs").spec.fingerprint == old.spec.fingerprint  # not switched
    report = col.migrate(new, batch_size=16, queries=5)
    assert report.reused == 32 and report.embedded == 28 and report.switched


def test_migration_refusals(store, two_encoders):
    old, _ = two_encoders
    col = make(store, old)
    with pytest.raises(ls.InvalidInputError, match="already in the space"):
        col.migrate(old)
    vecs = store.create_collection("vecs", space=ls.SpaceSpec(model="m", dim=32, modality="vector"))
    import numpy as np

    v = np.random.default_rng(0).normal(size=(3, 32)).astype("f4")
    vecs.add(["a", "b", "c"], vectors=v / np.linalg.norm(v, axis=1, keepdims=True))
    with pytest.raises(ls.InvalidInputError, match="without a stored document"):
        vecs.migrate(old)
    assert store.get_collection("docs").spec.fingerprint == old.spec.fingerprint
    assert len(store.get_collection("docs")) == 60
