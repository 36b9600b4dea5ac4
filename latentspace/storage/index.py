"""ANN indexes behind one small interface, with exact search as the reference.

An index maps int64 labels (the store's row ids) to vectors and answers k-nearest
queries as ``(labels, distances)`` arrays padded with ``-1`` / ``inf``. Distances follow
one convention for every metric: cosine ``1 - cos``, dot ``1 - <q, x>``, l2 Euclidean.

The default is hnswlib (chosen by ``bench/search.py``: fastest single and batch queries
here, incremental add, delete by marking, filter callbacks; see bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..core.errors import InvalidInputError
from ..core.validation import check_int
from . import hugepages


@dataclass(frozen=True)
class HnswParams:
    """HNSW settings: ``M`` links per node, ``ef_construction`` build beam, ``ef_search`` query beam."""

    M: int = 16
    ef_construction: int = 200
    ef_search: int = 64

    def __post_init__(self) -> None:
        check_int(self.M, "M", "HnswParams", 2, 256)
        check_int(self.ef_construction, "ef_construction", "HnswParams", 4, 4096)
        check_int(self.ef_search, "ef_search", "HnswParams", 1, 10_000)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> HnswParams:
        data = data or {}
        unknown = set(data) - {"M", "ef_construction", "ef_search"}
        if unknown:
            raise InvalidInputError(f"Unknown HNSW parameter(s) {sorted(unknown)}; known: M, ef_construction, ef_search.")
        return cls(**data)


#: a distance's score, higher is better, is ``SCORE_OFFSET[metric] - distance``: cosine and dot
#: similarity (``1 - d``), negative Euclidean distance (``0 - d``). The one place a distance
#: becomes a score (:func:`to_scores`, and the single-query hits through it)
SCORE_OFFSET = {"cosine": 1.0, "dot": 1.0, "l2": 0.0}


def to_scores(distances: np.ndarray | list[float], metric: str) -> np.ndarray | list[float]:
    """Scores where higher is better (see :data:`SCORE_OFFSET`; a list in, a list out: the
    single-query path's)."""
    offset = SCORE_OFFSET[metric]
    if isinstance(distances, list):
        return [offset - d for d in distances]
    return offset - distances


def exact_distances(
    matrix: np.ndarray, queries: np.ndarray, metric: str, norms: np.ndarray | None = None, unit: bool = False
) -> np.ndarray:
    """(n_queries, n) distances under the index convention, computed with numpy; one 1-D
    query gives (n,) (through ``matrix.dot``: the ``@`` operator costs 1.4 us more a call on
    a short matrix here, a third of a 111-row scan).

    ``unit=True`` says every row and query has unit norm (a normalized space), so cosine
    needs no norms.
    """
    one = queries.ndim == 1
    sims = matrix.dot(queries) if one else queries @ matrix.T
    if metric == "l2":
        sq = np.einsum("ij,ij->i", matrix, matrix) if norms is None else norms**2
        qq = np.einsum("...j,...j->...", queries, queries)
        return np.sqrt(np.maximum(sq - 2.0 * sims + (qq if one else qq[:, None]), 0.0))
    if metric == "cosine" and not unit:
        n = np.maximum(np.linalg.norm(matrix, axis=1) if norms is None else norms, 1e-30)
        qn = np.maximum(np.linalg.norm(queries, axis=-1), 1e-30)
        sims = sims / (n * qn if one else n[None, :] * qn[:, None])
    return 1.0 - sims


#: up to this many scores :func:`largest_k` sorts them all (2 us against 4 us at 111 scores)
SORT_ALL_BELOW = 256
#: from this many scores on, :func:`largest_k` selects through a sampled threshold
SAMPLED_SELECT_FROM = 1_024
_SAMPLE_STEP = 16


def _sample_rank(k: int) -> int:
    """Which largest of the sample (every ``_SAMPLE_STEP``-th score) :func:`largest_k` takes
    as its threshold. The number of the true top ``k`` in the sample is binomial (mean
    ``k / 16``); the threshold misses (fewer than ``k`` reach it, a full selection follows)
    when the sample holds this many of them: the mean plus three standard deviations plus
    three keeps that near 1 in 4,000 (k 10: the 5th largest, ~80 candidates; k 100: the
    16th). (The 2nd largest, ``k // 16 + 2``, missed on 9-11% of real queries at k 10 and
    25-30% at k 100: each a full selection, 9 us at 1,031 scores.)"""
    mean = k / _SAMPLE_STEP
    return int(mean + 3.0 * math.sqrt(mean) + 3.0)


def largest_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest of a 1-D array, largest first (exact; ties in any order).

    On a long array a full selection (``argpartition``: ~9 ns a score, 90 us for 10,000) costs
    more than the matrix-vector product that made the scores, so it first takes a threshold
    from every 16th score (the sample's :func:`_sample_rank`-th largest: about 16 times that
    many scores reach it), keeps the scores at or above it in one comparison pass and selects among
    those; when fewer than ``k`` reach it, the full selection answers. Array methods, not
    numpy's functions: ``np.argsort(a)`` costs 0.9 us more than ``a.argsort()`` here (its
    dispatch), as much as sorting 111 scores."""
    m = scores.shape[0]
    if k >= m:
        return scores.argsort(kind="stable")[::-1]
    if m <= SORT_ALL_BELOW:  # one sort of a short array costs less than a selection and a sort
        return scores.argsort()[: -k - 1 : -1]
    if m >= SAMPLED_SELECT_FROM and k * 4 * _SAMPLE_STEP <= m:
        sample = scores[::_SAMPLE_STEP].copy()
        r = len(sample) - _sample_rank(k)
        sample.partition(r)
        cand = (scores >= sample[r]).nonzero()[0]
        if len(cand) >= k:
            sub = scores[cand]
            part = sub.argpartition(len(sub) - k)[len(sub) - k:]
            return cand[part[sub[part].argsort(kind="stable")[::-1]]]
    part = scores.argpartition(m - k)[m - k:]
    return part[scores[part].argsort(kind="stable")[::-1]]


_ONE = np.float32(1.0)


def nearest_rows(
    matrix: np.ndarray, query: np.ndarray, k: int, metric: str, norms: np.ndarray | None = None, unit: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """One query's (``query``: shape (dim,)) ``min(k, n)`` nearest rows of ``matrix``: their
    positions and float32 distances, best first."""
    if metric == "dot" or (metric == "cosine" and unit):  # similarities straight from one gemv
        sims = matrix.dot(query)
        pos = largest_k(sims, k)
        d = _ONE - sims[pos]
    else:
        d = exact_distances(matrix, query, metric, norms, unit)
        pos = largest_k(-d, k)
        d = d[pos]
    return pos, d if d.dtype == np.float32 else d.astype(np.float32)


def exact_nearest(
    matrix: np.ndarray, labels: np.ndarray, query: np.ndarray, k: int, metric: str,
    norms: np.ndarray | None = None, unit: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_rows` as the rows' ``labels`` (1-D) and float32 distances."""
    pos, d = nearest_rows(matrix, query, k, metric, norms, unit)
    return labels[pos], d


