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


def test_rename_carries_the_history_and_the_retired_spaces(store, two_encoders):
    old, new = two_encoders
    col = make(store, old)
    col.migrate(new, batch_size=16, queries=10)
    store.rename_collection("docs", "articles")
    assert [c.name for c in store.list_collections()] == ["articles"]
    with pytest.raises(ls.NotFoundError):
        store.get_collection("docs")
    moved = store.get_collection("articles", encoder=new)
    assert len(moved) == 60 and moved.search("cats", k=3)
    assert [h["action"].split()[0] for h in store.collection_history("articles")] == ["migrate"]
    assert store.collection_history("docs") == []
    store.rollback_collection("articles")  # the retired space came along
    assert store.get_collection("articles", encoder=old).get(ids=["d3"])[0].metadata == {"i": 3}
    assert store.drop_retired("articles") == 1


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


def _seed_store(path, enc, n=80):
    st = ls.open_store(path)
    col = st.create_collection("docs", encoder=enc)
    col.add([f"d{i}" for i in range(n)], documents=[f"document {i} about {'cats' if i % 3 else 'files'} {i}"
                                                     for i in range(n)])
    st.close()


def test_kill_loop_during_migration(tmp_path, tiny_st, tiny_bert_other):
    import random
    import signal
    import sqlite3
    import subprocess
    import sys
    import time
    from pathlib import Path

    worker = Path(__file__).with_name("migrate_worker.py")
    old = ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32")
    _seed_store(tmp_path / "s", old, n=1500)  # big enough that kills land while batches are being written
    rnd = random.Random(7)
    partial = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, str(worker), "migrate", str(tmp_path / "s"), str(tiny_bert_other),
                                 "-"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        # kill when the shadow collection holds a random share of the records: mid-migration
        target = rnd.randint(50, 1400)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            con = sqlite3.connect(tmp_path / "s" / "latentspace.db", timeout=5)
            try:
                row = con.execute("SELECT MAX(count) FROM collections WHERE name LIKE '~docs~%'").fetchone()
            except sqlite3.OperationalError:  # this probe raced the worker's WAL recovery: look again
                row = (None,)
            finally:
                con.close()
            if row[0] is not None and row[0] >= target:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        with ls.open_store(tmp_path / "s") as st:
            col = st.get_collection("docs")
            assert len(col) == 1500  # whatever the moment, the name serves a complete collection
            assert {r.id for r in col.get()} == {f"d{i}" for i in range(1500)}
            shadows = [n for (n,) in st._backend._q("SELECT name FROM collections WHERE name LIKE '~docs~%'")]
            partial += any(0 < len(st.get_collection(n)) < 1500 for n in shadows)
    new = ls.TransformersEncoder(str(tiny_bert_other), pooling="mean")
    with ls.open_store(tmp_path / "s") as st:
        col = st.get_collection("docs")
        if col.spec.fingerprint != new.spec.fingerprint:  # not finished inside the kill loop: finish now
            report = col.migrate(new, batch_size=8, queries=3)
            assert report.switched and report.embedded + report.reused == 1500
        final = st.get_collection("docs")
        assert final.spec.fingerprint == new.spec.fingerprint and len(final) == 1500
        assert {r.id for r in final.get()} == {f"d{i}" for i in range(1500)}
        assert [h["action"].split()[0] for h in st.collection_history("docs")] == ["migrate"]
    assert partial >= 1  # at least one kill landed mid-migration, and the next run resumed from it


def test_reader_during_the_switch_sees_one_space_at_a_time(tmp_path, tiny_st, tiny_bert_other):
    import json
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).with_name("migrate_worker.py")
    old = ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32")
    _seed_store(tmp_path / "s", old)
    log = tmp_path / "reads.jsonl"
    reader = subprocess.Popen([sys.executable, str(worker), "read", str(tmp_path / "s"), str(tiny_bert_other),
                               str(log), "60"], stderr=open(tmp_path / "reader.err", "w"))
    import time

    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 5):
        time.sleep(0.1)  # until the reader is loaded and reading the old space
    new = ls.TransformersEncoder(str(tiny_bert_other), pooling="mean")
    with ls.open_store(tmp_path / "s") as st:
        st.get_collection("docs").migrate(new, batch_size=16, queries=3)
    reader.wait(120)
    assert reader.returncode == 0, (tmp_path / "reader.err").read_text()[-2000:]
    reads = [json.loads(line) for line in log.read_text().splitlines()]
    with ls.open_store(tmp_path / "s") as st:
        expected = {
            old.spec.fingerprint: [h.id for h in st.get_collection("~docs~retired~1").search(
                "document about cats", k=5, mode="exact")],
            new.spec.fingerprint: [h.id for h in st.get_collection("docs").search(
                "document about cats", k=5, mode="exact")],
        }
    seen = {r["fp"] for r in reads}
    assert seen == set(expected)  # the reader saw the old space, then the new one
    assert all(r["ids"] == expected[r["fp"]] for r in reads)  # every answer wholly from one space
    firsts = [r["fp"] for r in reads]
    switch_at = firsts.index(new.spec.fingerprint)
    assert all(fp == new.spec.fingerprint for fp in firsts[switch_at:])  # and never back
