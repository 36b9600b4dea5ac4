"""ANN recall@10 against exact search at default settings, on the test corpus's 8,420 real MiniLM vectors."""

from __future__ import annotations

import numpy as np
import pytest

import latentspace as ls


@pytest.fixture(scope="module")
def filled(real_docs, default_enc, tmp_path_factory):
    texts, vecs, qtexts, qvecs = real_docs
    st = ls.open_store(tmp_path_factory.mktemp("recall") / "s")
    col = st.create_collection("docs", encoder=default_enc)
    ids = [f"p{i}" for i in range(len(texts))]
    for s in range(0, len(ids), 5000):
        col.add(ids[s : s + 5000], documents=texts[s : s + 5000], vectors=vecs[s : s + 5000],
                metadatas=[{"bucket": i % 10} for i in range(s, min(s + 5000, len(ids)))], space=default_enc.spec)
    yield col, qvecs, default_enc
    st.close()


def recall(col, qvecs, spec, **kw):
    ann = col.search_batch(vectors=qvecs, space=spec, k=10, **kw)
    ex = col.search_batch(vectors=qvecs, space=spec, k=10, mode="exact", **kw)
    return float(np.mean([len({h.id for h in a} & {h.id for h in e}) / max(len(e), 1) for a, e in zip(ann, ex)]))


def test_recall_at_10_default_settings(filled, real_docs):
    col, qvecs, enc = filled
    assert len(col) == len(real_docs[0])
    r = recall(col, qvecs, enc.spec)
    assert r >= 0.95, r


def test_single_query_path_agrees_with_batch(filled):
    col, qvecs, enc = filled
    for q in qvecs[:20]:
        single = [h.id for h in col.search(vector=q, space=enc.spec, k=10)]
        batch = [h.id for h in col.search_batch(vectors=q[None], space=enc.spec, k=10)[0]]
        assert single == batch


@pytest.mark.parametrize("where", [{"bucket": 3}, {"bucket": {"$in": [1, 2, 3, 4, 5, 6, 7, 8]}}])
def test_filtered_recall(filled, where):
    col, qvecs, enc = filled
    r = recall(col, qvecs[:200], enc.spec, where=where)
    assert r >= 0.95, r
    hits = col.search(vector=qvecs[0], space=enc.spec, k=10, where=where)
    assert len(hits) == 10 and all(col.get(ids=[h.id])[0].metadata["bucket"] in
                                   (where["bucket"]["$in"] if isinstance(where["bucket"], dict) else [3])
                                   for h in hits)


def test_text_queries_find_their_own_document(filled):
    col, _, enc = filled
    docs = col.get(limit=5, offset=1234)
    for rec in docs:
        hits = col.search(rec.document, k=3)
        assert rec.id in [h.id for h in hits]


