"""A Collection against a plain in-memory model with exact search, including restarts."""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition, rule

import latentspace as ls
from latentspace.storage.filter import matches as _matches
from latentspace.storage.filter import parse


def matches(where, document, metadata) -> bool:
    """The reference semantics: the library's own evaluator of the parsed filter tree."""
    return _matches(parse(where), document, metadata)


DIM = 8
SPEC = ls.SpaceSpec(model="m", dim=DIM, modality="vector")
ids_st = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
meta_st = st.fixed_dictionaries({"g": st.sampled_from(["x", "y", "z"]), "n": st.integers(0, 9)})
WHERES = [None, {"g": "x"}, {"n": {"$gte": 5}}, {"$or": [{"g": "y"}, {"n": 0}]}, {"g": {"$ne": "z"}}]


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class CollectionMachine(RuleBasedStateMachine):
    """A Collection of the embedded store against a dict of what it should hold, with restarts."""

    ids = Bundle("ids")
    URI: str | None = None  # None: a fresh directory (the embedded store)

    @initialize()
    def setup(self):
        self.dir = tempfile.mkdtemp()
        self.store = ls.open_store(self.URI or self.dir)
        self.col = self.store.create_collection("c", space=SPEC)
        self.model: dict[str, tuple[np.ndarray, dict, str]] = {}

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(target=ids, new=st.lists(st.tuples(ids_st, st.integers(0, 10**6), meta_st), min_size=1, max_size=8,
                                    unique_by=lambda t: t[0]))
    def add(self, new):
        fresh = [t for t in new if t[0] not in self.model]
        if not fresh:
            try:
                self.col.add([new[0][0]], vectors=vec(new[0][1])[None])
                raise AssertionError("adding an existing id must fail")
            except ls.AlreadyExistsError:
                return multiple()
        self.col.add([t[0] for t in fresh], vectors=np.stack([vec(t[1]) for t in fresh]),
                     documents=[f"doc {t[0]}" for t in fresh], metadatas=[t[2] for t in fresh])
        for i, seed, meta in fresh:
            self.model[i] = (vec(seed), meta, f"doc {i}")
        return fresh[0][0]

    @rule(i=ids, seed=st.integers(0, 10**6), meta=meta_st)
    def upsert(self, i, seed, meta):
        self.col.upsert([i], vectors=vec(seed)[None], documents=[f"doc {i} v{seed}"], metadatas=[meta])
        self.model[i] = (vec(seed), meta, f"doc {i} v{seed}")

    @rule(i=ids)
    def delete(self, i):
        n = self.col.delete(ids=[i])
        assert n == (1 if i in self.model else 0)
        self.model.pop(i, None)

    @rule(where=st.sampled_from(WHERES[1:]))
    def delete_where(self, where):
        gone = [i for i, (_, m, d) in self.model.items() if matches(where, d, m)]
        assert self.col.delete(where=where) == len(gone)
        for i in gone:
            del self.model[i]

    @rule()
    def reopen(self):
        if self.store.capabilities.persistent:  # a restart; else a fresh handle on the same store
            self.store.close()
            self.store = ls.open_store(self.URI or self.dir)
        self.col = self.store.get_collection("c")

    @precondition(lambda self: len(self.model) > 0)
    @rule(seed=st.integers(0, 10**6), k=st.integers(1, 12), where=st.sampled_from(WHERES),
          mode=st.sampled_from(["vector", "exact"]))
    def search(self, seed, k, where, mode):
        q = vec(seed)
        cands = [(i, float(v @ q)) for i, (v, m, d) in self.model.items() if matches(where, d, m)]
        cands.sort(key=lambda t: -t[1])
        expected = [i for i, _ in cands[:k]]
        hits = self.col.search(vector=q, k=k, where=where, mode=mode)
        assert len(hits) == len(expected)
        got = [h.id for h in hits]
        if mode == "exact":
            assert np.allclose([h.score for h in hits], [s for _, s in cands[:k]], atol=1e-5)
        else:  # ANN: 90% of the true top k, where records tied with the k-th count as the top k
            tied = {i for i, sc in cands if expected and sc >= cands[len(expected) - 1][1] - 1e-6}
            assert len(set(got) & tied) >= 0.9 * len(expected)
        for h in hits:
            v, m, d = self.model[h.id]
            assert h.metadata == m and h.document == d

    @precondition(lambda self: len(self.model) > 0)
    @rule(seeds=st.lists(st.integers(0, 10**6), min_size=2, max_size=4), k=st.integers(1, 12))
    def search_batch(self, seeds, k):
        qs = np.stack([vec(s) for s in seeds])
        for q, hits in zip(qs, self.col.search_batch(vectors=qs, k=k)):
            assert len(hits) == min(k, len(self.model))
            single = self.col.search(vector=q, k=k)
            assert np.allclose([h.score for h in hits], [h.score for h in single], atol=1e-5)
            # the same records, but for the order of exact ties (equal vectors score alike up to
            # the last bit, which a batched product may round the other way)
            differ = {h.id for h in hits} ^ {h.id for h in single}
            assert all(abs(float(self.model[i][0] @ q) - hits[-1].score) < 1e-5 for i in differ)
            for h in hits:
                v, m, d = self.model[h.id]
                assert h.metadata == m and h.document == d and abs(h.score - float(v @ q)) < 1e-5

    @invariant()
    def same_contents(self):
        if not hasattr(self, "col"):
            return
        assert len(self.col) == len(self.model)
        recs = {r.id: r for r in self.col.get(include_vectors=True)}
        assert set(recs) == set(self.model)
        for i, r in recs.items():
            np.testing.assert_array_equal(r.vector, self.model[i][0])


