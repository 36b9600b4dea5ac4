"""The query plan of filtered and unfiltered vector search, and the hits it returns.

A filter's matching rows (row ids, and their vectors as one contiguous matrix when a scan
needs them) are cached until the next write, with what the planner measured on that
filter (:class:`FilterState`). A filtered search over ``m`` of ``n`` rows then runs one of
three plans:

- ``exact``: scan the ``m`` matching rows (cost ``a * m``: memory bandwidth);
- ``walk``: walk the HNSW graph restricted to them (cost ``b * n / m``: it visits about
  1/selectivity nodes per match it keeps, each through a membership test);
- ``post``: walk the whole graph for the ``depth`` nearest, enough that ``k`` of them match
  with high probability (:func:`post_depth`), and keep the matching ones (cost ``c *
  beam``, the beam being ``max(ef, depth)``): at a high selectivity this is one plain
  search, no per-node test.

Which is cheapest depends on this machine (memory bandwidth against the graph walk), on the
dimension, the selectivity and where the matches lie, so it is chosen by measurement, not
by a constant, at two levels:

- a filter's own steady costs: once a filter repeats (its second search), the chosen plan,
  and then each plan estimated within ``TRIAL_WITHIN`` times of it, runs ``TRIAL_SEARCHES``
  searches of the filter in a row (a trial), each timed, judged by their median; from then
  on the filter runs the plan fastest *on it* (per ``k`` and ``ef``), its timing kept
  current by every ``TIME_EVERY``-th search (one stalled search moves it at most
  ``0.7 + 0.3 * OUTLIER_CLIP`` times). What a plan reads once per filter (the rows'
  vectors, the membership test) is read before its clock starts. A plan
  is timed in a row because a single timing beside another plan (a probe) is biased both
  ways: a scan right after a walk finds its data out of the caches and the BLAS threads
  asleep (6x, 3x, 2.3x, 1.5x its steady cost on four runs in a row), while the same query
  walked twice finds its path cached. Probes only nominate: one search in
  ``EXPLORE_EVERY`` of a filter probes the plans estimated within ``EXPLORE_WITHIN``, one
  planned search in ``FAR_EVERY`` those within ``FAR_WITHIN``; both let the losers of
  earlier trials be tried again (a trial can fall in a slow spell of a shared machine);
- a cost model per unit (row, inverse selectivity, beam; :class:`PlanCosts`) learned from
  every timing of the process, for a filter not measured yet. The first filtered search
  large enough to matter runs every plan that applies (probes) and answers from the exact
  one.

A filter seen before runs through lean single-query code (:meth:`Planner.filtered_one`:
no batch bookkeeping); the scan selects its top k through a sampled threshold
(:func:`..index.largest_k`), the graph plans test membership with a byte per row id, and a
repeated filter of few rows makes its hits from its rows' row-cache entries, kept in a
list aligned with its rows (``FilterState.entries``).

Whenever the exact plan ran beside an HNSW plan (calibrating, exploring), the HNSW plan's
answers are checked against it, and a plan that kept less than ``RECALL_FLOOR`` of the
true top k for a filter is not chosen for that filter again. A walk that returns fewer
than ``min(k, m)`` falls back to the exact scan, a post-filter that keeps too few to the
walk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..filter import Node
from ..hits import Hit, make_hits
from ..index import exact_topk, nearest_rows, to_scores
from .sqlfilter import compile_sql

#: below this many matches the exact scan always wins (tens of microseconds): no plan to choose
EXACT_BELOW = 1_000
#: from its this-many-th search on a filter repeats: its plans are tried on it
REPEATS = 2
#: one search of a filter in this many re-times the plans not chosen for it (twice: the
#: first run warms the caches; 1-2% of the queries' time at 500) ...
EXPLORE_EVERY = 500
#: ... those estimated to cost at most this many times the chosen one (re-timing a plan
#: estimated 100x dearer would cost that search 100x, to learn nothing that changes a choice)
EXPLORE_WITHIN = 4.0
#: ... and one planned search in this many also those estimated up to FAR_WITHIN times
#: dearer: an estimate can be wrong by more than EXPLORE_WITHIN (one slow first timing kept a
#: walk estimated 14x too dear, so never re-timed, in a session's profile); at most
#: 2 x FAR_WITHIN / FAR_EVERY (4%) of the queries' time goes to it
FAR_EVERY = 5_000
FAR_WITHIN = 100.0
#: a plan whose answers, checked against the exact scan's when both ran, kept less than this
#: share of the true top k for a filter is not chosen for that filter again (on clustered
#: data a restricted walk can miss matches that sit far from where the walk goes: 0.61 in a
#: session's measurement). Not higher: a small ``ef`` (the user's choice of speed over
#: recall) keeps 0.85-0.9 on real data by itself, and at 0.9 it sent a 30% filter to a scan
#: eight times dearer than either graph plan
RECALL_FLOOR = 0.75
#: ... once this many queries were checked (one query's recall is too noisy to judge by)
RECALL_CHECKS = 3
#: the post-filter plan fetches at most this many unfiltered neighbours
POST_MAX_DEPTH = 1_024
PLANS = ("exact", "walk", "post")
#: filters whose matches (and measurements) are kept until the next write: at most this
#: many, and this many bytes of row ids, vectors and membership sets
FILTERS_KEPT = 64
FILTER_BYTES = 256 << 20
#: a repeated filter of at most this many rows keeps its rows' cache entries (see FilterState)
ENTRIES_UP_TO = 4_096
#: what a kept entry counts against FILTER_BYTES: the list's slot and the entry (which a
#: filter keeps alive after the row cache dropped it)
ENTRY_BYTES = 8 + 256
#: a membership set costs about this many bytes per member (a Python int in a set) ...
SET_BYTES_PER_ROW = 64
#: ... so a byte map of row ids serves a filter unless it would hold over this many bytes
#: per match and over MEMBER_MIN_SPARSE bytes
MEMBER_SPARSE = 64
MEMBER_MIN_SPARSE = 1 << 20
#: a plan timed beside the chosen one (a probe) runs this many times in a row, the best run
#: counting. A probe is biased both ways: right after another plan a scan's data are out of the
#: caches and the BLAS threads asleep (a 10,000-row scan after a walk: 6x, 3x, 2.3x, 1.5x its
#: steady cost on four runs in a row), while the same query walked again finds its path in
#: the caches (a post-filter: 0.5x). So probes only nominate; trials decide:
PROBE_RUNS = 2
#: a plan estimated (probe or model) within this factor of the chosen plan's cost on a filter
#: that repeats, and not yet run steadily on it, is tried: it runs the next TRIAL_SEARCHES
#: searches of the filter, and their steady cost is compared with the chosen plan's
TRIAL_WITHIN = 4.0
TRIAL_SEARCHES = 16
#: a filter's chosen plan is chosen again (from its own and the model's estimates) every
#: this many searches; its own timing is kept current meanwhile. (Choosing again runs the
#: general path, ~33 us more than a settled search of the 1,031-row filter: every 64th
#: search cost it 0.5 us a query, every 16th 1.5 us; between explorations only the chosen
#: plan's own timing moves, so this only delays a switch by a few milliseconds.)
RECHOOSE_EVERY = 256
#: a timing counts at most this many times the figure it updates (see _smoothed)
OUTLIER_CLIP = 4.0
#: a filter's plan, once run steadily on it, has one search in this many timed (the lean path)
TIME_EVERY = 4
#: the model per unit learns from one settled run in this many (it moves slowly; recording
#: it touches another dozen objects, out of the CPU caches after a scan or a walk)
MODEL_EVERY = 16


def post_depth(k: int, m: int, n: int) -> int | None:
    """How many unfiltered neighbours to fetch so that ``k`` of them match a filter holding
    ``m`` of ``n`` rows, two standard deviations on the safe side (the matches among ``d``
    neighbours are about Binomial(d, m/n): ``mu - 2 sqrt(mu) >= k`` gives ``mu = (1 + sqrt(1 +
    k))^2``); None when that is more than :data:`POST_MAX_DEPTH` or the whole collection."""
    if m <= 0 or n <= 0:
        return None
    depth = math.ceil((1.0 + math.sqrt(1.0 + k)) ** 2 * n / m)
    return depth if depth <= min(POST_MAX_DEPTH, n - 1) else None


@dataclass(eq=False)
class FilterState:
    """One filter's matching rows and what the planner measured on it, until the next write."""

    where: Node
    rids: np.ndarray  # the matching row ids, sorted
    vecs: np.ndarray | None = None  # their vectors, one contiguous matrix (read when a scan needs it)
    norms: np.ndarray | None = None  # their norms (a cosine space stored unnormalised)
    allowed: Callable[[int], bool] | None = None  # a membership test (built when a walk needs it)
    member: bytes | None = None  # a byte per row id, 1 for a match (b"": too sparse, a set instead)
    #: (vecs, norms) once a single-query scan has read them (neither changes afterwards)
    scan: tuple | None = None
    #: the row cache entries of ``rids``, in order, once a scan of a repeated filter of at most
    #: ENTRIES_UP_TO rows with flat metadata made hits (no row id lookups); () for none
    entries: list | tuple | None = None
    uses: int = 0
    #: (plan, beam) -> seconds per query measured on this filter; beam 0 for exact
    timed: dict = field(default_factory=dict)
    #: the keys of ``timed`` measured run after run (as the chosen plan); the others are probes
    steady: set = field(default_factory=set)
    #: (k, ef) -> (plan, beam, units, searches until it is chosen again, post-filter depth,
    #: whether those searches are a trial: every one of them timed)
    chosen: dict = field(default_factory=dict)
    #: (plan, beam) -> the timings of its trial so far (see _steady)
    trial_runs: dict = field(default_factory=dict)

    @property
    def m(self) -> int:
        return len(self.rids)

    def nbytes(self) -> int:
        return (self.rids.nbytes + (0 if self.vecs is None else self.vecs.nbytes)
                + (0 if self.norms is None else self.norms.nbytes)
                + (SET_BYTES_PER_ROW * len(self.rids) if self.allowed is not None and not self.member else 0)
                + (0 if self.member is None else len(self.member))
                + ENTRY_BYTES * len(self.entries or ()))