def test_the_filtered_plan_follows_measured_costs(filled, monkeypatch):
    """The planner learns each plan's cost from its own timings (the first large filtered
    search runs every plan that applies) and then runs the cheapest on this filter; answers
    stay right whichever runs."""
    from latentspace.storage.embedded import planner

    col, qvecs, enc = filled
    storage = col._storage
    storage._plan_costs = planner.PlanCosts()
    storage._filters.clear()
    where = {"bucket": {"$in": [1, 2, 3, 4, 5, 6, 7, 8]}}  # 80% of the records
    ran = []
    for name in ("exact", "_walk", "_post"):
        real = getattr(type(storage), name)
        monkeypatch.setattr(type(storage), name, lambda self, *a, _r=real, _n=name, **kw:
                            ran.append(_n.strip("_")) or _r(self, *a, **kw))
    first = col.search(vector=qvecs[0], space=enc.spec, k=10, where=where)
    assert list(dict.fromkeys(ran)) == ["exact", "walk", "post"] and set(storage._plan_costs.per_unit) == {"exact", "walk", "post"}
    truth = col.search(vector=qvecs[0], space=enc.spec, k=10, where=where, mode="exact")
    assert [h.id for h in first] == [h.id for h in truth]  # the calibrating search answers exactly
    st = storage._filters[storage_node(where)]
    assert {p for p, _ in st.timed} == {"exact", "walk", "post"}  # measured on this filter too
    for cheap in ("exact", "walk", "post"):
        for plan, beam in st.timed:
            st.timed[(plan, beam)] = 1e-12 if plan == cheap else 1.0
        st.chosen.clear()
        ran.clear()
        hits = col.search(vector=qvecs[1], space=enc.spec, k=10, where=where)
        assert ran == [cheap], (cheap, ran)
        exact_ids = [h.id for h in col.search(vector=qvecs[1], space=enc.spec, k=10, where=where, mode="exact")]
        assert len(hits) == 10 and len({h.id for h in hits} & set(exact_ids)) >= 9
        assert all(h.metadata["bucket"] in range(1, 9) for h in hits)
    m, n = col.count(where), len(col)
    for plan, beam in st.timed:
        st.timed[(plan, beam)] = {"exact": 3.0, "walk": 2.0, "post": 1.0}[plan]
    st.steady = set(st.timed)  # as if each had run in a row on the filter
    assert storage.explain(storage_node(where), k=10) == {
        "matches": m, "plan": "post", "estimates": {"exact": 3.0, "walk": 2.0, "post": 1.0},
        "measured": ["exact", "post", "walk"]}
    # another filter, not measured yet: the model's estimates per unit
    other = {"bucket": {"$in": [0, 1, 2, 3, 4, 5, 6, 7]}}
    storage._plan_costs.per_unit.update(exact=1.0, walk=1.0, post=1e-12)
    m = col.count(other)
    assert storage.explain(storage_node(other), k=10) == {
        "matches": m, "plan": "post", "measured": [],
        "estimates": {"exact": 1.0 * m, "walk": 1.0 * n / m, "post": 1e-12 * max(64, planner.post_depth(10, m, n))}}


def test_a_filter_that_repeats_tries_the_plans_within_reach_and_keeps_the_fastest_on_it(filled):
    """The model's estimate (learned on other filters) chooses a filter's first plan; once the
    filter repeats, each plan estimated within TRIAL_WITHIN runs TRIAL_SEARCHES searches in a
    row (a trial: its steady cost on this filter), and the filter then runs the plan fastest
    on it, whatever the model says."""
    from latentspace.storage.embedded import planner

    col, qvecs, enc = filled
    storage = col._storage
    storage._plan_costs = planner.PlanCosts()
    storage._filters.clear()
    col.search(vector=qvecs[0], space=enc.spec, k=10, where={"bucket": {"$in": [1, 2, 3, 4, 5, 6, 7, 8]}})
    where = {"bucket": {"$in": [2, 3, 4, 5, 6, 7, 8, 9]}}
    node = storage_node(where)
    costs = storage._plan_costs
    n, m = len(col), col.count(where)
    # walk estimated cheapest, post within TRIAL_WITHIN of it, the scan far beyond (below any
    # real timing: a plan only probed is estimated by the lower of its probe and the model)
    costs.per_unit.update(exact=1.0, walk=1e-9 / (n / m), post=2e-9 / max(64, planner.post_depth(10, m, n)))
    key = (10, None)

    def search(i):
        hits = col.search(vector=qvecs[i % len(qvecs)], space=enc.spec, k=10, where=where)
        assert len(hits) == 10 and all(h.metadata["bucket"] >= 2 for h in hits)

    search(1)
    st = storage._filters[node]
    assert st.chosen[key][0] == "walk" and not st.steady  # the model's choice; no trial for a filter seen once
    search(2)  # it repeats: the chosen walk is tried first (its steady cost), then post, within reach
    assert st.chosen[key][0] == "walk" and st.chosen[key][3] == planner.TRIAL_SEARCHES
    for i in range(planner.TRIAL_SEARCHES):
        search(3 + i)
    assert {p for p, _ in st.steady} == {"walk"}
    search(20)  # post, estimated cheaper than the walk's steady cost, never run in a row: tried
    assert st.chosen[key][0] == "post" and st.chosen[key][3] == planner.TRIAL_SEARCHES
    for i in range(planner.TRIAL_SEARCHES + 1):
        search(40 + i)
    assert {p for p, _ in st.steady} == {"walk", "post"}
    timed = {p: st.timed[(p, b)] for p, b in st.steady}
    for i in range(planner.RECHOOSE_EVERY + 1):
        search(80 + i)
    assert st.chosen[key][0] in ("walk", "post")
    for k_ in st.timed:  # on this filter, post is the cheaper, whatever the model says
        st.timed[k_] = 1e-9 if k_[0] == "post" else 1.0
    costs.per_unit.update(walk=1e-12)
    st.chosen.clear()
    search(120)
    assert st.chosen[key][0] == "post" and timed