CollectionMachine.TestCase.settings = settings(
    max_examples=75, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
TestCollectionMachine = CollectionMachine.TestCase


class SmallCacheMachine(CollectionMachine):
    """The same, with a row cache of a few rows: searches evict rows they are still reading."""

    @initialize()
    def setup(self):
        from latentspace.storage.embedded import rowcache as collection_storage

        self._saved_bound = collection_storage.ROW_CACHE_BYTES
        collection_storage.ROW_CACHE_BYTES = 1_500
        super().setup()

    def teardown(self):
        from latentspace.storage.embedded import rowcache as collection_storage

        super().teardown()
        collection_storage.ROW_CACHE_BYTES = self._saved_bound


SmallCacheMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
TestSmallCacheMachine = SmallCacheMachine.TestCase


class MemoryMachine(CollectionMachine):
    """The same rules on the memory backend (the reference: exact search)."""

    URI = ":memory:"


MemoryMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
TestMemoryMachine = MemoryMachine.TestCase


class MilvusMachine(CollectionMachine):
    """The same rules on Milvus Lite, restarts included."""

    @initialize()
    def setup(self):
        import pytest

        pytest.importorskip("milvus_lite")
        self.dir = tempfile.mkdtemp()
        self.URI = f"milvus+lite://{self.dir}/m"
        self.store = ls.open_store(self.URI)
        self.col = self.store.create_collection("c", space=SPEC)
        self.model = {}


MilvusMachine.TestCase.settings = settings(
    max_examples=12, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
)
TestMilvusMachine = MilvusMachine.TestCase


class RemoteMachine(CollectionMachine):
    """The same rules through ``ls.connect`` to a real server (in a thread) on an embedded
    store; a restart stops the server and starts a new one on the same folder."""

    @initialize()
    def setup(self):
        from ..live_server import serve_in_thread

        self.dir = tempfile.mkdtemp()
        self.URI = serve_in_thread(f"{self.dir}/s")
        self.store = ls.connect(self.URI)
        self.col = self.store.create_collection("c", space=SPEC)
        self.model = {}

    @rule()
    def reopen(self):
        from ..live_server import serve_in_thread, stop_all

        self.store.close()
        stop_all(wait=True)
        self.URI = serve_in_thread(f"{self.dir}/s")
        self.store = ls.connect(self.URI)
        self.col = self.store.get_collection("c")

    def teardown(self):
        from ..live_server import stop_all

        self.store.close()
        stop_all(wait=True)
        shutil.rmtree(self.dir, ignore_errors=True)


RemoteMachine.TestCase.settings = settings(
    max_examples=3, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
)
TestRemoteMachine = RemoteMachine.TestCase