@dataclass
class PlanCosts:
    """Learned per-query costs (seconds per unit) of the plans of one collection's filtered
    search: ``exact`` per matching row, ``walk`` per unit of inverse selectivity ``n / m``,
    ``post`` per unit of beam width. The estimate for a filter not measured yet."""

    per_unit: dict[str, float] = field(default_factory=dict)
    planned: int = 0
    #: (plan, filter) -> (the share of the exact top k its answers kept when both ran, smoothed;
    #: how many queries were checked)
    recall: dict = field(default_factory=dict)
    SMOOTHING = 0.3

    def cost(self, plan: str, units: float) -> float | None:
        per = self.per_unit.get(plan)
        return None if per is None else per * units

    def usable(self, plan: str, where=None) -> bool:
        value, checked = self.recall.get((plan, where), (1.0, 0))
        return checked < RECALL_CHECKS or value >= RECALL_FLOOR

    def choose(self, units: dict[str, float], where=None, measured: dict | None = None) -> str | None:
        """The cheapest of the plans in ``units`` (plan -> its units for this query) whose
        checked recall for this filter is not below :data:`RECALL_FLOOR`, by ``measured``
        seconds (plan -> this filter's own timing) where given, else by the model; None while
        the model lacks any of them."""
        costs = self.estimates(units, measured)
        if None in costs.values():
            return None
        ok = [p for p in costs if self.usable(p, where)] or ["exact"]
        return min(ok, key=lambda p: (costs[p], PLANS.index(p)))

    def estimates(self, units: dict[str, float], measured: dict | None = None) -> dict[str, float | None]:
        measured = measured or {}
        return {p: measured[p] if p in measured else self.cost(p, u) for p, u in units.items()}

    def observe_recall(self, plan: str, where, kept: list[float]) -> None:
        """Record the share of the exact top k that ``plan`` kept, per query checked."""
        if len(self.recall) >= 1024:
            self.recall.clear()
        old, checked = self.recall.get((plan, where), (None, 0))
        value = float(np.mean(kept))
        self.recall[(plan, where)] = (value if old is None else (1 - self.SMOOTHING) * old + self.SMOOTHING * value,
                                      checked + len(kept))

    def observe(self, plan: str, units: float, seconds_per_query: float) -> None:
        self.per_unit[plan] = _smoothed(self.per_unit.get(plan), seconds_per_query / max(units, 1e-12))