def storage_node(where):
    from latentspace.storage.filter import parse

    return parse(where)


def test_post_filter_depth_follows_the_selectivity():
    """The post-filter fetches enough neighbours that k match two standard deviations on the
    safe side, and is not offered where that depth would be most of the collection."""
    from latentspace.storage.embedded.planner import POST_MAX_DEPTH, post_depth

    d = post_depth(10, 30_000, 100_000)  # 30% selective
    mean, sd = d * 0.3, (d * 0.3 * 0.7) ** 0.5
    assert mean - 2 * sd >= 10 - 0.5 and d < 100
    assert post_depth(10, 90_000, 100_000) < post_depth(10, 50_000, 100_000) < d
    assert post_depth(10, 100, 100_000) is None  # 0.1%: 18,600 deep
    assert post_depth(10, 5_000, 10_000) is not None and post_depth(10, 5, 10) is None
    assert post_depth(50, 10_000, 100_000) <= POST_MAX_DEPTH


def test_post_filter_falls_back_when_too_few_match(filled, monkeypatch):
    """A query whose nearest neighbours mostly fail the filter keeps fewer than k: it goes to
    the restricted walk, and the hits are still k matching ones."""
    col, qvecs, _ = filled
    storage = col._storage
    where = {"bucket": {"$in": [0, 1, 2, 3, 4]}}  # 50%
    node = storage_node(where)
    walked = []
    real_walk = type(storage)._walk
    monkeypatch.setattr(type(storage), "_walk", lambda self, index, q, *a, **kw:
                        walked.append(len(q)) or real_walk(self, index, q, *a, **kw))
    # a depth of 20 at 50%: about half the queries keep fewer than 10 matches
    labels, dists = storage._post(storage.index(), qvecs[:40], 10, node, None, 20, storage.candidates(node, False)[0])
    assert 0 < walked[0] < 40
    assert (labels >= 0).all()
    buckets = {h.id: h.metadata["bucket"] for h in col.get(ids=[f"p{i}" for i in range(len(col))])}
    rec_ids = [rec_id for rec_id, _, _ in storage._entries(labels.ravel().tolist())]
    assert all(buckets[i] < 5 for i in rec_ids)
    assert np.all(np.diff(dists, axis=1) >= -1e-6)  # best first


def test_a_plan_that_misses_the_true_neighbours_of_a_filter_is_not_chosen_for_it(filled, monkeypatch):
    """When the exact scan ran beside an HNSW plan (calibrating), the HNSW plan's answers are
    checked against it: a walk that kept less than RECALL_FLOOR of the true top k is not
    chosen for that filter again, however cheap, and still is for another filter."""
    from latentspace.storage.embedded import planner

    col, qvecs, enc = filled
    storage = col._storage
    storage._plan_costs = planner.PlanCosts()
    storage._filters.clear()
    bad, good = {"bucket": {"$in": [0, 1, 2, 3, 4, 5, 6]}}, {"bucket": {"$in": [1, 2, 3, 4, 5, 6, 7, 8]}}
    real_walk = type(storage)._walk

    def walk(self, index, q, k, where, ef, m):  # a walk that gets the filter `bad` wrong: its farthest matches
        labels, dists = real_walk(self, index, q, k, where, ef, m)
        if where == storage_node(bad):
            far, d = self.exact(-q, k, where)
            return far, d
        return labels, dists

    monkeypatch.setattr(type(storage), "_walk", walk)
    # calibrates: every plan, checked on each of the queries (one query alone does not judge a plan)
    col.search_batch(vectors=qvecs[:planner.RECALL_CHECKS], space=enc.spec, k=10, where=bad)
    rec = storage._plan_costs.recall
    assert rec[("walk", storage_node(bad))] < (0.5, planner.RECALL_CHECKS + 1)
    assert rec[("post", storage_node(bad))] >= (0.9, planner.RECALL_CHECKS)
    assert ("walk", storage_node(good)) not in rec  # not checked for that filter: usable
    costs = storage._plan_costs.per_unit
    costs.update(exact=1.0, walk=1e-12, post=1.0)
    st = storage._filters[storage_node(bad)]
    for key in st.timed:
        st.timed[key] = {"exact": 1.0, "walk": 1e-12, "post": 1e-6}[key[0]]
    assert storage.explain(storage_node(bad))["plan"] == "post"  # the cheapest of the usable ones
    assert storage.explain(storage_node(good))["plan"] == "walk"


