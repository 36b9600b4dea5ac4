"""Huge-page scenarios run in a fresh process (``python hugepages_worker.py SCENARIO DIR``),
printing what they found as JSON for tests/storage/test_hugepages.py.

Fresh, because finding hnswlib's block needs it to be a mapping of its own: in a long test
process the C allocator can serve even a large block from free memory of its heap, where no
new mapping shows it (a 32 MB block once was), and the store then rightly leaves it alone.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from latentspace.storage import hugepages
from latentspace.storage.index import HnswIndex

DIM = 384
# 160,000 rows of room: a 268 MB block, past hugepages.WATCH_FROM (32 MB); hnswlib does not
# write it until vectors come, so it costs address space, not memory
ROOM = 160_000


def rows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def made_and_saved(folder: str, n: int) -> tuple[HnswIndex, np.ndarray, str]:
    made = HnswIndex(DIM, "cosine", capacity=ROOM)
    x = rows(n, seed=6)
    made.add(np.arange(n), x)
    path = os.path.join(folder, "i.hnsw")
    made.save(path)
    return made, x, path


def new_index() -> dict:
    big = HnswIndex(DIM, "cosine", capacity=ROOM)
    small = HnswIndex(DIM, "cosine", capacity=15_000)  # 25 MB: below WATCH_FROM
    return {"big": big.huge_ranges, "big_advised": hugepages.huge_bytes(big.huge_ranges)[1],
            "small": small.huge_ranges}


def turned_off() -> dict:
    with hugepages.NewMemory() as new:
        plain = HnswIndex(DIM, "cosine", capacity=ROOM, huge_pages=False)
    return {"seen": new.regions, "advised": hugepages.huge_bytes(new.regions)[1], "ranges": plain.huge_ranges}


def loaded(folder: str) -> dict:
    made, x, path = made_and_saved(folder, 500)
    index = HnswIndex.load(path, DIM, "cosine", made.params, 500)
    out = {"ranges": index.huge_ranges, "advised": hugepages.huge_bytes(index.huge_ranges)[1],
           "collapsed_in_time": hugepages.wait_collapsed(120)}
    labels, _ = index.search(x[:5], 1)
    out["nearest"] = labels[:, 0].tolist()
    out["off"] = HnswIndex.load(path, DIM, "cosine", made.params, 500, huge_pages=False).huge_ranges
    return out


def neighbours() -> dict:
    with hugepages.NewMemory() as first_memory:
        first = HnswIndex(DIM, "cosine", capacity=ROOM, huge_pages=False)
    second = HnswIndex(DIM, "cosine", capacity=ROOM)  # mapped next to it, often merged with it
    return {"first_seen": first_memory.regions, "first_advised": hugepages.huge_bytes(first_memory.regions)[1],
            "first_ranges": first.huge_ranges, "second_ranges": second.huge_ranges}


def numpy_block() -> dict:
    with hugepages.NewMemory() as new:
        block = np.empty(ROOM * (4 * DIM + 8 * 16 + 12), dtype=np.uint8)  # unwritten: address space only
    return {"seen": new.regions, "block": [block.ctypes.data, block.ctypes.data + block.nbytes]}


def forked(folder: str) -> dict:
    made, _, path = made_and_saved(folder, 10)
    HnswIndex.load(path, DIM, "cosine", made.params, 10)  # the parent's collapser runs
    pid = os.fork()
    if pid == 0:  # the child: load and collapse again, with a thread of its own
        ok = False
        try:
            child = HnswIndex.load(path, DIM, "cosine", made.params, 10)
            ok = bool(child.huge_ranges) and hugepages.wait_collapsed(60)
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 120
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return {"exit": "hung"}
    return {"exit": os.waitstatus_to_exitcode(done[1])}


def resized() -> dict:
    from latentspace.storage.index import HnswParams

    wide = 4_096
    index = HnswIndex(wide, "cosine", HnswParams(M=4, ef_construction=8), capacity=2_100)  # 34.5 MB
    before = index.huge_ranges
    x = np.random.default_rng(8).normal(size=(2_101, wide)).astype(np.float32)
    index.add(np.arange(2_101), x)  # one past its room: hnswlib reallocates (4,174 rows, 68.6 MB)
    return {"before": before, "after": index.huge_ranges, "block": index._block_bytes(4_174),
            "advised": hugepages.huge_bytes(index.huge_ranges)[1]}


SCENARIOS = {"resized": resized, "new_index": new_index, "turned_off": turned_off, "loaded": loaded, "neighbours": neighbours,
             "numpy_block": numpy_block, "forked": forked}

if __name__ == "__main__":
    name, folder = sys.argv[1], sys.argv[2]
    fn = SCENARIOS[name]
    print(json.dumps(fn(folder) if fn.__code__.co_argcount else fn()))