def exact_topk(
    matrix: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int, metric: str,
    norms: np.ndarray | None = None, unit: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    n = matrix.shape[0]
    if queries.shape[0] == 1 and n >= k:  # one query (the common case), without the batch's bookkeeping
        found, dists = exact_nearest(matrix, labels, queries[0], k, metric, norms, unit)
        return found[None], dists[None]
    out_l = np.full((queries.shape[0], k), -1, dtype=np.int64)
    out_d = np.full((queries.shape[0], k), np.inf, dtype=np.float32)
    if n == 0:
        return out_l, out_d
    kk = min(k, n)
    for start in range(0, queries.shape[0], 256):
        d = exact_distances(matrix, queries[start : start + 256], metric, norms, unit)
        if kk < n:
            part = np.argpartition(d, kk - 1, axis=1)[:, :kk]
        else:
            part = np.broadcast_to(np.arange(n), (d.shape[0], n))
        pd = np.take_along_axis(d, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
        out_l[start : start + d.shape[0], :kk] = labels[idx]
        out_d[start : start + d.shape[0], :kk] = np.take_along_axis(pd, order, axis=1)
    return out_l, out_d


def neighbour_arrays(found: list[list[tuple[str, float]]], ids: list[str], which, k: int) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """The neighbour graph's arrays from each record's (id, distance) results, best first:
    positions in ``ids`` (-1 where fewer were found) and distances, the record itself and ids
    outside ``ids`` left out, ``k`` per row."""
    pos_of = {i: n for n, i in enumerate(ids)}
    m = len(found)
    indices = np.full((m, k), -1, dtype=np.int64)
    distances = np.full((m, k), np.inf, dtype=np.float32)
    for r, pairs in enumerate(found):
        got = [(p, d) for p, d in ((pos_of.get(i, -1), d) for i, d in pairs) if p >= 0 and p != which[r]][:k]
        for c, (p, d) in enumerate(got):
            indices[r, c], distances[r, c] = p, d
    return indices, distances


def _level0_bytes(path: str) -> int:
    """The size of the level-0 block that loading an hnswlib file allocates: its header's
    capacity times its bytes per element (0 for a file too short to say)."""
    with open(path, "rb") as f:
        head = f.read(32)
    if len(head) < 32:
        return 0
    _, capacity, _, per_element = struct.unpack("<4Q", head)
    return capacity * per_element


class AnnIndex(ABC):
    """What the store needs from an ANN library."""

    metric: str
    dim: int

    @abstractmethod
    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def remove(self, labels: np.ndarray) -> None: ...

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, *, ef: int | None = None, allowed: Callable[[int], bool] | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def save(self, path: str) -> None: ...


class HnswIndex(AnnIndex):
    """hnswlib, with deletions by marking and reuse of deleted slots."""

    SPACES = {"cosine": "cosine", "dot": "ip", "l2": "l2"}

    def __init__(self, dim: int, metric: str, params: HnswParams = HnswParams(), capacity: int = 1024,
                 huge_pages: bool = True):
        import hnswlib

        self.dim, self.metric, self.params = dim, metric, params
        self.huge_pages, self.huge_ranges = huge_pages, []
        self._index = hnswlib.Index(space=self.SPACES[metric], dim=dim)
        capacity = max(capacity, 16)
        with self._level0_block(self._block_bytes(capacity), written=False):
            self._index.init_index(
                max_elements=capacity, M=params.M, ef_construction=params.ef_construction,
                random_seed=100, allow_replace_deleted=True,
            )
        self._index.set_ef(params.ef_search)
        self._ef = self._ef_default = params.ef_search
        self._live = 0

    @classmethod
    def load(cls, path: str, dim: int, metric: str, params: HnswParams, live: int,
             huge_pages: bool = True) -> HnswIndex:
        import hnswlib

        self = cls.__new__(cls)
        self.dim, self.metric, self.params = dim, metric, params
        self.huge_pages, self.huge_ranges = huge_pages, []
        self._index = hnswlib.Index(space=cls.SPACES[metric], dim=dim)
        with self._level0_block(_level0_bytes(path), written=True):
            self._index.load_index(path, allow_replace_deleted=True)
        if self._index.dim != dim:
            raise ValueError(f"index dimension {self._index.dim} != {dim}")
        self._index.set_ef(params.ef_search)
        self._ef = self._ef_default = params.ef_search
        self._live = int(live)
        return self

    def __len__(self) -> int:
        return self._live

    def _block_bytes(self, capacity: int) -> int:
        """hnswlib's level-0 block for ``capacity`` vectors: each its floats, 2M links, their count, a label."""
        return capacity * (4 * self.dim + 8 * self.params.M + 12)

    @contextlib.contextmanager
    def _level0_block(self, size: int, written: bool):
        """Around hnswlib allocating its level-0 block of ``size`` bytes (a new index, a load,
        a resize): the block's huge pages, when on and the block is large enough
        (:data:`.hugepages.WATCH_FROM`). A ``written`` block (loaded, or moved by a resize) is
        collapsed in the background; a new one gets them as vectors are added. ``huge_ranges``
        is then the current block's (the old one is freed)."""
        with hugepages.NewMemory(self.huge_pages and size >= hugepages.WATCH_FROM) as new:
            yield
        self.huge_ranges = hugepages.advise(new.regions, collapse=written)

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        if len(labels) == 0:
            return
        needed = self._index.element_count + len(labels)
        cap = self._index.get_max_elements()
        if needed > cap:
            cap = max(needed, int(cap * 1.5) + 1024)
            with self._level0_block(self._block_bytes(cap), written=True):
                self._index.resize_index(cap)
        self._index.add_items(vectors, np.asarray(labels, dtype=np.int64), num_threads=-1, replace_deleted=True)
        self._live += len(labels)

    def remove(self, labels: np.ndarray) -> None:
        for label in np.asarray(labels, dtype=np.int64).tolist():
            try:
                self._index.mark_deleted(label)
            except RuntimeError:  # not in the index (added and deleted before it was loaded)
                continue
            self._live -= 1

    def search(self, queries, k, *, ef=None, allowed=None):
        nq = queries.shape[0]
        out_l = np.full((nq, k), -1, dtype=np.int64)
        out_d = np.full((nq, k), np.inf, dtype=np.float32)
        kk = min(k, self._live)
        if kk == 0:
            return out_l, out_d
        ef_now = max(ef or self.params.ef_search, kk)
        if ef_now != self._ef:
            self._index.set_ef(ef_now)
            self._ef = ef_now
        while True:
            try:
                labels, dists = self._index.knn_query(queries, k=kk, num_threads=-1 if nq > 1 else 1, filter=allowed)
                break
            except RuntimeError:
                # hnswlib could not find kk results (deleted or filtered nodes): fewer results
                if kk == 1:
                    return out_l, out_d
                kk = max(1, kk // 2)
        out_l[:, :kk] = labels
        d = dists.astype(np.float32)
        if self.metric == "l2":
            d = np.sqrt(np.maximum(d, 0.0))
        out_d[:, :kk] = d
        return out_l, out_d

    def search_one(self, query: np.ndarray, k: int, ef: int | None = None) -> tuple[list[int], list[float]] | None:
        """One 1-D query, no filter, least overhead: lists; None when fewer than min(k, live) are found."""
        kk = k if k < self._live else self._live
        if kk == 0:
            return [], []
        ef = ef or self._ef_default
        if ef < kk:
            ef = kk
        if ef != self._ef:
            self._index.set_ef(ef)
            self._ef = ef
        try:
            labels, dists = self._index.knn_query(query, k=kk, num_threads=1)
        except RuntimeError:
            return None
        if self.metric == "l2":
            return labels[0].tolist(), np.sqrt(np.maximum(dists[0], 0.0)).tolist()
        return labels[0].tolist(), dists[0].tolist()

    def nearest(self, query: np.ndarray, k: int, ef: int,
                allowed: Callable[[int], bool] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """One 1-D query's ``min(k, live)`` nearest (passing ``allowed``): 1-D labels (int64)
        and distances (float32), best first; None when the walk found fewer. The planner's
        single-query plans: no batch bookkeeping."""
        kk = min(k, self._live)
        if kk == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if ef != self._ef:
            self._index.set_ef(ef)
            self._ef = ef
        try:
            labels, dists = self._index.knn_query(query, k=kk, num_threads=1, filter=allowed)
        except RuntimeError:
            return None
        d = dists[0]
        if self.metric == "l2":
            d = np.sqrt(np.maximum(d, 0.0))
        return labels[0].view(np.int64), d

    def save(self, path: str) -> None:
        self._index.save_index(path)

