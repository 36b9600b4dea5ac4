"""Near-duplicate detection: all pairs above a cosine threshold, found through the ANN index.

Candidate pairs come from each record's nearest neighbours in the collection's own HNSW
index (``n`` queries, never an ``n x n`` matrix); each candidate's cosine similarity is
then computed exactly from the stored vectors. A record whose ``k`` neighbours are all
above the threshold may have more duplicates than ``k``: it is asked again with a larger
``k`` until its list ends below the threshold (or ``max_k`` is reached). Pairs are joined
into groups by connected components.

Per record (the default): rows that are chunks of one record (``metadata["source_id"]``)
count as one; two records are duplicates when every chunk of each has a duplicate chunk
in the other, so a record sharing one paragraph with another is not half-deleted.
``unit="chunk"`` compares rows as they are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..collections.chunks import UNITS, Unit, record_index
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
    """Groups of duplicate records (or rows, with ``unit="chunk"``). ``records``: how many
    were compared; ``rows``: the stored rows of each record that has several (its chunks)."""

    threshold: float
    records: int
    pairs: int
    groups: list[DuplicateGroup] = field(default_factory=list)
    seconds: float = 0.0
    unit: str = "record"
    rows: dict[str, list[str]] = field(default_factory=dict)

    @property
    def duplicates(self) -> list[str]:
        """Ids that :func:`remove_duplicates` would delete (all but one per group)."""
        return [i for g in self.groups for i in g.remove]

    def rows_to_delete(self) -> list[str]:
        """The stored rows of the duplicates: every chunk of a record."""
        return [r for i in self.duplicates for r in self.rows.get(i, [i])]

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "unit": self.unit, "records": self.records, "pairs": self.pairs,
                "groups": [g.to_dict() for g in self.groups], "duplicates": len(self.duplicates),
                "rows_to_delete": len(self.rows_to_delete()), "seconds": round(self.seconds, 3)}


def find_duplicates(
    col, threshold: float = 0.95, *, k: int = 10, where: dict | None = None, keep: Keep = "first",
    exact: bool = False, max_k: int = 1_000, unit: Unit = "record",
) -> DuplicateReport:
    """Groups of records whose vectors have cosine similarity >= ``threshold``.

    ``keep`` picks the record each group keeps: the first stored, or the one with the
    longest/shortest document. ``exact=True`` finds candidates by an exact scan (slow;
    the reference the index is tested against). ``unit="record"`` (default) compares
    records made of several chunks as wholes (see the module's docstring).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    threshold = check_float(threshold, "threshold", "find_duplicates", -1.0, 1.0)
    k = check_int(k, "k", "find_duplicates", 1, 1_000)
    max_k = check_int(max_k, "max_k", "find_duplicates", k, 10_000)
    check_choice(keep, "keep", "find_duplicates", ("first", "longest", "shortest"))
    check_choice(unit, "unit", "find_duplicates", UNITS)
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
    if unit == "record":
        index = record_index(rec.ids, rec.metadatas)
        if index.chunked:
            return _record_groups(rec, index, r, c, s, threshold, keep, t0)
    if not len(r):
        return DuplicateReport(threshold, n, 0, [], time.perf_counter() - t0, unit)
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
    return DuplicateReport(threshold, n, n_pairs, groups, time.perf_counter() - t0, unit)


def _record_groups(rec, index, r, c, s, threshold, keep, t0) -> DuplicateReport:
    """Duplicate records from duplicate chunk pairs: records A and B are duplicates when every
    chunk of A has a duplicate among B's chunks and every chunk of B among A's."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m = len(index.ids)
    of, sizes = index.of, index.sizes()
    r, c, s = np.concatenate([r, c]), np.concatenate([c, r]), np.concatenate([s, s])  # both directions
    ra, rb = of[r], of[c]
    cross = ra != rb
    r, ra, rb, s = r[cross], ra[cross], rb[cross], s[cross]
    # each (chunk, other record) once: how many of A's chunks record B covers
    covered = np.unique(r * m + rb)
    pair = of[covered // m] * m + covered % m
    keys, counts = np.unique(pair, return_counts=True)
    a, b = keys // m, keys % m
    full = counts == sizes[a]
    full_keys = set(keys[full].tolist())
    both = np.array([k for k in keys[full].tolist() if (k % m) * m + k // m in full_keys], dtype=np.int64)
    rows_of: dict[str, list[str]] = {}
    for i, rid in enumerate(rec.ids):
        rows_of.setdefault(index.ids[of[i]], []).append(rid)
    if not len(both):
        return DuplicateReport(threshold, m, 0, [], time.perf_counter() - t0, "record", {})
    pk = ra * m + rb  # the weakest chunk link of each record pair
    order = np.argsort(pk, kind="stable")
    ukeys, starts = np.unique(pk[order], return_index=True)
    weakest_pair = np.minimum.reduceat(s[order], starts)[np.searchsorted(ukeys, both)]
    a, b = both // m, both % m
    n_pairs = len(np.unique(np.minimum(a, b) * m + np.maximum(a, b)))
    n_comp, label = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(m, m)), directed=False)
    weakest = np.full(n_comp, np.inf)
    np.minimum.at(weakest, label[a], weakest_pair)
    lengths = np.zeros(m)
    np.add.at(lengths, of, [len(d or "") for d in rec.documents])
    groups = []
    for comp in np.flatnonzero(np.bincount(label, minlength=n_comp) > 1).tolist():
        pos = np.flatnonzero(label == comp).tolist()
        kept = pos[0] if keep == "first" else max(pos, key=lambda p: lengths[p] if keep == "longest" else -lengths[p])
        groups.append(DuplicateGroup([index.ids[p] for p in pos], index.ids[kept], float(weakest[comp])))
    groups.sort(key=lambda g: (-len(g.ids), g.keep))
    members = {i for g in groups for i in g.ids}
    return DuplicateReport(threshold, m, n_pairs, groups, time.perf_counter() - t0, "record",
                           {i: rows for i, rows in rows_of.items() if i in members})


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
    """Delete all but the kept record of each group (every chunk of it). Returns rows deleted."""
    ids = report.rows_to_delete()
    return col.delete(ids=ids) if ids else 0
