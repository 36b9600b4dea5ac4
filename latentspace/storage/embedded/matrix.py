"""All live vectors of a collection as one array, for exact search (the reference)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import numpy as np

from ..filter import Node
from ..index import exact_topk
from .sqlite import translate


@dataclass
class _Matrix:
    """All live vectors of a collection as one array, for exact search."""

    seq: int
    rids: np.ndarray
    data: np.ndarray
    pos: dict[int, int] = field(default_factory=dict)
    n: int = 0


class ExactMatrix:
    """The exact-search matrix: built from SQLite, kept current by the change log. (A part of :class:`.collection.CollectionStorage`.)"""

    def matrix(self) -> _Matrix:
        self.sync()
        if self._matrix is None:
            conn = self.conn
            try:
                conn.execute("BEGIN")
                try:
                    seq = self.last_seq()
                    rows = conn.execute(
                        "SELECT rid, vector FROM records WHERE collection_id = ? ORDER BY rid", (self.cid,)
                    ).fetchall()
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise translate(exc, self.store.path, self.store.lock_timeout) from None
            n = len(rows)
            data = np.empty((max(n, 16), self.spec.dim), dtype=np.float32)
            if n:
                data[:n] = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(n, -1)
            rids = np.zeros(max(n, 16), dtype=np.int64)
            rids[:n] = [r[0] for r in rows]
            self._matrix = _Matrix(seq=seq, rids=rids, data=data, pos={r[0]: i for i, r in enumerate(rows)}, n=n)
        return self._matrix

    def _matrix_apply(self, removed, rids, vectors) -> None:
        m = self._matrix
        for rid in list(removed):
            i = m.pos.pop(int(rid), None)
            if i is None:
                continue
            last = m.n - 1
            if i != last:
                m.data[i] = m.data[last]
                m.rids[i] = m.rids[last]
                m.pos[int(m.rids[i])] = i
            m.n -= 1
        if len(rids):
            need = m.n + len(rids)
            if need > m.data.shape[0]:
                cap = max(need, int(m.data.shape[0] * 1.5))
                data = np.empty((cap, self.spec.dim), dtype=np.float32)
                data[: m.n] = m.data[: m.n]
                r = np.zeros(cap, dtype=np.int64)
                r[: m.n] = m.rids[: m.n]
                m.data, m.rids = data, r
            m.data[m.n : need] = vectors
            m.rids[m.n : need] = rids
            for j, rid in enumerate(np.asarray(rids).tolist()):
                m.pos[rid] = m.n + j
            m.n = need

    def exact(self, queries: np.ndarray, k: int, where: Node | None = None) -> tuple[np.ndarray, np.ndarray]:
        if where is None:
            m = self.matrix()
            return exact_topk(m.data[: m.n], m.rids[: m.n], queries, k, self.spec.metric, unit=self.spec.normalize)
        return self._scan(self.filter_state(where), queries, k)
