"""The query plan of filtered and unfiltered vector search, and the hits it returns.

A filter's matching rows (row ids and vectors, one contiguous matrix) are cached until
the next write. A filtered search over ``m`` of ``n`` rows then runs one of three plans:

- ``exact``: scan the ``m`` matching rows (cost ``a * m``: memory bandwidth);
- ``walk``: walk the HNSW graph restricted to them (cost ``b * n / m``: it visits about
  1/selectivity nodes per match it keeps, each through a membership test);
- ``post``: walk the whole graph for the ``depth`` nearest, enough that ``k`` of them match
  with high probability (:func:`post_depth`), and keep the matching ones (cost ``c *
  beam``, the beam being ``max(ef, depth)``): at a high selectivity this is one plain
  search, no per-node test.

Which is cheapest depends on this machine (memory bandwidth against the graph walk), on the
dimension and on the selectivity, so it is chosen by a cost model learned from this
process's own timings (:class:`PlanCosts`), not by a constant. The first filtered search
large enough to matter runs every plan that applies (twice: the warm run is timed) and
answers from the exact one; every
later one runs the cheapest and refines its estimate, and every ``EXPLORE_EVERY``-th also
times the others that are estimated within ``EXPLORE_WITHIN`` times of it, when what they
read is already cached; every ``FAR_EVERY``-th also those up to ``FAR_WITHIN`` times
dearer (an estimate can be wrong by more than ``EXPLORE_WITHIN``). Costs are per unit (row,
inverse selectivity, beam), so what is learned on one filter holds for the others. Whenever
the exact plan ran beside an HNSW plan (calibrating, exploring), the HNSW plan's answers
are checked against it, and a plan that kept less than ``RECALL_FLOOR`` of the true top k
for a filter is not chosen for that filter again. A walk that returns fewer than
``min(k, m)`` falls back to the exact scan, a post-filter that keeps too few to the walk.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..filter import Node
from ..hits import Hit, make_hits
from ..index import to_scores
from .sqlfilter import compile_sql

#: below this many matches the exact scan always wins (tens of microseconds): no plan to choose
EXACT_BELOW = 1_000
#: one planned filtered search in this many also times the plans not chosen ...
EXPLORE_EVERY = 200
#: ... those estimated to cost at most this many times the chosen one (re-timing a plan
#: estimated 100x dearer would cost that search 100x, to learn nothing that changes a choice)
EXPLORE_WITHIN = 4.0
#: ... and one in this many also those estimated up to FAR_WITHIN times dearer: an estimate
#: can be wrong by more than EXPLORE_WITHIN (one slow first timing kept a walk estimated 14x
#: too dear, so never re-timed, in a session's profile); at most FAR_WITHIN / FAR_EVERY
#: (5%) of the queries' time goes to it
FAR_EVERY = 2_000
FAR_WITHIN = 100.0
#: a plan whose answers, checked against the exact scan's when both ran, kept less than this
#: share of the true top k for a filter is not chosen for that filter again (on clustered
#: data a restricted walk can miss matches that sit far from where the walk goes)
RECALL_FLOOR = 0.9
#: the post-filter plan fetches at most this many unfiltered neighbours
POST_MAX_DEPTH = 1_024
PLANS = ("exact", "walk", "post")


def post_depth(k: int, m: int, n: int) -> int | None:
    """How many unfiltered neighbours to fetch so that ``k`` of them match a filter holding
    ``m`` of ``n`` rows, two standard deviations on the safe side (the matches among ``d``
    neighbours are about Binomial(d, m/n): ``mu - 2 sqrt(mu) >= k`` gives ``mu = (1 + sqrt(1 +
    k))^2``); None when that is more than :data:`POST_MAX_DEPTH` or the whole collection."""
    if m <= 0 or n <= 0:
        return None
    depth = math.ceil((1.0 + math.sqrt(1.0 + k)) ** 2 * n / m)
    return depth if depth <= min(POST_MAX_DEPTH, n - 1) else None


@dataclass
class PlanCosts:
    """Learned per-query costs (seconds per unit) of the plans of one collection's filtered
    search: ``exact`` per matching row, ``walk`` per unit of inverse selectivity ``n / m``,
    ``post`` per unit of beam width."""

    per_unit: dict[str, float] = field(default_factory=dict)
    planned: int = 0
    #: (plan, filter) -> the share of the exact top k its answers kept, when both ran
    recall: dict = field(default_factory=dict)
    SMOOTHING = 0.3

    def cost(self, plan: str, units: float) -> float | None:
        per = self.per_unit.get(plan)
        return None if per is None else per * units

    def usable(self, plan: str, where=None) -> bool:
        r = self.recall.get((plan, where))
        return r is None or r >= RECALL_FLOOR

    def choose(self, units: dict[str, float], where=None) -> str | None:
        """The cheapest of the plans in ``units`` (plan -> its units for this query) whose
        checked recall for this filter is not below :data:`RECALL_FLOOR`; None while any of
        them is unmeasured."""
        costs = {p: self.cost(p, u) for p, u in units.items()}
        if None in costs.values():
            return None
        ok = [p for p in costs if self.usable(p, where)] or ["exact"]
        return min(ok, key=lambda p: (costs[p], PLANS.index(p)))

    def observe_recall(self, plan: str, where, value: float) -> None:
        if len(self.recall) >= 1024:
            self.recall.clear()
        old = self.recall.get((plan, where))
        self.recall[(plan, where)] = value if old is None else (1 - self.SMOOTHING) * old + self.SMOOTHING * value

    def observe(self, plan: str, units: float, seconds_per_query: float) -> None:
        value = seconds_per_query / max(units, 1e-12)
        old = self.per_unit.get(plan)
        self.per_unit[plan] = value if old is None else (1 - self.SMOOTHING) * old + self.SMOOTHING * value


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
        nq, costs = len(qvecs), self._plan_costs
        units, depth = self._plan_units(index, m, k, ef)
        plan = costs.choose(units, where)
        costs.planned += plan is not None
        if plan is None:  # calibrate: every plan that applies, the exact one answering
            runs = list(units)
        elif costs.planned % EXPLORE_EVERY == 0:
            # re-time the others now and then, but only when what they read is already
            # cached: a cold read of m vectors would cost a query far more than the search
            within = FAR_WITHIN if costs.planned % FAR_EVERY == 0 else EXPLORE_WITHIN
            limit = within * costs.cost(plan, units[plan])
            runs = [plan] + [p for p in units if p != plan and self._warm(where, p)
                             and costs.cost(p, units[p]) <= limit]
        else:
            runs = [plan]
        out = None
        results = {}
        for which in runs:
            # what each plan reads once per filter (the rows' vectors, the membership set) is
            # cached: build it before the clock starts, so the estimate is of the search itself
            self.candidates(where, with_vectors=True) if which == "exact" else self.allowed(where)
            best = float("inf")
            for _ in range(2 if plan is None else 1):  # calibrating: the second, warm run counts
                t0 = time.perf_counter()
                if which == "exact":
                    result = self.exact(qvecs, k, where)
                elif which == "walk":
                    result = self._walk(index, qvecs, k, where, ef, m)
                else:
                    result = self._post(index, qvecs, k, where, ef, depth, rids)
                best = min(best, time.perf_counter() - t0)
            costs.observe(which, units[which], best / nq)
            results[which] = result
            if which == (plan or "exact"):
                out = result
        if "exact" in results:  # the HNSW plans' answers checked against the exact scan's
            truth = results["exact"][0]
            for which in results.keys() - {"exact"}:
                got = results[which][0]
                kept = [len(set(t[t >= 0].tolist()) & set(g[g >= 0].tolist())) / max(1, int((t >= 0).sum()))
                        for t, g in zip(truth, got)]
                costs.observe_recall(which, where, float(np.mean(kept)))
        return out

    def _plan_units(self, index, m: int, k: int, ef: int | None) -> tuple[dict[str, float], int | None]:
        """The plans that apply to a filter matching ``m`` rows, each with its cost units; the
        post-filter's depth."""
        n = len(index)
        units = {"exact": m, "walk": n / m}
        depth = post_depth(k, m, n)
        if depth is not None:
            units["post"] = max(ef or index.params.ef_search, depth)
        return units, depth

    def explain(self, where: Node | None, k: int = 10, ef: int | None = None) -> dict:
        """How a filtered search for ``k`` would run now: matches, the plan (None until the
        costs are learned) and each plan's estimated seconds per query."""
        with self.store._lock:
            rids, _ = self.candidates(where, with_vectors=False)
            m = len(rids)
            if m <= max(EXACT_BELOW, k):
                return {"matches": m, "plan": "exact", "estimates": {}}
            units, _ = self._plan_units(self.index(), m, k, ef)
            return {"matches": m, "plan": self._plan_costs.choose(units, where),
                    "estimates": {p: self._plan_costs.cost(p, u) for p, u in units.items()}}

    def _warm(self, where: Node, plan: str) -> bool:
        """Whether what ``plan`` reads for this filter (the rows' vectors, the membership set) is cached."""
        if plan == "exact":
            return (where, 1) in self._filter_cache
        if plan == "walk":
            return ("allowed", where) in self._allowed_cache
        return True  # the post-filter reads the row ids, which the planner has read already

    def _walk(self, index, qvecs: np.ndarray, k: int, where: Node, ef: int | None, m: int):
        labels, dists = index.search(qvecs, k, ef=max(ef or index.params.ef_search, k), allowed=self.allowed(where))
        short = ((labels >= 0).sum(axis=1) < min(k, m)).nonzero()[0]
        if len(short):  # the graph walk found too few matches: fall back to scanning them
            labels[short], dists[short] = self.exact(qvecs[short], k, where)
        return labels, dists

    def _post(self, index, qvecs: np.ndarray, k: int, where: Node, ef: int | None, depth: int, rids: np.ndarray):
        """The ``depth`` nearest of the whole graph, those matching kept (``rids``: the
        matching row ids, sorted); queries left with too few go to the restricted walk."""
        labels, dists = index.search(qvecs, depth, ef=max(ef or index.params.ef_search, depth))
        m = len(rids)
        at = np.searchsorted(rids, labels)
        np.minimum(at, m - 1, out=at)
        ok = (labels >= 0) & (rids[at] == labels)
        rank = np.cumsum(ok, axis=1) - 1
        keep = ok & (rank < k)
        out_l = np.full((len(qvecs), k), -1, dtype=np.int64)
        out_d = np.full((len(qvecs), k), np.inf, dtype=np.float32)
        r, c = np.nonzero(keep)
        out_l[r, rank[r, c]] = labels[r, c]
        out_d[r, rank[r, c]] = dists[r, c]
        short = (keep.sum(axis=1) < min(k, m)).nonzero()[0]
        if len(short):
            out_l[short], out_d[short] = self._walk(index, qvecs[short], k, where, ef, m)
        return out_l, out_d

    def _hits_from_arrays(self, labels: np.ndarray, dists: np.ndarray) -> list[list[Hit]]:
        """Result arrays straight to hits through the row cache (the batch hot path): one
        lookup and one C-level pass make every hit of the batch, then the rows are cut out."""
        valid = labels >= 0
        counts = valid.sum(axis=1).tolist()
        d = dists[valid].astype(np.float64)
        hits = make_hits(*self.hit_columns(labels[valid].tolist()), to_scores(d, self.spec.metric).tolist(), d.tolist(),
                         keep_gone=True)
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