def test_a_plan_estimated_far_too_dear_is_timed_again_now_and_then(filled, monkeypatch):
    """Every FAR_EVERY-th planned search also re-times plans estimated up to FAR_WITHIN times
    dearer, so an estimate that is wrong by more than EXPLORE_WITHIN gets corrected."""
    from latentspace.storage.embedded import planner

    col, qvecs, enc = filled
    storage = col._storage
    storage._plan_costs = planner.PlanCosts()
    storage._filters.clear()
    where = {"bucket": {"$in": [1, 2, 3, 4, 5, 6, 7, 8]}}
    col.search(vector=qvecs[0], space=enc.spec, k=10, where=where)  # calibrate
    costs = storage._plan_costs
    st = storage._filters[storage_node(where)]
    walk_key = next(key for key in st.timed if key[0] == "walk")
    st.timed[walk_key] = 20 * min(st.timed.values())  # a walk measured 20x dearer than it is on this filter
    costs.per_unit["walk"] *= 20  # and so estimated by the model
    wrong = st.timed[walk_key]
    st.chosen.clear()
    ran = []
    real = type(storage)._walk
    monkeypatch.setattr(type(storage), "_walk", lambda self, *a, **kw: ran.append(1) or real(self, *a, **kw))
    costs.planned = planner.FAR_EVERY - 1
    chosen = storage.explain(storage_node(where))["plan"]
    col.search(vector=qvecs[1], space=enc.spec, k=10, where=where)
    assert chosen != "walk" and ran and st.timed[walk_key] < wrong


def test_the_lean_single_query_plans_agree_with_the_general_path_and_see_writes(filled, monkeypatch):
    """A repeated filter runs its chosen plan through the lean single-query code: each plan's
    answers agree with the exact scan, and a write (add, then delete) is seen by the very
    next query."""
    from latentspace.storage.embedded import planner

    col, qvecs, enc = filled
    storage = col._storage
    storage._plan_costs = planner.PlanCosts()
    storage._filters.clear()
    where = {"bucket": {"$in": [1, 2, 3, 4, 5, 6, 7, 8]}}
    node = storage_node(where)
    for cheap in ("exact", "walk", "post"):
        for i in range(planner.REPEATS + 2):  # past the first searches: the lean path
            col.search(vector=qvecs[i], space=enc.spec, k=10, where=where)
        st = storage._filters[node]
        beams = storage._beams(storage.index(), 10, None, planner.post_depth(10, st.m, len(col)))
        st.timed = {(p, beams[p]): 1e-12 if p == cheap else 1.0 for p in planner.PLANS}
        st.steady = set(st.timed)
        st.chosen.clear()
        col.search(vector=qvecs[0], space=enc.spec, k=10, where=where)  # chooses again
        assert st.chosen[(10, None)][0] == cheap
        general = []
        real = type(storage)._planned
        monkeypatch.setattr(type(storage), "_planned", lambda self, *a, **kw: general.append(1) or real(self, *a, **kw))
        for q in qvecs[10:30]:
            single = col.search(vector=q, space=enc.spec, k=10, where=where)
            exact = col.search_batch(vectors=q[None], space=enc.spec, k=10, where=where, mode="exact")[0]
            agree = len({h.id for h in single} & {h.id for h in exact})
            assert len(single) == 10 and agree >= (10 if cheap == "exact" else 8), (cheap, agree)
            assert [h.distance for h in single] == sorted(h.distance for h in single)
            if cheap == "exact":
                assert [(h.id, h.score) for h in single] == [(h.id, h.score) for h in exact]
        assert len(general) <= 2  # the lean path answered (a re-choice every RECHOOSE_EVERY aside)
        monkeypatch.undo()
        q = qvecs[40]
        col.add(["written-now"], vectors=q[None], metadatas=[{"bucket": 4}], space=enc.spec)
        assert col.search(vector=q, space=enc.spec, k=10, where=where)[0].id == "written-now"
        col.delete(ids=["written-now"])
        assert "written-now" not in {h.id for h in col.search(vector=q, space=enc.spec, k=10, where=where)}