def _padded(labels: np.ndarray, dists: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One query's labels and distances as the (1, k) arrays of a batch (-1 / inf after the last)."""
    if len(labels) == k:
        return labels[None], dists[None]
    out_l = np.full((1, k), -1, dtype=np.int64)
    out_d = np.full((1, k), np.inf, dtype=np.float32)
    out_l[0, : len(labels)], out_d[0, : len(dists)] = labels, dists
    return out_l, out_d


def _lists(labels: np.ndarray, dists: np.ndarray) -> tuple[list, list]:
    """One query's (1, k) result arrays as lists, without the -1 padding."""
    rids = labels[0].tolist()
    if -1 in rids:  # fewer than k: results are packed at the front
        rids = rids[: rids.index(-1)]
    return rids, dists[0, : len(rids)].tolist()


def _smoothed(old: float | None, new: float) -> float:
    """``old`` moved toward ``new`` (SMOOTHING of the way), ``new`` first clipped to within
    OUTLIER_CLIP times ``old``: one search stalled by a pause of the process or of a shared
    machine (a 5 ms pause is 140 times a 1,031-row scan) moves a figure by at most 1.9x,
    where unclipped it would move it 43x (a plan that looks 43x dearer is not even explored
    again for 5,000 searches)."""
    if old is None:
        return new
    new = min(max(new, old / OUTLIER_CLIP), old * OUTLIER_CLIP)
    return (1 - PlanCosts.SMOOTHING) * old + PlanCosts.SMOOTHING * new


class Planner:
    """Filtered candidates, the exact-versus-HNSW plan, and hits from result arrays. (A part of :class:`.collection.CollectionStorage`.)"""

    def filter_state(self, where: Node) -> FilterState:
        """The cached state of a filter (its matching rows), read on first use after a write."""
        self.sync()
        st = self._filters.get(where)
        if st is not None:
            self._filters.move_to_end(where)
            return st
        sql, params = compile_sql(where)
        rows = self._q(f"SELECT rid FROM records WHERE collection_id = ? AND {sql} ORDER BY rid", [self.cid, *params])
        st = FilterState(where, np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
        self._filters[where] = st
        self._trim_filters()
        return st

    def _trim_filters(self) -> None:
        while len(self._filters) > 1 and (len(self._filters) > FILTERS_KEPT
                                          or sum(s.nbytes() for s in self._filters.values()) > FILTER_BYTES):
            self._filters.popitem(last=False)

    def _vectors_of(self, st: FilterState) -> np.ndarray:
        """The matching rows' vectors (in the order of ``st.rids``), read once per filter."""
        if st.vecs is None:
            sql, params = compile_sql(st.where)
            rows = self._q(f"SELECT rid, vector FROM records WHERE collection_id = ? AND {sql} ORDER BY rid",
                           [self.cid, *params])
            rids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            if not np.array_equal(rids, st.rids):  # another process wrote in between: these are newer
                st.rids, st.allowed, st.member, st.norms, st.entries = rids, None, None, None, None
            st.vecs = (np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.spec.dim)
                       if rows else np.zeros((0, self.spec.dim), np.float32))
            self._trim_filters()
        return st.vecs

    def _allowed_of(self, st: FilterState) -> Callable[[int], bool]:
        """The restricted walk's callback: is this row id a match? (The walk passes only the
        collection's own live row ids.)"""
        if st.allowed is None:
            member = self._member_of(st)
            st.allowed = member.__getitem__ if member is not None else set(st.rids.tolist()).__contains__
            self._trim_filters()
        return st.allowed

    def _member_of(self, st: FilterState) -> bytes | None:
        """A byte per row id of the collection (0 to its largest), 1 where the filter matches:
        the graph plans' membership test. ``bytes.__getitem__`` as the walk's callback runs
        ~10% faster than a set's ``__contains__`` (30% and 90% filters, 100k vectors: no
        hashing, and 100 kB stay in cache where a set of 30,000 ints does not), and holds a
        byte per row id instead of ~64 per match. None where the row ids are too sparse for
        that (the largest over MEMBER_SPARSE times the matches): a set then."""
        if st.member is None:
            # the largest row id the store ever gave (O(1), where the collection's own MAX(rid)
            # scans its index): every label the walk can pass is at most that
            row = self._q("SELECT seq FROM sqlite_sequence WHERE name = 'records'")
            top = max(row[0][0] if row else 0, int(st.rids[-1]) if st.m else 0)
            if top + 1 > MEMBER_SPARSE * max(st.m, 1) and top + 1 > MEMBER_MIN_SPARSE:
                st.member = b""
            else:
                member = np.zeros(top + 1, dtype=np.uint8)
                member[st.rids] = 1
                st.member = member.tobytes()
            self._trim_filters()
        return st.member or None

    def candidates(self, where: Node | None, with_vectors: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """rids (and vectors) of the records matching a filter; cached per filter until the next write."""
        st = self.filter_state(where)
        return st.rids, (self._vectors_of(st) if with_vectors else None)

    def allowed(self, where: Node | None):
        """A membership test for the rids matching a filter (cached with the match set)."""
        return self._allowed_of(self.filter_state(where))

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
        st = self.filter_state(where)
        if exact or st.m <= max(EXACT_BELOW, k):
            return self._scan(st, qvecs, k)
        return self._planned(st, qvecs, k, ef)

    def _scan(self, st: FilterState, qvecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return exact_topk(self._vectors_of(st), st.rids, qvecs, k, self.spec.metric, norms=self._norms_of(st),
                          unit=self.spec.normalize)

    def _ready(self, st: FilterState, plan: str) -> None:
        """Read what ``plan`` reads once per filter (the rows' vectors and norms, the
        membership test) before the clock starts, so that a timing is of the search itself
        (a lean scan once read 30,000 rows' vectors inside its first timing: 0.3 s, which
        taught the model 10 us a row)."""
        if plan == "exact":
            if st.scan is None:
                st.scan = (self._vectors_of(st), self._norms_of(st))
        else:
            self._allowed_of(st)

    def _scan_one(self, st: FilterState, vector: np.ndarray, k: int) -> tuple[np.ndarray, list]:
        """:meth:`_scan` of one query (the lean path): positions in the filter's rows and
        distances, best first."""
        if st.scan is None:
            self._ready(st, "exact")
        scan, spec = st.scan, self.spec
        pos, dists = nearest_rows(scan[0], vector, k, spec.metric, scan[1], spec.normalize)
        return pos, dists.tolist()

    def _hits_at(self, st: FilterState, pos: np.ndarray, dists: list) -> list[Hit]:
        """The hits of the filter's rows at positions ``pos``. A repeated filter of at most
        ENTRIES_UP_TO rows keeps its rows' cache entries aligned with them (read once, until
        a write): no row id lookups (10 hits of the 111-row filter: 0.5 us less)."""
        entries = st.entries
        if entries is None and st.uses >= REPEATS:
            entries = st.entries = (self.entries_of(st.rids.tolist()) or ()) if st.m <= ENTRIES_UP_TO else ()
            self._trim_filters()
        if entries:
            return self.hits_of(map(entries.__getitem__, pos.tolist()), dists)
        return self.hits_for(st.rids[pos].tolist(), dists)

    def _norms_of(self, st: FilterState) -> np.ndarray | None:
        """The matching rows' norms where the metric needs them (l2, a cosine space stored as
        given), once per filter until a write."""
        if self.spec.metric == "dot" or (self.spec.metric == "cosine" and self.spec.normalize):
            return None
        vecs = self._vectors_of(st)
        if st.norms is None or len(st.norms) != len(vecs):
            st.norms = np.linalg.norm(vecs, axis=1)
        return st.norms

    def _run(self, which: str, st: FilterState, index, qvecs: np.ndarray, k: int, ef: int | None, depth: int | None):
        if which == "exact":
            return self.exact(qvecs, k, st.where)
        if which == "walk":
            return self._walk(index, qvecs, k, st.where, ef, st.m)
        return self._post(index, qvecs, k, st.where, ef, depth, st.rids)

    def _planned(self, st: FilterState, qvecs: np.ndarray, k: int, ef: int | None) -> tuple[np.ndarray, np.ndarray]:
        """A filtered search through the planner: the chosen plan, with the exploration,
        probes and trials due (see the module's docstring)."""
        index = self.index()
        nq, costs = len(qvecs), self._plan_costs
        key = (k, ef)
        before = st.chosen.get(key)  # the plan the filter's last searches ran, if any
        chosen = self._settled(st, key)
        st.uses += 1
        if chosen is not None:
            # the common case: this filter's plan, chosen a few searches ago; its timing kept current
            plan, beam, unit, left, depth, trial = chosen
            self._ready(st, plan)
            t0 = time.perf_counter()
            out = self._run(plan, st, index, qvecs, k, ef, depth)
            self._steady(st, key, chosen, (time.perf_counter() - t0) / nq)
            return out
        units, depth = self._plan_units(index, st.m, k, ef)
        beams = self._beams(index, k, ef, depth)
        measured = self._measured(st, units, beams)
        plan = costs.choose(units, st.where, measured)
        if plan is not None:
            costs.planned += 1
        far = costs.planned % FAR_EVERY == 0
        if far or st.uses % EXPLORE_EVERY == 0:
            # a trial can be judged in a slow spell of the machine (this VM's speed drifts 2x
            # within minutes): the plans not chosen may be tried again, if still within reach
            st.steady &= {(p, b) for p, b in st.steady if p == plan}
        if plan is None:  # calibrate the model: every plan that applies, the exact one answering
            runs = list(units)
        else:  # now and then, probe the others estimated within reach (and check their recall)
            est = costs.estimates(units, measured)
            within = FAR_WITHIN if far else EXPLORE_WITHIN if st.uses % EXPLORE_EVERY == 0 else 0.0
            runs = [plan] + [p for p in units if p != plan and est[p] <= within * est[plan]]
        out = None
        results = {}
        for which in runs:
            self._ready(st, which)
            # a plan not run just before is probed: the best of PROBE_RUNS counts
            best = float("inf")
            for _ in range(PROBE_RUNS if which != plan else 1):
                t0 = time.perf_counter()
                result = self._run(which, st, index, qvecs, k, ef, depth)
                best = min(best, time.perf_counter() - t0)
            if which not in costs.per_unit:  # the model learns from steady runs; a probe only starts it
                costs.observe(which, units[which], best / nq)
            tkey = (which, beams[which])
            if tkey in st.steady:
                # a steady figure moves only with a run that follows runs of the same plan (after
                # another plan's trial, one scan of 10,071 rows ran 3x its steady cost and sent
                # the filter to a walk about twice as dear for the next 256 searches)
                if which == plan and before is not None and before[:2] == tkey:
                    st.timed[tkey] = _smoothed(st.timed[tkey], best / nq)
            else:
                st.timed[tkey] = best / nq  # a probe: an upper bound of its steady cost
            results[which] = result
            if which == (plan or "exact"):
                out = result
        if "exact" in results:  # the HNSW plans' answers checked against the exact scan's
            truth = results["exact"][0]
            for which in results.keys() - {"exact"}:
                got = results[which][0]
                kept = [len(set(t[t >= 0].tolist()) & set(g[g >= 0].tolist())) / max(1, int((t >= 0).sum()))
                        for t, g in zip(truth, got)]
                costs.observe_recall(which, st.where, kept)
        measured = self._measured(st, units, beams)
        now = costs.choose(units, st.where, measured)
        if now is None:
            return out
        # once the filter repeats, the chosen plan, if it has not run steadily on it, and then
        # each plan estimated within TRIAL_WITHIN of it that has not either, runs the next
        # TRIAL_SEARCHES searches: their steady costs decide
        trials = []
        if st.uses >= REPEATS:
            est = costs.estimates(units, measured)
            trials = [p for p in units if (p, beams[p]) not in st.steady and costs.usable(p, st.where)
                      and (p == now or est[p] <= TRIAL_WITHIN * est[now])]
        if trials:
            now = now if now in trials else min(trials, key=est.get)
        left = TRIAL_SEARCHES if trials else RECHOOSE_EVERY
        st.chosen[key] = (now, beams[now], units[now], left, depth, bool(trials))
        return out

    def _measured(self, st: FilterState, units: dict[str, float], beams: dict[str, int]) -> dict[str, float]:
        """What the filter's own timings say of each plan: its steady cost where it ran in a
        row; where only probed, the lower of the probe and the model's estimate (a probe of a
        scan right after a walk can be 6x its steady cost, the model is learned from steady
        runs)."""
        out = {}
        for p in units:
            key = (p, beams[p])
            if key in st.timed:
                model = None if key in st.steady else self._plan_costs.cost(p, units[p])
                out[p] = st.timed[key] if model is None else min(st.timed[key], model)
        return out

    def _settled(self, st: FilterState, key: tuple) -> tuple | None:
        """The plan chosen for this filter and ``(k, ef)`` when it is simply to run (before
        the search is counted): None while the filter is new, when it is to be chosen again,
        or when an exploration is due."""
        chosen = st.chosen.get(key)
        if (chosen is None or chosen[3] <= 0 or st.uses < REPEATS or (st.uses + 1) % EXPLORE_EVERY == 0
                or (self._plan_costs.planned + 1) % FAR_EVERY == 0):
            return None
        return chosen

    def _steady(self, st: FilterState, key: tuple, chosen: tuple, seconds: float | None) -> None:
        """Record a settled run of the plan chosen for a filter (run query after query: its
        steady cost). During a trial the filter's figure for the plan is the median of the
        trial's runs so far (the first replaces the probe's value); afterwards each timed run
        moves it (:func:`_smoothed`). ``seconds`` None: a run not timed, only counted toward
        the next choice."""
        plan, beam, unit, left, depth, trial = chosen
        st.chosen[key] = (plan, beam, unit, left - 1, depth, trial)
        costs = self._plan_costs
        costs.planned += 1
        if seconds is None:  # not timed (see TIME_EVERY): counted only
            return
        tkey = (plan, beam)
        if tkey not in st.steady:  # a trial's first run (cold caches)
            st.steady.add(tkey)
            st.timed[tkey] = seconds
            st.trial_runs[tkey] = [seconds]
            return
        if trial:
            # the median: a slow spell of a few searches, or the cold first run, does not decide
            # (smoothed from the first run, one trial of a 10,071-row scan ended at 842 us where
            # it runs steadily at 180-250, and the filter went to a walk of 435)
            runs = st.trial_runs.setdefault(tkey, [])
            runs.append(seconds)
            st.timed[tkey] = sorted(runs)[len(runs) // 2]
        else:
            st.trial_runs.pop(tkey, None)
            st.timed[tkey] = _smoothed(st.timed[tkey], seconds)
        if costs.planned % MODEL_EVERY == 0:
            costs.observe(plan, unit, seconds)

    def _beams(self, index, k: int, ef: int | None, depth: int | None) -> dict[str, int]:
        """What each plan's cost depends on besides the filter: the walk's and the
        post-filter's beam widths (0 for the scan)."""
        ef = ef or index.params.ef_search
        return {"exact": 0, "walk": max(ef, k), "post": max(ef, depth or 0)}

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
        costs are learned), each plan's estimated seconds per query and which of those were
        measured on this filter."""
        with self.store._lock:
            if where is None:  # the graph walk, unrestricted
                return {"matches": self._count(), "plan": "walk", "estimates": {}, "measured": []}
            st = self.filter_state(where)
            m = st.m
            if m <= max(EXACT_BELOW, k):
                return {"matches": m, "plan": "exact", "estimates": {}, "measured": []}
            index = self.index()
            units, depth = self._plan_units(index, m, k, ef)
            beams = self._beams(index, k, ef, depth)
            measured = self._measured(st, units, beams)
            return {"matches": m, "plan": self._plan_costs.choose(units, where, measured),
                    "estimates": self._plan_costs.estimates(units, measured), "measured": sorted(measured)}

    # -- one query, the steady state: the filter's chosen plan, nothing else ---------------------
    def filtered_one(self, vector: np.ndarray, k: int, ef: int | None, where: Node) -> list[Hit]:
        """One filtered query's hits. A filter seen before runs its chosen plan through the
        lean single-query code; anything else (a new filter, a write since, an exploration
        due, too few found) takes the general path."""
        st = self._filters.get(where)
        if st is None or self.store._poll() != self._generation:
            st = self.filter_state(where)
        m = len(st.rids)
        if m <= EXACT_BELOW or m <= k:
            pos, dists = self._scan_one(st, vector, k)
            st.uses += 1
            return self._hits_at(st, pos, dists)
        key = (k, ef)
        chosen = self._settled(st, key)
        if chosen is None:
            return self.hits_for(*_lists(*self._planned(st, vector[None], k, ef)))
        plan, beam, unit, left, depth, trial = chosen
        index = self._index if self._index is not None else self.index()
        # once the plan runs steadily on the filter, one search in TIME_EVERY is timed (a trial's
        # are all timed: its figure starts from a cold first run): recording a timing touches
        # half a dozen objects
        timed = trial or left % TIME_EVERY == 0 or (plan, beam) not in st.steady
        t0 = 0.0
        if timed:
            self._ready(st, plan)
            t0 = time.perf_counter()
        found = (self._scan_one(st, vector, k) if plan == "exact" else
                 self._walk_one(index, st, vector, k, beam) if plan == "walk" else
                 self._post_one(index, st, vector, k, ef, depth))
        if found is None:  # too few found
            return self.hits_for(*_lists(*self._planned(st, vector[None], k, ef)))
        st.uses += 1
        self._steady(st, key, chosen, time.perf_counter() - t0 if timed else None)
        return self._hits_at(st, *found) if plan == "exact" else self.hits_for(*found)

    def _walk_one(self, index, st: FilterState, vector: np.ndarray, k: int, beam: int) -> tuple[list, list] | None:
        found = index.nearest(vector, k, beam, self._allowed_of(st))
        if found is None or len(found[0]) < min(k, st.m):
            return None
        return found[0].tolist(), found[1].tolist()

    def _post_one(self, index, st: FilterState, vector: np.ndarray, k: int, ef: int | None,
                  depth: int) -> tuple[list, list] | None:
        found = index.nearest(vector, depth, max(ef or index.params.ef_search, depth))
        if found is None:
            return None
        member = self._member_of(st)
        labels = found[0].tolist()
        if member is not None:
            keep = [i for i, r in enumerate(labels) if member[r]][:k]
        else:
            allowed = self._allowed_of(st)
            keep = [i for i, r in enumerate(labels) if allowed(r)][:k]
        if len(keep) < min(k, st.m):
            return None
        dists = found[1].tolist()
        return [labels[i] for i in keep], [dists[i] for i in keep]

    def _walk(self, index, qvecs: np.ndarray, k: int, where: Node, ef: int | None, m: int):
        if len(qvecs) == 1:  # one query: no batch bookkeeping
            found = index.nearest(qvecs[0], k, max(ef or index.params.ef_search, k), self.allowed(where))
            if found is not None and len(found[0]) >= min(k, m):
                return _padded(*found, k)
            return self.exact(qvecs, k, where)  # too few matches found: scan them
        labels, dists = index.search(qvecs, k, ef=max(ef or index.params.ef_search, k), allowed=self.allowed(where))
        short = ((labels >= 0).sum(axis=1) < min(k, m)).nonzero()[0]
        if len(short):  # the graph walk found too few matches: fall back to scanning them
            labels[short], dists[short] = self.exact(qvecs[short], k, where)
        return labels, dists

    def _post(self, index, qvecs: np.ndarray, k: int, where: Node, ef: int | None, depth: int, rids: np.ndarray):
        """The ``depth`` nearest of the whole graph, those matching kept (``rids``: the
        matching row ids, sorted); queries left with too few go to the restricted walk."""
        if len(qvecs) == 1:  # one query: no batch bookkeeping
            found = self._post_one(index, self.filter_state(where), qvecs[0], k, ef, depth)
            if found is not None:
                return _padded(np.asarray(found[0], np.int64), np.asarray(found[1], np.float32), k)
            return self._walk(index, qvecs, k, where, ef, len(rids))
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
