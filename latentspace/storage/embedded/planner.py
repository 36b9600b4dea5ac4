"""The query plan of filtered and unfiltered vector search, and the hits it returns.

A filter's matching rows (row ids and vectors) are cached until the next write. Up to
``EXACT_FILTER_LIMIT`` matches are scanned exactly (measured faster than the HNSW walk
restricted to them below that); more are searched in HNSW restricted to them, and a query
whose walk returns fewer than ``min(k, matches)`` falls back to the exact scan.
"""

from __future__ import annotations

import numpy as np

from ..filter import Node
from ..hits import Hit, make_hits
from .sqlfilter import compile_sql

#: filtered vector search scans the matching rows exactly up to this many matches,
#: above it searches the HNSW index restricted to them (measured in bench/search.py)
EXACT_FILTER_LIMIT = 3_000


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
        if exact or len(rids) <= max(EXACT_FILTER_LIMIT, k):
            return self.exact(qvecs, k, where)
        index = self.index()
        labels, dists = index.search(qvecs, k, ef=max(ef or index.params.ef_search, k), allowed=self.allowed(where))
        want = min(k, len(rids))
        short = ((labels >= 0).sum(axis=1) < want).nonzero()[0]
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
