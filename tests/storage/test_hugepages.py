"""Huge pages under the HNSW index (storage/hugepages.py): advised where Linux allows it,
never where the user turned them off, and never changing what a search returns."""

from __future__ import annotations

import os
import shutil
import sys
import time

import numpy as np
import pytest

import latentspace as ls
from latentspace.core.errors import InvalidInputError
from latentspace.storage import hugepages
from latentspace.storage.index import HnswIndex
from tests.conftest import unit_rows

needs_thp = pytest.mark.skipif(
    not hugepages.available(),
    reason="transparent huge pages are not available here (not Linux, set to never, or no libc madvise)",
)
DIM = 384
# 160,000 rows of room: a 268 MB block, past hugepages.WATCH_FROM (32 MB), and larger than any
# free memory the C allocator of this test process could serve it from (then no new mapping
# shows it, and it is rightly left alone); hnswlib does not write it until vectors come, so
# it costs address space, not memory
ROOM = 160_000
WIDE, N = 4_096, 2_500  # a store's index past WATCH_FROM with few rows (a quick build)


def _fill(path, huge_pages: bool):
    store = ls.open_store(path, huge_pages=huge_pages)
    col = store.create_collection("v", space=ls.SpaceSpec(model="test/huge", dim=WIDE),
                                  hnsw={"M": 8, "ef_construction": 32})
    x = unit_rows(N, WIDE, seed=3)
    for s in range(0, N, 1_250):  # the index grows (hnswlib reallocates: 1,024 -> 2,560 rows, 42 MB)
        col.add([str(i) for i in range(s, s + 1_250)], vectors=x[s : s + 1_250])
    col.flush()
    return store, col, x


@needs_thp
def test_a_new_index_is_advised_and_a_small_one_is_left_alone():
    big = HnswIndex(DIM, "cosine", capacity=ROOM)
    assert big.huge_ranges, "a 160,000-row index (268 MB) gets its memory advised"
    assert all(lo % hugepages.HUGE_PAGE == 0 and hi % hugepages.HUGE_PAGE == 0 for lo, hi in big.huge_ranges)
    assert hugepages.huge_bytes(big.huge_ranges)[1], "the kernel lists the advice (VmFlags hg)"
    assert HnswIndex(DIM, "cosine", capacity=15_000).huge_ranges == []  # 25 MB: below WATCH_FROM


@needs_thp
def test_turned_off_the_index_memory_is_not_advised():
    with hugepages.NewMemory() as new:
        plain = HnswIndex(DIM, "cosine", capacity=ROOM, huge_pages=False)
    assert plain.huge_ranges == []
    assert new.regions, "hnswlib's block was allocated and seen"
    assert not hugepages.huge_bytes(new.regions)[1]


@needs_thp
def test_a_loaded_index_is_advised_and_collapsed_in_the_background(tmp_path):
    made = HnswIndex(DIM, "cosine", capacity=ROOM)
    x = unit_rows(500, DIM, seed=6)
    made.add(np.arange(500), x)
    made.save(str(tmp_path / "i.hnsw"))
    loaded = HnswIndex.load(str(tmp_path / "i.hnsw"), DIM, "cosine", made.params, 500)
    assert loaded.huge_ranges and hugepages.huge_bytes(loaded.huge_ranges)[1]
    assert hugepages.wait_collapsed(120)  # the background collapse finishes (its result is the kernel's)
    labels, _ = loaded.search(x[:5], 1)
    assert labels[:, 0].tolist() == [0, 1, 2, 3, 4]  # and the index answers after it
    off = HnswIndex.load(str(tmp_path / "i.hnsw"), DIM, "cosine", made.params, 500, huge_pages=False)
    assert off.huge_ranges == []


