"""Huge pages under the HNSW index (storage/hugepages.py): advised where Linux allows it,
never where the user turned them off, and never changing what a search returns. What needs
hnswlib's block to be a mapping of its own runs in a fresh process (hugepages_worker.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
ROOM = 160_000  # rows of room: a 268 MB block of address space (hnswlib writes it as vectors come)
WORKER = Path(__file__).with_name("hugepages_worker.py")
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


def _fresh(scenario: str, tmp_path) -> dict:
    """A scenario of hugepages_worker.py in a fresh process (see its docstring: why)."""
    proc = subprocess.run([sys.executable, str(WORKER), scenario, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_thp
def test_a_new_index_is_advised_and_a_small_one_is_left_alone(tmp_path):
    got = _fresh("new_index", tmp_path)
    assert got["big"], "a 160,000-row index (268 MB) gets its memory advised"
    assert all(lo % hugepages.HUGE_PAGE == 0 and hi % hugepages.HUGE_PAGE == 0 for lo, hi in got["big"])
    assert got["big_advised"], "the kernel lists the advice (VmFlags hg)"
    assert got["small"] == []  # 25 MB: below WATCH_FROM


@needs_thp
def test_turned_off_the_index_memory_is_not_advised(tmp_path):
    got = _fresh("turned_off", tmp_path)
    assert got["ranges"] == []
    assert got["seen"], "hnswlib's block was allocated and seen"
    assert not got["advised"]


@needs_thp
def test_a_loaded_index_is_advised_and_collapsed_in_the_background(tmp_path):
    got = _fresh("loaded", tmp_path)
    assert got["ranges"] and got["advised"]
    assert got["collapsed_in_time"]  # the background collapse finishes (its result is the kernel's)
    assert got["nearest"] == [0, 1, 2, 3, 4]  # and the index answers after it
    assert got["off"] == []


@needs_thp
def test_a_resized_index_holds_the_ranges_of_its_new_block_only(tmp_path):
    got = _fresh("resized", tmp_path)
    assert got["before"] and got["after"] and got["advised"]
    # the old block is freed by the resize: its ranges are not kept beside the new one's
    assert sum(hi - lo for lo, hi in got["after"]) <= got["block"]


@needs_thp
def test_an_index_made_just_before_keeps_its_own_pages(tmp_path):
    got = _fresh("neighbours", tmp_path)
    assert got["second_ranges"] and got["first_seen"] and got["first_ranges"] == []
    assert not got["first_advised"]
    assert not any(lo < b and a < hi for lo, hi in got["second_ranges"] for a, b in got["first_seen"])


@needs_thp
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_collapses_with_its_own_thread(tmp_path):
    assert _fresh("forked", tmp_path) == {"exit": 0}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps is Linux's")
def test_new_memory_sees_an_allocation(tmp_path):
    got = _fresh("numpy_block", tmp_path)
    if hugepages.available():
        lo, hi = got["block"]
        assert any(a < hi and lo < b for a, b in got["seen"])  # (numpy advises most of it itself: two mappings)
    else:
        assert got["seen"] == []


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


def test_only_new_addresses_count_as_new():
    old = {(0x1000_0000, 0x1400_0000)}
    merged = {(0x0c00_0000, 0x1400_0000)}  # a new mapping just below, merged by the kernel with the old
    assert hugepages._minus(merged, old) == [(0x0c00_0000, 0x1000_0000)]
    assert hugepages._minus({(0, 100)}, {(10, 20), (30, 40)}) == [(0, 10), (20, 30), (40, 100)]
    assert hugepages._minus({(0, 100)}, {(0, 100)}) == []
