"""The query plan of filtered and unfiltered vector search, and the hits it returns.

A filter's matching rows (row ids and vectors, one contiguous matrix) are cached until
the next write. A filtered search then either scans those ``m`` rows exactly, or walks
the HNSW graph restricted to them; which is cheaper depends on this machine (memory
bandwidth against the graph walk and its per-node filter test), on the dimension and on
the selectivity ``m / n``, so it is chosen by a cost model learned from this process's
own timings (:class:`PlanCosts`), not by a constant: the scan costs ``a * m`` per query,
the walk ``b * n / m`` (it visits about 1/selectivity nodes per match it keeps). The first
filtered search large enough to matter runs both plans and answers from the exact one;
every later one runs the cheaper plan and refines its estimate, and every
``EXPLORE_EVERY``-th also times the other when what that plan reads is already cached. The
two costs are per row and per unit of inverse selectivity, so what is learned on one
filter holds for the others. A walk that returns fewer than
``min(k, matches)`` falls back to the exact scan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..filter import Node
from ..hits import Hit, make_hits
from .sqlfilter import compile_sql

#: below this many matches the exact scan always wins (tens of microseconds): no plan to choose
EXACT_BELOW = 1_000
#: one planned filtered search in this many also times the plan not chosen
EXPLORE_EVERY = 200


@dataclass
class PlanCosts:
    """Learned per-query costs (seconds) of the two plans of one collection's filtered search."""

    scan_per_row: float | None = None  # the exact scan, per matching row
    walk_at_full: float | None = None  # the restricted walk at selectivity 1 (its cost: this * n / m)
    planned: int = 0
    SMOOTHING = 0.3

    def exact_cost(self, m: int) -> float:
        return self.scan_per_row * m

    def walk_cost(self, m: int, n: int) -> float:
        return self.walk_at_full * n / max(m, 1)

    def choose(self, m: int, n: int) -> str | None:
        """"exact" or "walk"; None while either is unmeasured."""
        if self.scan_per_row is None or self.walk_at_full is None:
            return None
        return "exact" if self.exact_cost(m) <= self.walk_cost(m, n) else "walk"

    def observe(self, plan: str, m: int, n: int, seconds_per_query: float) -> None:
        value = seconds_per_query / max(m, 1) if plan == "exact" else seconds_per_query * max(m, 1) / max(n, 1)
        old = self.scan_per_row if plan == "exact" else self.walk_at_full
        new = value if old is None else (1 - self.SMOOTHING) * old + self.SMOOTHING * value
        if plan == "exact":
            self.scan_per_row = new
        else:
            self.walk_at_full = new