def test_the_store_option_reaches_its_indexes_and_answers_alike(tmp_path, monkeypatch):
    watched = []  # (asked, large enough) for every index block of at least WATCH_FROM bytes

    class Spy(hugepages.NewMemory):
        def __init__(self, enabled=True):
            watched.append(enabled)
            super().__init__(enabled)

    monkeypatch.setattr(hugepages, "NewMemory", Spy)
    store, col, x = _fill(tmp_path / "a", huge_pages=True)
    assert True in watched, "the 42 MB index block (a resize on the way) was watched"
    store.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    watched.clear()
    on = ls.open_store(tmp_path / "a")  # the default: on
    a = on.get_collection("v")
    a.search(vector=x[0], k=1)  # loads the index
    assert watched == [True]
    watched.clear()
    off = ls.open_store(tmp_path / "b", huge_pages=False)
    b = off.get_collection("v")
    b.search(vector=x[0], k=1)
    assert watched == [False] and b._storage._index.huge_ranges == []
    q = unit_rows(20, WIDE, seed=4)
    for v in q:
        assert a.search(vector=v, k=10) == b.search(vector=v, k=10)
    assert a.search_batch(vectors=q, k=10) == b.search_batch(vectors=q, k=10)
    assert a.search(vector=x[7], k=1)[0].id == "7"
    on.close()
    off.close()


def test_huge_pages_option_is_checked(tmp_path):
    for bad in ("yes", 1, None):
        with pytest.raises(InvalidInputError, match="huge_pages"):
            ls.open_store(tmp_path / "s", huge_pages=bad)


def test_where_unavailable_nothing_is_asked(tmp_path, monkeypatch):
    never = tmp_path / "enabled"
    never.write_text("always madvise [never]\n")
    monkeypatch.setattr(hugepages, "THP_SETTING", never)
    monkeypatch.setattr(hugepages, "_madvise", None)  # read the setting again
    assert not hugepages.available()
    assert hugepages.advise([(0, 64 << 20)]) == []
    index = HnswIndex(DIM, "cosine", capacity=ROOM)
    assert index.huge_ranges == []
    x = unit_rows(50, DIM, seed=5)
    index.add(np.arange(50), x)
    labels, _ = index.search(x[:3], 1)
    assert labels[:, 0].tolist() == [0, 1, 2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps is Linux's")
def test_new_memory_sees_an_allocation():
    with hugepages.NewMemory() as new:
        block = np.ones(hugepages.WATCH_FROM + 1, dtype=np.uint8)  # the C allocator maps it on its own
    if hugepages.available():
        lo, hi = block.ctypes.data, block.ctypes.data + block.nbytes
        assert any(a < hi and lo < b for a, b in new.regions)  # (numpy advises most of it itself: two mappings)
    else:
        assert new.regions == []


def test_only_new_addresses_count_as_new():
    old = {(0x1000_0000, 0x1400_0000)}
    merged = {(0x0c00_0000, 0x1400_0000)}  # a new mapping just below, merged by the kernel with the old
    assert hugepages._minus(merged, old) == [(0x0c00_0000, 0x1000_0000)]
    assert hugepages._minus({(0, 100)}, {(10, 20), (30, 40)}) == [(0, 10), (20, 30), (40, 100)]
    assert hugepages._minus({(0, 100)}, {(0, 100)}) == []


@needs_thp
def test_an_index_made_just_before_keeps_its_own_pages():
    with hugepages.NewMemory() as first_memory:
        first = HnswIndex(DIM, "cosine", capacity=ROOM, huge_pages=False)
    second = HnswIndex(DIM, "cosine", capacity=ROOM)  # mapped next to it, often merged with it
    assert second.huge_ranges
    assert not hugepages.huge_bytes(first_memory.regions)[1]
    assert not any(lo < b and a < hi for lo, hi in second.huge_ranges for a, b in first_memory.regions)
    assert first.huge_ranges == []


@needs_thp
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_collapses_with_its_own_thread(tmp_path):
    made = HnswIndex(DIM, "cosine", capacity=ROOM)
    made.add(np.arange(10), unit_rows(10, DIM, seed=7))
    made.save(str(tmp_path / "i.hnsw"))
    HnswIndex.load(str(tmp_path / "i.hnsw"), DIM, "cosine", made.params, 10)  # the parent's collapser runs
    pid = os.fork()
    if pid == 0:  # the child: load and collapse again, with a thread of its own
        ok = False
        try:
            child = HnswIndex.load(str(tmp_path / "i.hnsw"), DIM, "cosine", made.params, 10)
            ok = bool(child.huge_ranges) and hugepages.wait_collapsed(60)
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 120
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child did not finish in 120 s")
    assert os.waitstatus_to_exitcode(done[1]) == 0