def test_the_graph_plans_answer_alike_with_a_byte_map_or_a_set_of_the_matches(filled, monkeypatch):
    """The walk's and the post-filter's membership test is a byte per row id, or a set where
    the row ids are too sparse for that: the same answers either way, single and batch."""
    from latentspace.storage.embedded import planner

    col, qvecs, enc = filled
    storage = col._storage
    node = storage_node({"bucket": {"$in": [1, 2, 3, 4, 5]}})
    index = storage.index()
    q = qvecs[:12]

    def answers():
        storage._filters.clear()
        st = storage.filter_state(node)
        depth = planner.post_depth(10, st.m, len(index))
        out = [storage._walk(index, q, 10, node, 32, st.m), storage._post(index, q, 10, node, 32, depth, st.rids)]
        out += [storage._walk(index, v[None], 10, node, 32, st.m) for v in q]
        out += [storage._post(index, v[None], 10, node, 32, depth, st.rids) for v in q]
        return out, st

    by_bytes, st = answers()
    assert isinstance(st.member, bytes) and len(st.member) > 0
    monkeypatch.setattr(planner, "MEMBER_SPARSE", 0)
    monkeypatch.setattr(planner, "MEMBER_MIN_SPARSE", 0)
    by_set, st = answers()
    assert st.member == b"" and st.allowed.__self__.__class__ is set
    for (l1, d1), (l2, d2) in zip(by_bytes, by_set):
        assert np.array_equal(l1, l2) and np.array_equal(d1, d2)
    assert all((l >= 0).all() for l, _ in by_bytes)


def _a_fresh_filter(filled, searches: int):
    """A fresh planner and the filter on buckets 0-3 searched ``searches`` times: (collection,
    query vectors, encoder, storage, the filter, its FilterState)."""
    from latentspace.storage.embedded import planner

    col, qvecs, enc = filled
    storage = col._storage
    storage._plan_costs = planner.PlanCosts()
    storage._filters.clear()
    where = {"bucket": {"$in": [0, 1, 2, 3]}}
    for q in qvecs[:searches]:
        col.search(vector=q, space=enc.spec, k=10, where=where)
    return col, qvecs, enc, storage, where, storage._filters[storage_node(where)]


def test_a_settled_plan_counts_every_search_and_times_one_in_time_every(filled, monkeypatch):
    """Once a filter's plan runs steadily on it, every search counts down to the next choice
    and one in TIME_EVERY is timed (a trial's searches are all timed); the answers stay the
    exact scan's."""
    from latentspace.storage.embedded import planner

    col, qvecs, enc, storage, where, st = _a_fresh_filter(filled, planner.REPEATS)
    beams = storage._beams(storage.index(), 10, None, planner.post_depth(10, st.m, len(col)))
    st.timed = {(p, beams[p]): 1e-12 if p == "exact" else 1.0 for p in planner.PLANS}
    st.steady = set(st.timed)
    st.chosen.clear()
    col.search(vector=qvecs[0], space=enc.spec, k=10, where=where)  # chooses again: the scan, steady already
    key = (10, None)
    assert st.chosen[key][0] == "exact" and st.chosen[key][3] == planner.RECHOOSE_EVERY
    timings = []
    real = type(storage)._steady
    monkeypatch.setattr(type(storage), "_steady", lambda self, *a: timings.append(a[-1]) or real(self, *a))
    n = 8 * planner.TIME_EVERY
    for q in qvecs[:n]:
        hits = col.search(vector=q, space=enc.spec, k=10, where=where)
        exact = col.search_batch(vectors=q[None], space=enc.spec, k=10, where=where, mode="exact")[0]
        assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in exact]
    assert st.chosen[key][3] == planner.RECHOOSE_EVERY - n  # every search counted
    timed = [t for t in timings if t is not None]
    assert len(timings) == n and len(timed) == n // planner.TIME_EVERY and all(t > 0 for t in timed)


