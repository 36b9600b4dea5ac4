"""Derived index files: replay, rebuild on damage, locking, several processes."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import time

import numpy as np
import pytest

import latentspace as ls

from .conftest import unit_rows

SPEC = ls.SpaceSpec(model="m", dim=16, modality="vector")


def build(path, n=500):
    st = ls.open_store(path)
    col = st.create_collection("c", space=SPEC)
    x = unit_rows(n, 16)
    col.add([f"r{i}" for i in range(n)], vectors=x, documents=[f"doc {i}" for i in range(n)])
    col.flush()
    st.close()
    return x


def index_file(path):
    side = json.loads((path / "idx-1.json").read_text())
    return path / side["file"]


def check_search(path, x, expect_rebuild):
    st = ls.open_store(path)
    col = st.get_collection("c")
    for i in (0, 17, 499):
        assert col.search(vector=x[i], k=1)[0].id == f"r{i}"
    ann = [h.id for h in col.search(vector=x[3], k=20)]
    ex = [h.id for h in col.search(vector=x[3], k=20, mode="exact")]
    assert len(set(ann) & set(ex)) >= 19
    assert any("rebuilt" in m for m in st.messages) == expect_rebuild
    st.close()


def test_clean_reopen_loads_the_saved_index(tmp_path):
    x = build(tmp_path / "s")
    check_search(tmp_path / "s", x, expect_rebuild=False)


@pytest.mark.parametrize("damage", ["truncate", "zero", "garbage", "delete", "sidecar-garbage", "sidecar-delete",
                                    "flip-byte"])
def test_damaged_index_is_rebuilt(tmp_path, damage):
    path = tmp_path / "s"
    x = build(path)
    f = index_file(path)
    if damage == "truncate":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif damage == "zero":
        f.write_bytes(b"")
    elif damage == "garbage":
        f.write_bytes(np.random.default_rng(0).bytes(f.stat().st_size))
    elif damage == "delete":
        f.unlink()
    elif damage == "sidecar-garbage":
        (path / "idx-1.json").write_text("{not json")
    elif damage == "sidecar-delete":
        (path / "idx-1.json").unlink()
    elif damage == "flip-byte":
        b = bytearray(f.read_bytes())
        b[len(b) // 2] ^= 0xFF
        f.write_bytes(bytes(b))
    check_search(path, x, expect_rebuild=True)
    # and the rebuilt index was saved: the next open loads it
    check_search(path, x, expect_rebuild=False)


def test_changes_after_the_saved_index_are_replayed(tmp_path):
    path = tmp_path / "s"
    x = build(path)
    st = ls.open_store(path)
    col = st.get_collection("c")
    new = unit_rows(5, 16, seed=99)
    col.add([f"n{i}" for i in range(5)], vectors=new)  # the index is not loaded: only the log knows
    col.delete(ids=["r0"])
    st._backend._conn.close()  # simulate a crash: no save on close
    st._backend._conn = None
    st2 = ls.open_store(path)
    col2 = st2.get_collection("c")
    assert col2.search(vector=new[2], k=1)[0].id == "n2"
    assert "r0" not in {h.id for h in col2.search(vector=x[0], k=5)}
    assert not any("rebuilt" in m for m in st2.messages)
    st2.close()


def test_second_writer_gets_store_locked_error(tmp_path):
    path = tmp_path / "s"
    build(path, 10)
    blocker = sqlite3.connect(path / "latentspace.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        st = ls.open_store(path, lock_timeout=0.3)
        col = st.get_collection("c")
        t = time.perf_counter()
        with pytest.raises(ls.StoreLockedError, match="locked by another writer"):
            col.add(["z"], vectors=unit_rows(1, 16, seed=3))
        assert time.perf_counter() - t >= 0.25
        assert len(col) == 10  # reads still work while another process writes
        assert col.search(vector=unit_rows(1, 16)[0], k=3)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    col.add(["z"], vectors=unit_rows(1, 16, seed=3))
    assert len(col) == 11
    st.close()


def _writer(path, ready, go, done):
    st = ls.open_store(path)
    col = st.get_collection("c")
    ready.set()
    go.wait(30)
    col.add(["w1", "w2"], vectors=unit_rows(2, 16, seed=123), documents=["written elsewhere", "also"])
    done.set()
    st.close()


def test_reader_sees_other_process_commits_on_next_query(tmp_path):
    path = tmp_path / "s"
    build(path, 50)
    reader = ls.open_store(path)
    col = reader.get_collection("c")
    w = unit_rows(2, 16, seed=123)
    assert col.search(vector=w[0], k=1)[0].id != "w1"  # index loaded in this process
    assert col.search(vector=w[0], k=1, mode="exact")[0].id != "w1"  # and the exact matrix
    ctx = mp.get_context("spawn")
    ready, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_writer, args=(str(path), ready, go, done))
    proc.start()
    assert ready.wait(60)
    go.set()
    assert done.wait(60)
    proc.join(30)
    assert proc.exitcode == 0
    assert col.search(vector=w[0], k=1)[0].id == "w1"
    assert len(col) == 52
    assert col.search("written elsewhere", k=1, mode="keyword")[0].id == "w1"
    assert col.search(vector=w[1], k=1, mode="exact")[0].id == "w2"
    reader.close()


@pytest.mark.parametrize("watch", [True, False])
def test_every_commit_of_another_connection_is_seen_by_the_next_query(tmp_path, watch):
    """The WAL-index header watch only skips PRAGMA data_version when nothing committed."""
    path = tmp_path / "s"
    build(path, 20)
    reader, writer = ls.open_store(path), ls.open_store(path)
    if not watch:
        reader._backend._watch.close()  # no mapping: the PRAGMA on every query
    rcol, wcol = reader.get_collection("c"), writer.get_collection("c")
    vecs = unit_rows(60, 16, seed=99)
    for i in range(60):
        wcol.add([f"n{i}"], vectors=vecs[i : i + 1], documents=[f"new {i}"])
        assert rcol.search(vector=vecs[i], k=1)[0].id == f"n{i}"
        if i % 20 == 19:  # a writer that closes and comes back (a new connection, same -shm)
            writer.close()
            writer = ls.open_store(path)
            wcol = writer.get_collection("c")
    wcol.delete(ids=["n0"])
    assert rcol.search(vector=vecs[0], k=1)[0].id != "n0" and len(rcol) == 79
    reader.close()
    writer.close()


def test_a_transient_locking_protocol_error_is_retried_then_typed(tmp_path):
    """SQLITE_PROTOCOL (a read racing another process's WAL recovery) is transient: reads
    retry it, and if it persists it is a StoreLockedError, never 'corrupt store'."""
    import sqlite3

    from latentspace.storage.embedded.sqlite import read_all, translate

    class Flaky:
        def __init__(self, failures):
            self.failures, self.calls = failures, 0

        def execute(self, sql, params):
            self.calls += 1
            if self.calls <= self.failures:
                raise sqlite3.OperationalError("locking protocol")
            return sqlite3.connect(":memory:").execute(sql, params)

    conn = Flaky(2)
    assert read_all(conn, "SELECT ?", (7,), tmp_path, 1.0) == [(7,)] and conn.calls == 3
    with pytest.raises(ls.StoreLockedError, match="retry"):
        read_all(Flaky(100), "SELECT 1", (), tmp_path, 1.0)
    assert isinstance(translate(sqlite3.OperationalError("locking protocol"), tmp_path, 1.0), ls.StoreLockedError)
    assert isinstance(translate(sqlite3.DatabaseError("file is not a database"), tmp_path, 1.0), ls.CorruptStoreError)


CHECKPOINT_WRITER = """
import os, signal, sys, time, json
import numpy as np
import latentspace as ls
from latentspace.storage.embedded import annfiles
annfiles.CHECKPOINT_MIN, annfiles.CHECKPOINT_FRACTION = 300, 0.25
st = ls.open_store(sys.argv[1])
col = st.create_collection("c", space=ls.SpaceSpec(model="m", dim=16, modality="vector"))
rng = np.random.default_rng(0)
for b in range(30):  # 3,000 records in batches of 100: never searched, never flushed
    x = rng.normal(size=(100, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    col.add([f"r{b}-{i}" for i in range(100)], vectors=x)
    time.sleep(0.02)
storage = col._storage
storage.wait_checkpoint()
print(json.dumps({"disk_seq": storage._durable_seq(), "last_seq": storage.last_seq()}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_writer_leaves_a_recent_index_and_recovery_replays_only_the_tail(tmp_path):
    """Writes accumulate, a background save keeps the index file close behind; after a
    SIGKILL (no close, no flush) the next open loads that file and replays the tail."""
    import subprocess
    import sys

    store = tmp_path / "s"
    proc = subprocess.run([sys.executable, "-c", CHECKPOINT_WRITER, str(store)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state["last_seq"] == 3000 and 0 < state["disk_seq"] <= 3000
    assert state["last_seq"] - state["disk_seq"] <= 0.25 * 3000 + 300  # the tail is short
    st = ls.open_store(store)
    col = st.get_collection("c")
    recs = col.get(include_vectors=True)
    for r in recs[::97]:
        assert col.search(vector=r.vector, k=1)[0].id == r.id
    assert not any("rebuilt" in m for m in st.messages), st.messages  # loaded the file, replayed the tail
    assert col._storage._index_seq == 3000
    st.close()


_HOLDER = r"""
import sys, time
import numpy as np
import latentspace as ls
store = ls.open_store(sys.argv[1])
col = store.create_collection("v", space=ls.SpaceSpec(model="m", dim=8, modality="vector"))
rng = np.random.default_rng(0)
t0, batches = time.time(), 0
while time.time() - t0 < float(sys.argv[2]):
    x = rng.normal(size=(32, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    col.add([f"{batches}-{j}" for j in range(32)], vectors=x)
    batches += 1
    for v in x[:10]:
        assert col.search(vector=v, k=1)[0].distance < 1e-4
assert len(col) == 32 * batches
store.close()
print("ok", batches)
"""


def test_another_process_opening_and_closing_connections_leaves_an_open_store_working(tmp_path):
    """A store writing and searching while another process opens, reads and closes SQLite
    connections to it, again and again (what `latentspace` CLI commands beside a server
    do). The store once closed a descriptor of the ``-shm`` file right after opening it,
    which drops every POSIX lock the process held on the file, SQLite's included: the other
    process's connection took itself for the first, truncated the file and rebuilt the WAL
    index under the store, whose mapping of it died of SIGBUS within seconds."""
    import subprocess
    import sys

    store = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(store), "5"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline, opened = time.time() + 120, 0
    while proc.poll() is None and time.time() < deadline:
        if (store / "latentspace.db").exists():
            con = sqlite3.connect(store / "latentspace.db", timeout=5)
            try:
                con.execute("SELECT COALESCE(MAX(count), 0) FROM collections").fetchone()
                opened += 1
            except sqlite3.OperationalError:  # created meanwhile
                pass
            finally:
                con.close()
        time.sleep(0.01)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (proc.returncode, err[-2000:])
    assert out.startswith("ok") and opened > 20