class Planner:
    """Filtered candidates, the exact-versus-HNSW plan, and hits from result arrays. (A part of :class:`.collection.CollectionStorage`.)"""

    def candidates(self, where: Node | None, with_vectors: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """rids (and vectors) of the records matching a filter; cached per filter until the next write."""
        self.sync()
        key = (where, int(with_vectors))
        hit = self._filter_cache.get(key)
        if hit is not None:
            self._filter_cache.move_to_end(key)
            return hit
        sql, params = compile_sql(where)
        cols = "rid, vector" if with_vectors else "rid"
        rows = self._q(f"SELECT {cols} FROM records WHERE collection_id = ? AND {sql} ORDER BY rid", [self.cid, *params])
        rids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vecs = None
        if with_vectors:
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.spec.dim) if rows else np.zeros((0, self.spec.dim), np.float32)
        value = (rids, vecs)
        self._filter_cache[key] = value
        self._filter_cache_bytes += rids.nbytes + (vecs.nbytes if vecs is not None else 0)
        while len(self._filter_cache) > 1 and (len(self._filter_cache) > 64 or self._filter_cache_bytes > 256 << 20):
            _, (r, v) = self._filter_cache.popitem(last=False)
            self._filter_cache_bytes -= r.nbytes + (v.nbytes if v is not None else 0)
        return value

    def allowed(self, where: Node | None):
        """A membership test for the rids matching a filter (cached with the match set)."""
        rids, _ = self.candidates(where, with_vectors=False)
        key = ("allowed", where)
        hit = self._allowed_cache.get(key)
        if hit is None or hit[0] is not rids:
            hit = (rids, set(rids.tolist()).__contains__)
            self._allowed_cache = {key: hit} if len(self._allowed_cache) >= 16 else {**self._allowed_cache, key: hit}
        return hit[1]

    def _vector_arrays(self, qvecs: np.ndarray, k: int, where: Node | None, *, exact: bool,
                       ef: int | None) -> tuple[np.ndarray, np.ndarray]:
        if where is None:
            if exact:
                return self.exact(qvecs, k)
            index = self.index()
            labels, dists = index.search(qvecs, k, ef=ef)
            want = min(k, len(index))
            short = ((labels >= 0).sum(axis=1) < want).nonzero()[0]
            if len(short):  # the graph walk found fewer than k: answer those queries exactly
                labels[short], dists[short] = self.exact(qvecs[short], k)
            return labels, dists
        rids, _ = self.candidates(where, with_vectors=False)
        m = len(rids)
        if exact or m <= max(EXACT_BELOW, k):
            return self.exact(qvecs, k, where)
        index = self.index()
        n, nq, costs = len(index), len(qvecs), self._plan_costs
        plan = costs.choose(m, n)
        costs.planned += plan is not None
        # re-time the plan not chosen now and then, but only when what it reads is already
        # cached: a cold read of m vectors would cost a query far more than the search
        explore = plan is None or (costs.planned % EXPLORE_EVERY == 0 and self._warm(where, "walk" if plan == "exact"
                                                                                      else "exact"))
        out = None
        for which in (("exact", "walk") if explore else (plan,)):
            # what each plan reads once per filter (the rows' vectors, the membership set) is
            # cached: build it before the clock starts, so the estimate is of the search itself
            self.candidates(where, with_vectors=True) if which == "exact" else self.allowed(where)
            t0 = time.perf_counter()
            result = self.exact(qvecs, k, where) if which == "exact" else self._walk(index, qvecs, k, where, ef, m)
            costs.observe(which, m, n, (time.perf_counter() - t0) / nq)
            if which == (plan or "exact"):
                out = result
        return out

    def _warm(self, where: Node, plan: str) -> bool:
        """Whether what ``plan`` reads for this filter (the rows' vectors, the membership set) is cached."""
        if plan == "exact":
            return (where, 1) in self._filter_cache
        return ("allowed", where) in self._allowed_cache

    def _walk(self, index, qvecs: np.ndarray, k: int, where: Node, ef: int | None, m: int):
        labels, dists = index.search(qvecs, k, ef=max(ef or index.params.ef_search, k), allowed=self.allowed(where))
        short = ((labels >= 0).sum(axis=1) < min(k, m)).nonzero()[0]
        if len(short):  # the graph walk found too few matches: fall back to scanning them
            labels[short], dists[short] = self.exact(qvecs[short], k, where)
        return labels, dists

    def _hits_from_arrays(self, labels: np.ndarray, dists: np.ndarray) -> list[list[Hit]]:
        """Result arrays straight to hits through the row cache (the batch hot path): one
        lookup and one C-level pass make every hit of the batch, then the rows are cut out."""
        valid = labels >= 0
        counts = valid.sum(axis=1).tolist()
        d = dists[valid].astype(np.float64)
        base = 0.0 if self.spec.metric == "l2" else 1.0  # the score: see index.to_scores
        hits = make_hits(*self.hit_columns(labels[valid].tolist()), (base - d).tolist(), d.tolist(), keep_gone=True)
        out = []
        pos = 0
        for c in counts:
            row = hits[pos:pos + c]
            pos += c
            out.append(row if all(row) else [h for h in row if h is not None])
        return out

    def _hits(self, results, include_vectors: bool) -> list[list[Hit]]:
        """Hits from ``(rid, score, distance, ranks)`` lists (rows deleted meanwhile left out)."""
        rids = sorted({rid for res in results for rid, *_ in res})
        rows = self.fetch(rids, with_vectors=include_vectors)
        out = []
        for res in results:
            hits = []
            for rid, score, dist, ranks in res:
                row = rows.get(rid)
                if row is None:  # deleted between the index lookup and the fetch
                    continue
                hits.append(Hit(row.id, float(score), row.document, row.metadata,
                                None if dist is None else float(dist), ranks, row.vector))
            out.append(hits)
        return out
