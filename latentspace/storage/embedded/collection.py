"""One collection of the embedded store: its rows in SQLite, read, written and searched.

SQLite is the source of truth. The HNSW index and the exact-search matrix are derived:
each knows the last change sequence it contains and catches up by replaying the change
log (see the parts this class is made of, one module each).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.errors import NotFoundError
from ...core.space import SpaceSpec
from ...core.validation import canonical_json
from ..base import Capabilities, CollectionBackend
from ..filter import Node
from ..hits import Hit
from ..index import SCORE_OFFSET, HnswIndex, HnswParams, exact_topk, to_scores
from .annfiles import IndexFiles
from .changelog import ChangeLog
from .matrix import ExactMatrix, _Matrix
from .planner import FilterState, PlanCosts, Planner
from .rowcache import Row, RowCache, chunks
from .sqlfilter import compile_sql
from .sqlite import fts_table, read_all, write_txn

if TYPE_CHECKING:
    from .catalog import EmbeddedStore

_TOKEN = re.compile(r"\w+", re.UNICODE)


def _as_lists(labels: np.ndarray, dists: np.ndarray) -> list[list[tuple[int, float]]]:
    out = []
    for lrow, drow in zip(labels, dists):
        keep = lrow >= 0
        out.append(list(zip(lrow[keep].tolist(), drow[keep].tolist())))
    return out


class CollectionStorage(ChangeLog, IndexFiles, ExactMatrix, RowCache, Planner, CollectionBackend):
    """The embedded backend of one collection: its rows in SQLite, its indexes derived.

    Every public method takes the store's lock: one thread at a time on the connection
    and the indexes. Its parts, one concern a module: the change log (:mod:`.changelog`),
    the HNSW index files (:mod:`.annfiles`), the exact matrix (:mod:`.matrix`), the row
    cache (:mod:`.rowcache`) and the query plan (:mod:`.planner`)."""

    capabilities = Capabilities()

    def __init__(self, store: EmbeddedStore, cid: int, name: str, spec: SpaceSpec, params: HnswParams):
        self.store, self.cid, self.name, self.spec, self.params = store, cid, name, spec, params
        self._lock = store._lock  # the store's (read here on every search: one object less to reach)
        self._score_offset = SCORE_OFFSET[spec.metric]
        self.fts = fts_table(cid)
        self._index: HnswIndex | None = None
        self._index_seq = 0
        self._index_saved_seq = -1
        self._disk_seq: int | None = None  # the seq of the index file on disk, read once (see annfiles)
        self._checkpoint = None  # a background index save in progress
        self._matrix: _Matrix | None = None
        self._generation = store._generation
        self._filters: OrderedDict[Node, FilterState] = OrderedDict()  # per filter, until the next write
        self.clear_row_cache()
        self._plan_costs = PlanCosts()
        self._rid_of: dict[str, int] | None = None  # id -> rid for the neighbour graph, until the next write
        self._synced_seq = -1  # the change sequence the per-filter caches and the id map hold

    @property
    def conn(self) -> sqlite3.Connection:
        return self.store._connection()

    def _q(self, sql: str, params: Any = ()) -> list:
        return read_all(self.conn, sql, params, self.store.path, self.store.lock_timeout)

    def change_seq(self) -> int | None:
        return self.last_seq()

    def last_seq(self) -> int:
        return self._q("SELECT COALESCE(MAX(seq), 0) FROM changes WHERE collection_id = ?", (self.cid,))[0][0]

    def check_exists(self) -> None:
        if not self._q("SELECT 1 FROM collections WHERE id = ?", (self.cid,)):
            raise NotFoundError(f"Collection {self.name!r} was deleted from the store {self.store.path}.")

    def count(self, where: Node | None = None) -> int:
        with self.store._lock:
            return self._count(where)

    def _count(self, where: Node | None = None) -> int:
        if where is None:
            row = self._q("SELECT count FROM collections WHERE id = ?", (self.cid,))
            if not row:
                self.check_exists()
            return int(row[0][0])
        sql, params = compile_sql(where)
        return int(self._q(f"SELECT COUNT(*) FROM records WHERE collection_id = ? AND {sql}", [self.cid, *params])[0][0])

    def count_with_documents(self) -> int:
        with self.store._lock:
            return int(self._q("SELECT COUNT(*) FROM records WHERE collection_id = ? AND document IS NOT NULL "
                           "AND document != ''", (self.cid,))[0][0])

    def existing(self, ids: list[str]) -> dict[str, tuple[int, str, str | None]]:
        """id -> (rid, content_hash, document) for the ids already stored."""
        found: dict[str, tuple[int, str, str | None]] = {}
        for part in chunks(ids):
            marks = ",".join("?" * len(part))
            for rid, rec_id, h, doc in self._q(
                f"SELECT rid, id, content_hash, document FROM records WHERE collection_id = ? AND id IN ({marks})",
                [self.cid, *part],
            ):
                found[rec_id] = (rid, h, doc)
        return found

    def write(
        self,
        ids: list[str],
        vectors: np.ndarray,
        documents: list[str | None],
        metadatas: list[dict],
        hashes: list[str],
        *,
        replace: bool,
    ) -> tuple[int, int]:
        """Insert (or replace) a batch atomically. Returns (inserted, replaced)."""
        with self.store._lock:
            return self._write(ids, vectors, documents, metadatas, hashes, replace)

    def _write(self, ids, vectors, documents, metadatas, hashes, replace) -> tuple[int, int]:
        from ...core.errors import AlreadyExistsError

        conn = self.conn
        with write_txn(conn, self.store.path, self.store.lock_timeout):
            self.check_exists()
            prev_seq = self.last_seq()
            old = {}
            for part in chunks(ids):
                marks = ",".join("?" * len(part))
                for rid, rec_id in conn.execute(
                    f"SELECT rid, id FROM records WHERE collection_id = ? AND id IN ({marks})", [self.cid, *part]
                ):
                    old[rec_id] = rid
            if old and not replace:
                taken = sorted(old)[:5]
                raise AlreadyExistsError(
                    f"{len(old)} id(s) already exist in collection {self.name!r}, e.g. {taken}. Nothing was added: "
                    "use upsert() to replace records, or delete them first."
                )
            removed = list(old.values())
            seq_row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
            next_seq = (seq_row[0] if seq_row else 0) + 1
            rid_row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
            next_rid = (rid_row[0] if rid_row else 0) + 1
            changes: list[tuple[int, int, str, int]] = []
            if removed:
                self._delete_rows(conn, removed)
                for rid in removed:
                    changes.append((next_seq, self.cid, "del", rid))
                    next_seq += 1
            rids = np.arange(next_rid, next_rid + len(ids), dtype=np.int64)
            conn.executemany(
                "INSERT INTO records (rid, collection_id, id, vector, document, metadata, content_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (int(rids[i]), self.cid, ids[i], vectors[i].tobytes(), documents[i],
                     canonical_json(metadatas[i]), hashes[i])
                    for i in range(len(ids))
                ),
            )
            conn.executemany(
                f"INSERT INTO {self.fts} (rowid, document) VALUES (?, ?)",
                ((int(rids[i]), documents[i]) for i in range(len(ids)) if documents[i]),
            )
            for rid in rids.tolist():
                changes.append((next_seq, self.cid, "add", rid))
                next_seq += 1
            conn.executemany("INSERT INTO changes (seq, collection_id, op, rid) VALUES (?, ?, ?, ?)", changes)
            conn.execute(
                "UPDATE collections SET count = count + ? WHERE id = ?", (len(ids) - len(removed), self.cid)
            )
            new_seq = next_seq - 1
        self._after_write(prev_seq, new_seq, removed, rids, vectors)
        self._maybe_checkpoint(new_seq)
        return len(ids) - len(removed), len(removed)

    def _delete_rows(self, conn: sqlite3.Connection, rids: list[int]) -> None:
        for part in chunks(rids):
            marks = ",".join("?" * len(part))
            conn.execute(f"DELETE FROM records WHERE rid IN ({marks})", part)
            conn.execute(f"DELETE FROM {self.fts} WHERE rowid IN ({marks})", part)

    def delete(self, ids: list[str] | None, where: Node | None) -> int:
        with self.store._lock:
            return self._delete(ids, where)

    def _delete(self, ids: list[str] | None, where: Node | None) -> int:
        conn = self.conn
        with write_txn(conn, self.store.path, self.store.lock_timeout):
            self.check_exists()
            prev_seq = self.last_seq()
            rids: list[int] = []
            if ids is not None:
                for part in chunks(ids):
                    marks = ",".join("?" * len(part))
                    sql = f"SELECT rid FROM records WHERE collection_id = ? AND id IN ({marks})"
                    params: list[Any] = [self.cid, *part]
                    if where is not None:
                        wsql, wparams = compile_sql(where)
                        sql += f" AND {wsql}"
                        params += wparams
                    rids.extend(r[0] for r in conn.execute(sql, params))
            else:
                wsql, wparams = compile_sql(where)
                rids = [r[0] for r in conn.execute(
                    f"SELECT rid FROM records WHERE collection_id = ? AND {wsql}", [self.cid, *wparams])]
            if not rids:
                return 0
            self._delete_rows(conn, rids)
            conn.executemany(
                "INSERT INTO changes (collection_id, op, rid) VALUES (?, 'del', ?)", ((self.cid, r) for r in rids)
            )
            conn.execute("UPDATE collections SET count = count - ? WHERE id = ?", (len(rids), self.cid))
            new_seq = self.last_seq()
        self._after_write(prev_seq, new_seq, rids, np.zeros(0, np.int64), None)
        self._maybe_checkpoint(new_seq)
        return len(rids)

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file (best effort: readers may hold it)."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _keyword(self, text: str, k: int, where: Node | None = None) -> list[tuple[int, float]]:
        self.sync()
        tokens = _TOKEN.findall(text.lower())[:64]
        if not tokens:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in dict.fromkeys(tokens))
        wsql, wparams = compile_sql(where)
        rows = self._q(
            f"SELECT {self.fts}.rowid, bm25({self.fts}) AS s FROM {self.fts} "
            f"JOIN records ON records.rid = {self.fts}.rowid "
            f"WHERE {self.fts} MATCH ? AND records.collection_id = ? AND {wsql} ORDER BY s LIMIT ?",
            [match, self.cid, *wparams, k],
        )
        return [(rid, -float(s)) for rid, s in rows]

    def vectors(self, ids: list[str]) -> tuple[list[str], np.ndarray]:
        """The stored vectors of the records ``ids`` that exist, in the order asked: (those
        ids, their vectors)."""
        with self.store._lock:
            found, _, vectors = self._vectors_by_id(ids)
            return found, vectors

    def _vectors_by_id(self, ids: list[str]) -> tuple[list[str], list[int], np.ndarray]:
        """``(ids, rids, vectors)`` of the records with these ids that exist, in the order
        asked (vectors only: no document or metadata is read or parsed)."""
        self.sync()
        found: dict[str, tuple[int, bytes]] = {}
        for part in chunks(ids):
            marks = ",".join("?" * len(part))
            for rid, rec_id, blob in self._q(
                f"SELECT rid, id, vector FROM records WHERE collection_id = ? AND id IN ({marks})", [self.cid, *part]
            ):
                found[rec_id] = (rid, blob)
        present = [i for i in ids if i in found]
        if not present:
            return [], [], np.zeros((0, self.spec.dim), dtype=np.float32)
        vectors = np.frombuffer(b"".join(found[i][1] for i in present), dtype=np.float32).reshape(len(present), -1)
        return present, [found[i][0] for i in present], vectors

    def ids(self) -> list[str]:
        with self.store._lock:
            self.sync()
            return [r[0] for r in self._q("SELECT id FROM records WHERE collection_id = ? ORDER BY rid", (self.cid,))]

    def rows(self, ids: list[str] | None, where: Node | None, limit: int | None, offset: int,
             with_vectors: bool) -> list[Row]:
        with self.store._lock:
            return self._rows(ids, where, limit, offset, with_vectors)

    def _rows(self, ids, where, limit, offset, with_vectors) -> list[Row]:
        self.sync()
        cols = "rid, id, document, metadata, content_hash" + (", vector" if with_vectors else "")
        wsql, wparams = compile_sql(where)

        def make(r):
            vec = np.frombuffer(r[5], dtype=np.float32).copy() if with_vectors else None
            return Row(r[0], r[1], r[2], json.loads(r[3]), vec, r[4])

        if ids is not None:
            found: dict[str, Row] = {}
            for part in chunks(ids):
                marks = ",".join("?" * len(part))
                for r in self._q(
                    f"SELECT {cols} FROM records WHERE collection_id = ? AND id IN ({marks}) AND {wsql}",
                    [self.cid, *part, *wparams],
                ):
                    found[r[1]] = make(r)
            ordered = [found[i] for i in ids if i in found]
            return ordered[offset : None if limit is None else offset + limit]
        sql = f"SELECT {cols} FROM records WHERE collection_id = ? AND {wsql} ORDER BY rid LIMIT ? OFFSET ?"
        return [make(r) for r in self._q(sql, [self.cid, *wparams, -1 if limit is None else limit, offset])]

    def hashes(self, ids: list[str]) -> dict[str, str]:
        with self.store._lock:
            return {i: h for i, (_, h, _) in self.existing(ids).items()}

    def flush(self) -> None:
        with self.store._lock:
            self.index()
            self.save_index()
            self.checkpoint()

    def search_one(self, vector: np.ndarray, k: int, ef: int | None, where: Node | None = None) -> list[Hit] | None:
        """One query through the index: the common case, lean (the caller checked the vector).
        None hands anything unusual (too few results) to :meth:`search`."""
        with self._lock:
            if where is not None:
                return self.filtered_one(vector, k, ef, where)
            index = self._index
            if index is None or self.store._poll() != self._generation:
                index = self.index()
            found = index.search_one(vector, k, ef)
            if found is None:
                return None  # the general path falls back to an exact scan
            rids, dists = found
            return self.hits_for(rids, dists)

    def search(self, queries: np.ndarray, k: int, where: Node | None, *, exact: bool, ef: int | None,
               with_vectors: bool) -> list[list[Hit]]:
        with self.store._lock:
            labels, dists = self._vector_arrays(queries, k, where, exact=exact, ef=ef)
            if not with_vectors:
                return self._hits_from_arrays(labels, dists)
            lists = _as_lists(labels, dists)
            return self._hits([[(rid, s, d, None) for (rid, d), s in
                                zip(lst, to_scores(np.asarray([d for _, d in lst], dtype=np.float64), self.spec.metric))]
                               for lst in lists], True)

    def keyword(self, texts: list[str], k: int, where: Node | None, *, with_vectors: bool) -> list[list[Hit]]:
        with self.store._lock:
            return self._hits([[(rid, s, None, None) for rid, s in self._keyword(t, k, where)] for t in texts],
                              with_vectors)

    def search_among(self, ids: list[str], queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Exact search restricted to the records ``ids`` (a re-rank of candidates)."""
        with self.store._lock:
            _, rids, vectors = self._vectors_by_id(ids)
            labels, dists = exact_topk(vectors, np.asarray(rids, dtype=np.int64), queries, k, self.spec.metric,
                                       unit=self.spec.normalize)
            return self._hits_from_arrays(labels, dists)

    def neighbors(self, ids: list[str], vectors: np.ndarray, which: np.ndarray, k: int, where: Node | None, *,
                  exact: bool = False, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest others of the records at positions ``which`` of ``ids`` (whose
        vectors are ``vectors``): (positions in ``ids``, or -1; the metric's distances)."""
        with self.store._lock:
            n, m = len(ids), len(which)
            self.sync()
            if self._rid_of is None:
                self._rid_of = dict(self._q("SELECT id, rid FROM records WHERE collection_id = ?", (self.cid,)))
            rid_of = self._rid_of
            rids = np.fromiter((rid_of.get(i, -1) for i in ids), dtype=np.int64, count=n)
            order = np.argsort(rids, kind="stable")
            sorted_rids = rids[order]
            want = k + 1
            ef = max(ef or self.params.ef_search, 2 * want)
            labels = np.empty((m, want), dtype=np.int64)
            dists = np.empty((m, want), dtype=np.float32)
            step = 8_192
            for start in range(0, m, step):
                q = vectors[which[start : start + step]]
                labels[start : start + step], dists[start : start + step] = self._vector_arrays(
                    q, want, where, exact=exact, ef=ef)
        # rid -> position in ids; a rid not among them (filtered out, written meanwhile) -> -1
        at = np.minimum(np.searchsorted(sorted_rids, labels), n - 1)
        pos = np.where((labels >= 0) & (sorted_rids[at] == labels), order[at], -1)
        # drop each record itself (wherever it came: ties at distance 0 may put a duplicate
        # first) and keep the first k others
        keep = (pos >= 0) & (pos != np.asarray(which)[:, None])
        indices = np.full((m, k), -1, dtype=np.int64)
        distances = np.full((m, k), np.inf, dtype=np.float32)
        rank = np.cumsum(keep, axis=1) - 1
        r, c = np.nonzero(keep & (rank < k))
        indices[r, rank[r, c]] = pos[r, c]
        distances[r, rank[r, c]] = dists[r, c]
        return indices, distances

    def disk_bytes(self) -> int:
        total = 0
        for p in self.store.path.glob(f"idx-{self.cid}-*.hnsw"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(p)
        return total
