"""Every bad input gets a typed error, and the store's contents stay exactly as they were."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

import latentspace as ls
from latentspace.embed.base import Encoder

from ..conftest import snapshot, unit_rows

SPEC = ls.SpaceSpec(model="m", dim=8, normalize=True, modality="vector")


@pytest.fixture
def col(store):
    c = store.create_collection("c", space=SPEC)
    c.add(["a", "b", "c"], documents=["alpha", "beta", "gamma"], metadatas=[{"n": 1}, {"n": 2}, {"n": 3}],
          vectors=unit_rows(3, 8))
    return c


def good(n=1, seed=5):
    return unit_rows(n, 8, seed)


NAN = good()
NAN[0, 3] = np.nan
INF = good()
INF[0, 0] = np.inf
HUGE = good().astype(np.float64)
HUGE[0, 0] = 1e300

BAD_ADDS = [
    ("nan", dict(ids=["x"], vectors=NAN), ls.InvalidInputError),
    ("inf", dict(ids=["x"], vectors=INF), ls.InvalidInputError),
    ("overflow", dict(ids=["x"], vectors=HUGE), ls.InvalidInputError),
    ("wrong dim", dict(ids=["x"], vectors=unit_rows(1, 9)), ls.InvalidInputError),
    ("non-numeric", dict(ids=["x"], vectors=[["a"] * 8]), ls.InvalidInputError),
    ("ragged", dict(ids=["x", "y"], vectors=[[0.1] * 8, [0.1] * 7]), ls.InvalidInputError),
    ("string vectors", dict(ids=["x"], vectors="12345678"), ls.InvalidInputError),
    ("empty batch", dict(ids=[], vectors=np.zeros((0, 8))), ls.InvalidInputError),
    ("duplicate ids", dict(ids=["x", "x"], vectors=good(2)), ls.InvalidInputError),
    ("int id", dict(ids=[3], vectors=good()), ls.InvalidInputError),
    ("empty id", dict(ids=[""], vectors=good()), ls.InvalidInputError),
    ("ids a string", dict(ids="x", vectors=good()), ls.InvalidInputError),
    ("lengths", dict(ids=["x", "y"], vectors=good(1)), ls.InvalidInputError),
    ("doc lengths", dict(ids=["x"], documents=["a", "b"], vectors=good()), ls.InvalidInputError),
    ("meta lengths", dict(ids=["x"], metadatas=[{}, {}], vectors=good()), ls.InvalidInputError),
    ("meta not object", dict(ids=["x"], metadatas=[["a"]], vectors=good()), ls.InvalidInputError),
    ("meta a dict", dict(ids=["x"], metadatas={"a": 1}, vectors=good()), ls.InvalidInputError),
    ("meta too deep", dict(ids=["x"], metadatas=[{"a": {"b": {"c": {"d": {"e": 1}}}}}], vectors=good()),
     ls.InvalidInputError),
    ("meta $key", dict(ids=["x"], metadatas=[{"$gt": 1}], vectors=good()), ls.InvalidInputError),
    ("meta nan", dict(ids=["x"], metadatas=[{"a": float("nan")}], vectors=good()), ls.InvalidInputError),
    ("meta object value", dict(ids=["x"], metadatas=[{"a": object()}], vectors=good()), ls.InvalidInputError),
    ("zero vector", dict(ids=["x"], vectors=np.zeros((1, 8))), ls.InvalidInputError),
    ("not unit norm", dict(ids=["x"], vectors=good() * 3), ls.InvalidInputError),
    ("existing id", dict(ids=["a"], vectors=good()), ls.AlreadyExistsError),
    ("other space", dict(ids=["x"], vectors=good(), space=SPEC.replace(model="other")), ls.SpaceMismatchError),
    ("no vectors no docs", dict(ids=["x"]), ls.InvalidInputError),
    ("docs without encoder", dict(ids=["x"], documents=["text"]), ls.InvalidInputError),
    ("mixed batch, one bad", dict(ids=["x", "y"], vectors=np.vstack([good(), NAN])), ls.InvalidInputError),
]


@pytest.mark.parametrize("name,kwargs,error", BAD_ADDS, ids=[b[0] for b in BAD_ADDS])
def test_bad_add_is_refused_and_nothing_changes(col, name, kwargs, error):
    before = snapshot(col)
    with pytest.raises(error) as info:
        col.add(**kwargs)
    assert str(info.value)  # a message, not an empty error
    assert snapshot(col) == before
    if error is ls.InvalidInputError:
        with pytest.raises(error):
            col.upsert(**kwargs)
        assert snapshot(col) == before


@pytest.mark.parametrize("name", ["", "   ", "a/b", "..", "a..b", "x\x00y", "n" * 129, "-lead", 5, None, "tab\tname"])
def test_bad_collection_names(store, name):
    with pytest.raises(ls.InvalidInputError):
        store.create_collection(name, space=SPEC)
    assert store.list_collections() == []


@pytest.mark.parametrize("k", [0, -1, 2.5, "10", True, 10_001, 10**12])
def test_bad_k(col, k):
    with pytest.raises(ls.InvalidInputError, match="'k' parameter"):
        col.search(vector=good()[0], k=k)


def test_bad_queries(col):
    before = snapshot(col)
    for q in ("", "   "):
        with pytest.raises(ls.InvalidInputError):
            col.search(q, mode="keyword")
    with pytest.raises(ls.InvalidInputError):
        col.search(vector=np.zeros(8))
    for bad in (NAN[0], INF[0], good()[0] * 3, good()[0] * (1 + 3e-3), good()[0] * (1 - 3e-3), good()[0] * 1e30):
        for where in (None, {"n": {"$gte": 1}}):  # the one-vector fast path refuses them all, as the batch path does
            with pytest.raises(ls.InvalidInputError), np.errstate(over="ignore"):  # (numpy warns of 1e30 squared)
                col.search(vector=bad, where=where)
            with pytest.raises(ls.InvalidInputError):
                col.search_batch(vectors=bad[None], where=where)
    near = good()[0] * (1 + 5e-4)  # unit within the tolerance: accepted, the same hits either way
    assert col.search(vector=near, k=2, where={"n": {"$gte": 2}}) == col.search_batch(vectors=near[None], k=2,
                                                                                      where={"n": {"$gte": 2}})[0]
    for alpha in (True, "0.5", float("nan"), -0.1):
        with pytest.raises(ls.InvalidInputError):
            col.search(vector=good()[0], alpha=alpha)
    with pytest.raises(ls.InvalidInputError):
        col.search(vector=good()[0], mode="fuzzy")
    with pytest.raises(ls.InvalidInputError):
        col.search(vector=good()[0], alpha=2.0)
    with pytest.raises(ls.SpaceMismatchError):
        col.search(vector=good()[0], space=SPEC.replace(normalize=False))
    with pytest.raises(ls.InvalidInputError):
        col.search(vector=good()[0], where={"n": {"$near": 1}})
    with pytest.raises(ls.InvalidInputError):
        col.delete()
    assert snapshot(col) == before


def test_store_path_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("hello")
    with pytest.raises(ls.InvalidInputError, match="is a file"):
        ls.open_store(f)
    assert f.read_text() == "hello"


def test_corrupt_sqlite_file(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "latentspace.db").write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(ls.CorruptStoreError):
        ls.open_store(d)


def test_foreign_sqlite_file(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    con = sqlite3.connect(d / "latentspace.db")
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(ls.CorruptStoreError, match="not a latentspace store"):
        ls.open_store(d)


def test_newer_format_is_refused_untouched(tmp_path):
    st = ls.open_store(tmp_path / "s")
    st.close()
    db = tmp_path / "s" / "latentspace.db"
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = '999' WHERE key = 'format_version'")
    con.commit()
    con.close()
    raw = db.read_bytes()
    with pytest.raises(ls.StoreFormatError, match="format 999"):
        ls.open_store(tmp_path / "s")
    assert db.read_bytes() == raw


class BadEncoder(Encoder):
    kind = "bad"

    def __init__(self, mode):
        self.mode = mode
        self.spec = ls.SpaceSpec(model="bad", dim=8)

    def _encode_raw(self, texts):
        x = unit_rows(len(texts), 8)
        if self.mode == "dim":
            return unit_rows(len(texts), 7)
        if self.mode == "nan":
            x[0, 0] = np.nan
        if self.mode == "count":
            return x[:-1] if len(texts) > 1 else np.zeros((0, 8))
        if self.mode == "junk":
            return "not vectors"
        return x


@pytest.mark.parametrize("mode", ["dim", "nan", "count", "junk"])
def test_encoder_returning_bad_output(store, mode):
    enc = BadEncoder(mode)
    col = store.create_collection("e", encoder=BadEncoder("ok"))
    col.add(["a"], documents=["fine"])
    col._encoder = enc
    before = snapshot(col)
    with pytest.raises(ls.EncodingError):
        col.add(["x", "y"], documents=["one", "two"])
    assert snapshot(col) == before
    with pytest.raises(ls.EncodingError):
        col.search("query")


def test_raw_vectors_need_their_space_on_encoder_collections(store):
    col = store.create_collection("e", encoder=BadEncoder("ok"))
    with pytest.raises(ls.SpaceMismatchError, match="space="):
        col.add(["x"], vectors=good())
    col.add(["x"], vectors=good(), space=BadEncoder("ok").spec)
    assert len(col) == 1


def test_opening_with_another_encoder_is_refused(store):
    store.create_collection("e", encoder=BadEncoder("ok"))
    other = BadEncoder("ok")
    other.spec = other.spec.replace(normalize=False)
    with pytest.raises(ls.SpaceMismatchError, match="normalize: True != False"):
        store.get_collection("e", encoder=other)


def test_create_collection_takes_at_most_one_space(store):
    # with neither, the default encoder's space (tests/test_store_conformance.py)
    with pytest.raises(ls.InvalidInputError, match="not both"):
        store.create_collection("x", space=SPEC, encoder=BadEncoder("ok"))
    with pytest.raises(ls.InvalidInputError):
        store.create_collection("x", space=SPEC, metric="hamming")


def test_opening_a_missing_store_without_create_changes_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ls.NotFoundError):
        ls.open_store(empty, create=False)
    assert list(empty.iterdir()) == []
    with pytest.raises(ls.NotFoundError):
        ls.open_store(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()


def test_sqlite_damaged_in_the_middle_gives_corrupt_store_error(tmp_path):
    path = tmp_path / "s"
    st = ls.open_store(path)
    col = st.create_collection("c", space=SPEC)
    col.add([f"r{i}" for i in range(3000)], vectors=unit_rows(3000, 8), documents=[f"doc {i}" for i in range(3000)])
    st.close()
    db = path / "latentspace.db"
    raw = bytearray(db.read_bytes())
    assert len(raw) > 64 * 4096
    raw[8 * 4096 : 60 * 4096] = bytes(52 * 4096)  # wipe pages in the middle, keep the header
    db.write_bytes(bytes(raw))
    with pytest.raises(ls.CorruptStoreError):
        st2 = ls.open_store(path)
        col2 = st2.get_collection("c")
        col2.get(include_vectors=True)
        col2.search(vector=good()[0], k=5, mode="exact")
        col2.search("doc", mode="keyword")  # reading every row must notice the damage
