"""Near-duplicate detection: all pairs above a cosine threshold, found through the ANN index.

Candidate pairs come from each record's nearest neighbours in the collection's own HNSW
index (``n`` queries, never an ``n x n`` matrix); each candidate's cosine similarity is
then computed exactly from the stored vectors. A record whose ``k`` neighbours are all
above the threshold may have more duplicates than ``k``: it is asked again with a larger
``k`` until its list ends below the threshold (or ``max_k`` is reached). Pairs are joined
into groups by connected components.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..collections.graph import neighbors_of, record_arrays, require_records
from ..core.validation import check_choice, check_float, check_int

Keep = Literal["first", "longest", "shortest"]


@dataclass(frozen=True)
class DuplicateGroup:
    """Records that are near-duplicates of each other (linked by pairs above the threshold)."""

    ids: list[str]
    keep: str
    min_similarity: float  # the weakest link that joined the group

    @property
    def remove(self) -> list[str]:
        return [i for i in self.ids if i != self.keep]

    def to_dict(self) -> dict:
        return {"ids": self.ids, "keep": self.keep, "remove": self.remove, "min_similarity": self.min_similarity}


@dataclass(frozen=True)
class DuplicateReport:
    threshold: float
    records: int
    pairs: int
    groups: list[DuplicateGroup] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def duplicates(self) -> list[str]:
        """Ids that :func:`remove_duplicates` would delete (all but one per group)."""
        return [i for g in self.groups for i in g.remove]

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "records": self.records, "pairs": self.pairs,
                "groups": [g.to_dict() for g in self.groups], "duplicates": len(self.duplicates),
                "seconds": round(self.seconds, 3)}


def find_duplicates(
    col, threshold: float = 0.95, *, k: int = 10, where: dict | None = None, keep: Keep = "first",
    exact: bool = False, max_k: int = 1_000,
) -> DuplicateReport:
    """Groups of records whose vectors have cosine similarity >= ``threshold``.

    ``keep`` picks the record each group keeps: the first stored, or the one with the
    longest/shortest document. ``exact=True`` finds candidates by an exact scan (slow;
    the reference the index is tested against).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    threshold = check_float(threshold, "threshold", "find_duplicates", -1.0, 1.0)
    k = check_int(k, "k", "find_duplicates", 1, 1_000)
    max_k = check_int(max_k, "max_k", "find_duplicates", k, 10_000)
    check_choice(keep, "keep", "find_duplicates", ("first", "longest", "shortest"))
    t0 = time.perf_counter()
    rec = record_arrays(col, where)
    n = len(rec)
    require_records(rec, col, "find_duplicates")
    if n < 2:
        return DuplicateReport(threshold, n, 0, [], time.perf_counter() - t0)
    norms = np.maximum(np.linalg.norm(rec.vectors, axis=1), 1e-12)
    rows, cols, sims = [], [], []
    which = np.arange(n)
    kk = min(k, n - 1)
    while len(which):
        idx, dist = neighbors_of(col, rec, which, kk, where, exact=exact)
        src = np.repeat(which, kk)
        dst = idx.ravel()
        # the index's float32 distances pick the candidates near the threshold; their
        # cosine is then computed from the stored vectors
        near = (dst >= 0) & (_approx_cosine(dist.ravel(), col.spec.metric) >= threshold - 1e-3)
        src, dst = src[near], dst[near]
        s = (rec.vectors[src] * rec.vectors[dst]).sum(axis=1) / (norms[src] * norms[dst])
        hit = s >= threshold
        rows.append(src[hit])
        cols.append(dst[hit])
        sims.append(s[hit])
        # records whose every neighbour is a duplicate may have more: ask again, wider
        per_row = np.zeros(len(which), dtype=np.int64)
        np.add.at(per_row, np.searchsorted(which, src[hit]), 1)
        full = per_row >= kk
        if kk >= min(max_k, n - 1):
            break
        which = which[full]
        kk = min(kk * 4, max_k, n - 1)
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    s = np.concatenate(sims)
    if not len(r):
        return DuplicateReport(threshold, n, 0, [], time.perf_counter() - t0)
    n_pairs = len(np.unique(np.minimum(r, c) * n + np.maximum(r, c)))
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    n_comp, label = connected_components(graph, directed=False)
    sizes = np.bincount(label, minlength=n_comp)
    weakest = np.full(n_comp, np.inf)
    np.minimum.at(weakest, label[r], s)
    in_group = np.flatnonzero(sizes[label] > 1)
    in_group = in_group[np.argsort(label[in_group], kind="stable")]  # by component, store order within
    bounds = np.flatnonzero(np.diff(label[in_group])) + 1
    members = {int(label[p[0]]): p.tolist() for p in np.split(in_group, bounds)}
    groups = []
    for comp, pos in members.items():
        kept = _pick(pos, rec.documents, keep)
        groups.append(DuplicateGroup([rec.ids[i] for i in pos], rec.ids[kept], float(weakest[comp])))
    groups.sort(key=lambda g: (-len(g.ids), g.keep))
    return DuplicateReport(threshold, n, n_pairs, groups, time.perf_counter() - t0)


def _approx_cosine(dist: np.ndarray, metric: str) -> np.ndarray:
    """Cosine from the index's distances where the metric allows it; l2/dot rows all pass."""
    return 1.0 - dist if metric == "cosine" else np.full(dist.shape, np.inf)


def _pick(pos: list[int], documents: list, keep: str) -> int:
    if keep == "first":
        return pos[0]
    lengths = [len(documents[i] or "") for i in pos]
    best = max(lengths) if keep == "longest" else min(lengths)
    return pos[lengths.index(best)]


def remove_duplicates(col, report: DuplicateReport) -> int:
    """Delete all but the kept record of each group. Returns how many were deleted."""
    ids = report.duplicates
    return col.delete(ids=ids) if ids else 0