class _Clock:
    """A stand-in for ``time.perf_counter`` in the planner: each reading is ``step`` seconds
    after the previous one (two readings around a search: it took ``step``), and ``jump``
    adds time as if something slow ran in between."""

    def __init__(self, step: float = 1.0):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def jump(self, seconds: float) -> None:
        self.now += seconds


def test_trials_are_timed_whole_and_judged_by_their_median_and_a_stall_moves_a_figure_little(filled, monkeypatch):
    """A trial times every one of its searches and its figure is their median (neither its
    cold first run nor a slow spell of a few searches decides); what a plan reads once per
    filter is read before its clock starts; afterwards one stalled search moves a figure by
    at most 0.7 + 0.3 * OUTLIER_CLIP; and one run of a plan right after another plan's trial
    (cold) does not move its steady figure. A stand-in clock: no real timing is judged."""
    from latentspace.storage.embedded import planner

    col, qvecs, enc, storage, where, st = _a_fresh_filter(filled, 1)
    key, beams = (10, None), storage._beams(storage.index(), 10, None, planner.post_depth(10, st.m, len(col)))
    st.scan, st.vecs, st.timed, st.steady, st.uses = None, None, {}, set(), planner.REPEATS  # it repeats
    # the exact plan starts a trial on the lean path (never run on the filter: its vectors unread)
    st.chosen[key] = ("exact", 0, st.m, planner.TRIAL_SEARCHES, None, True)
    clock = _Clock()
    monkeypatch.setattr(planner.time, "perf_counter", clock)
    real_vectors = type(storage)._vectors_of
    monkeypatch.setattr(type(storage), "_vectors_of",
                        lambda self, s: (clock.jump(100.0) if s.vecs is None else None) or real_vectors(self, s))
    runs = [10.0] + [1.0] * 9 + [50.0] * 3 + [1.0] * 3  # a cold first run, a slow spell
    assert len(runs) == planner.TRIAL_SEARCHES
    for q, seconds in zip(qvecs, runs):
        clock.step = seconds  # two readings bracket a search: it measures `seconds`
        col.search(vector=q, space=enc.spec, k=10, where=where)
    assert st.vecs is not None and st.trial_runs[("exact", 0)] == runs  # every search timed, the read not
    assert st.timed[("exact", 0)] == 1.0 and st.chosen[key][3] == 0
    # settled: a stalled search moves the figure little
    figure = 1.0
    st.chosen[key] = ("exact", 0, st.m, planner.RECHOOSE_EVERY, None, False)
    st.trial_runs.clear()
    clock.step = 140.0
    for q in qvecs[: planner.TIME_EVERY]:  # one of them timed
        col.search(vector=q, space=enc.spec, k=10, where=where)
    assert st.timed[("exact", 0)] == pytest.approx(figure * (0.7 + 0.3 * planner.OUTLIER_CLIP))
    # a re-choice right after another plan's searches: the chosen plan's one cold run is not its steady cost
    st.timed = {(p, beams[p]): 1.0 if p == "exact" else 5.0 for p in planner.PLANS}
    st.steady = set(st.timed)
    storage._plan_costs.per_unit.update(exact=1.0, walk=1.0, post=1.0)
    st.chosen[key] = ("walk", beams["walk"], 1.0, 0, None, False)  # due for a re-choice
    clock.step = 30.0
    col.search(vector=qvecs[1], space=enc.spec, k=10, where=where)
    assert st.chosen[key][0] == "exact" and st.timed[("exact", 0)] == 1.0
    st.chosen[key] = ("exact", 0, 1.0, 0, None, False)  # after its own runs, the same run counts
    col.search(vector=qvecs[2], space=enc.spec, k=10, where=where)
    assert st.timed[("exact", 0)] == pytest.approx(0.7 + 0.3 * planner.OUTLIER_CLIP)
