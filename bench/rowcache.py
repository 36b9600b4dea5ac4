"""How a query's hits are looked up in the row cache right after other memory traffic.

    python bench/rowcache.py [--evict-mb 4] [--rows 100000] [--queries 300]

Right after an HNSW walk (a few MB of vectors and links read) the row cache's entries are
out of the CPU's nearer caches, so a query's 10 hits cost cache misses, not instructions.
This times the hits of one query (10 random rows of a full cache, the entries inserted in
random order as a real cache fills) after touching ``--evict-mb`` of other memory, for:
the cache as a dict keyed by row id, as a list indexed by row id (one slot per row id; what
`storage/embedded/rowcache.py` uses), and each with the hits made column-wise (``zip`` of
the entries, then one ``map``) instead of one tuple per hit in a list comprehension.
Medians over the queries, the best of 3 rounds, in microseconds per query.
"""

from __future__ import annotations

import argparse
import time
from itertools import repeat
from operator import itemgetter

import numpy as np

from latentspace.core.frozen import FrozenDict
from latentspace.storage.hits import Hit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--evict-mb", type=int, default=4)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n, base = args.rows, 1000
    cache: dict[int, tuple] = {}
    for r in rng.permutation(n).tolist():
        cache[r + base] = (str(r), None, FrozenDict({"b": r % 1000}))
    slots: list = [None] * (n + base)
    for r, e in cache.items():
        slots[r] = e
    other = np.ones(args.evict_mb << 20, np.uint8)
    queries = [[int(x) + base for x in rng.integers(0, n, 10)] for _ in range(args.queries)]
    dists = [float(x) for x in rng.random(10)]
    new, offset = tuple.__new__, 1.0

    def per_hit(table):
        def run(rids):
            found = itemgetter(*rids)(table)
            return [new(Hit, (e[0], offset - d, e[1], e[2], d, None, None)) for e, d in zip(found, dists)]
        return run

    def columns(table):
        def run(rids):
            ids, docs, metas = zip(*itemgetter(*rids)(table))
            k = len(rids)
            return list(map(new, repeat(Hit, k), zip(ids, map(offset.__sub__, dists), docs, metas, dists,
                                                      repeat(None, k), repeat(None, k))))
        return run

    fns = {"dict, a tuple per hit": per_hit(cache), "list, a tuple per hit": per_hit(slots),
           "dict, columns": columns(cache), "list, columns": columns(slots)}
    for fn in fns.values():
        assert fn(queries[0]) == fns["dict, a tuple per hit"](queries[0])
    best = {name: float("inf") for name in fns}
    for _ in range(3):
        for name, fn in fns.items():
            times = []
            for rids in queries:
                other[::64].sum()  # one byte a cache line: the lines leave the nearer caches
                t0 = time.perf_counter()
                fn(rids)
                times.append(time.perf_counter() - t0)
            best[name] = min(best[name], float(np.median(times)))
    for name, seconds in best.items():
        print(f"{name:24s} {seconds * 1e6:7.2f} us a query (10 hits)")


if __name__ == "__main__":
    main()
