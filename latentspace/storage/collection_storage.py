"""One collection's rows in SQLite and its derived indexes in memory and on disk.

SQLite is the source of truth. The HNSW index and the exact-search matrix are derived:
each knows the last change sequence it contains and catches up by replaying the change
log. The index file is written beside the database as ``idx-<cid>-<seq>.hnsw`` and
committed by atomically replacing the sidecar ``idx-<cid>.json`` (sha256, seq, count);
a missing, truncated or altered file fails the check and the index is rebuilt from SQLite.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import NotFoundError
from ..core.frozen import EMPTY, FrozenDict
from ..core.io import atomic_replace, sha256_file, write_json
from ..core.space import SpaceSpec
from ..core.validation import canonical_json
from .base import Capabilities, CollectionBackend
from .filter import Node
from .hits import Hit, make_hits
from .index import HnswIndex, HnswParams, exact_topk, to_scores
from .sqlfilter import compile_sql
from .sqlite import fts_table, read_all, translate, write_txn

if TYPE_CHECKING:
    from .store import EmbeddedStore

INDEX_FORMAT = 1
ROW_CACHE_BYTES = 64 << 20  # rows (id, document, metadata) kept in memory for search results
#: filtered vector search scans the matching rows exactly up to this many matches,
#: above it searches the HNSW index restricted to them (measured in bench/search.py)
EXACT_FILTER_LIMIT = 3_000
_CHUNK = 500  # SQL variables per IN (...) list
_TOKEN = re.compile(r"\w+", re.UNICODE)


_GONE = (None, None, EMPTY)  # a row cache entry for a rid deleted meanwhile


def drop_index_files(store_path: Path, cid: int) -> None:
    """Remove a collection's derived index files (its data lives in SQLite)."""
    for p in [*store_path.glob(f"idx-{cid}-*"), store_path / f"idx-{cid}.json"]:
        with contextlib.suppress(OSError):
            p.unlink()


def _entry_of(row: Row | None) -> tuple:
    return _GONE if row is None else (row.id, row.document, row.metadata)


def _entry_bytes(entry: tuple) -> int:
    """What a row cache entry counts against ROW_CACHE_BYTES (a fixed function of the entry)."""
    rec_id, doc, meta = entry
    return 200 + len(rec_id) + len(doc or "") + (len(meta) if type(meta) is str else 64 * len(meta))


@dataclass
class Row:
    rid: int
    id: str
    document: str | None
    metadata: dict[str, Any]
    vector: np.ndarray | None = None
    content_hash: str = ""


@dataclass
class _Matrix:
    """All live vectors of a collection as one array, for exact search."""

    seq: int
    rids: np.ndarray
    data: np.ndarray
    pos: dict[int, int] = field(default_factory=dict)
    n: int = 0


def _as_lists(labels: np.ndarray, dists: np.ndarray) -> list[list[tuple[int, float]]]:
    out = []
    for lrow, drow in zip(labels, dists):
        keep = lrow >= 0
        out.append(list(zip(lrow[keep].tolist(), drow[keep].tolist())))
    return out


def _chunks(seq: list, size: int = _CHUNK):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class CollectionStorage(CollectionBackend):
    """The embedded backend of one collection: its rows in SQLite, its indexes derived.

    Every public method takes the store's lock: one thread at a time on the connection
    and the indexes."""

    capabilities = Capabilities()

    def __init__(self, store: EmbeddedStore, cid: int, name: str, spec: SpaceSpec, params: HnswParams):
        self.store, self.cid, self.name, self.spec, self.params = store, cid, name, spec, params
        self.fts = fts_table(cid)
        self._index: HnswIndex | None = None
        self._index_seq = 0
        self._index_saved_seq = -1
        self._matrix: _Matrix | None = None
        self._generation = store._generation
        self._filter_cache: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._filter_cache_bytes = 0
        self._row_cache: OrderedDict[int, tuple] = OrderedDict()
        self._allowed_cache: dict = {}
        self._row_cache_bytes = 0

    # -- plumbing -------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        return self.store._connection()

    def _q(self, sql: str, params: Any = ()) -> list:
        return read_all(self.conn, sql, params, self.store.path, self.store.lock_timeout)

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

    def sync(self) -> None:
        """Catch up with writes committed by other connections since the last call."""
        gen = self.store._poll()
        if gen == self._generation:
            return
        self._generation = gen
        self.check_exists()
        seq = self.last_seq()
        if self._index is not None and seq != self._index_seq:
            self._replay_index()
        if self._matrix is not None and seq != self._matrix.seq:
            self._replay_matrix()

    # -- writes ---------------------------------------------------------------------
    def existing(self, ids: list[str]) -> dict[str, tuple[int, str, str | None]]:
        """id -> (rid, content_hash, document) for the ids already stored."""
        found: dict[str, tuple[int, str, str | None]] = {}
        for part in _chunks(ids):
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
        from ..core.errors import AlreadyExistsError

        conn = self.conn
        with write_txn(conn, self.store.path, self.store.lock_timeout):
            self.check_exists()
            prev_seq = self.last_seq()
            old = {}
            for part in _chunks(ids):
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
        return len(ids) - len(removed), len(removed)

    def _delete_rows(self, conn: sqlite3.Connection, rids: list[int]) -> None:
        for part in _chunks(rids):
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
                for part in _chunks(ids):
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
        return len(rids)

    def _after_write(self, prev_seq, new_seq, removed, rids, vectors) -> None:
        self._filter_cache.clear()
        self._filter_cache_bytes = 0
        if self._index is not None:
            if self._index_seq == prev_seq:
                if len(removed):
                    self._index.remove(np.asarray(removed, dtype=np.int64))
                if len(rids):
                    self._index.add(rids, vectors)
                self._index_seq = new_seq
            else:
                self._replay_index()
        if self._matrix is not None:
            if self._matrix.seq == prev_seq:
                self._matrix_apply(removed, rids, vectors)
                self._matrix.seq = new_seq
            else:
                self._replay_matrix()

    # -- change replay ----------------------------------------------------------------
    def _changes_since(self, seq: int):
        return self._q(
            "SELECT c.seq, c.op, c.rid, r.vector FROM changes c LEFT JOIN records r ON r.rid = c.rid AND c.op = 'add' "
            "WHERE c.collection_id = ? AND c.seq > ? ORDER BY c.seq",
            (self.cid, seq),
        )

    def _apply_log(self, rows, remove, add) -> int:
        """Apply change rows in order, batching runs of adds and of deletes."""
        last = None
        pending_add: list[tuple[int, bytes]] = []
        pending_del: list[int] = []

        def flush():
            if pending_del:
                remove(np.asarray(pending_del, dtype=np.int64))
                pending_del.clear()
            if pending_add:
                labels = np.asarray([r for r, _ in pending_add], dtype=np.int64)
                vecs = np.frombuffer(b"".join(b for _, b in pending_add), dtype=np.float32).reshape(len(pending_add), -1)
                add(labels, vecs)
                pending_add.clear()

        for seq, op, rid, blob in rows:
            last = seq
            if op == "add":
                if pending_del:
                    flush()
                if blob is not None:
                    pending_add.append((rid, blob))
            else:
                if pending_add:
                    flush()
                pending_del.append(rid)
        flush()
        return last

    def _replay_index(self) -> None:
        rows = self._changes_since(self._index_seq)
        if rows:
            self._index_seq = self._apply_log(rows, self._index.remove, self._index.add)

    def _replay_matrix(self) -> None:
        rows = self._changes_since(self._matrix.seq)
        if rows:
            self._matrix.seq = self._apply_log(
                rows, lambda r: self._matrix_apply(r, np.zeros(0, np.int64), None),
                lambda labels, vecs: self._matrix_apply([], labels, vecs),
            )

    # -- the HNSW index -----------------------------------------------------------------
    def _sidecar(self) -> Path:
        return self.store.path / f"idx-{self.cid}.json"  # named as in drop_index_files

    def index(self) -> HnswIndex:
        """The ANN index, loaded (or rebuilt) and caught up with SQLite."""
        self.sync()
        if self._index is None:
            self._load_or_rebuild()
        return self._index

    def _load_or_rebuild(self) -> None:
        loaded = self._try_load()
        if loaded is None:
            self._rebuild()
            self.store._log(f"rebuilt index of {self.name!r} from the database ({len(self._index)} vectors)")
        else:
            self._index, self._index_seq = loaded
            self._index_saved_seq = self._index_seq
            self._replay_index()

    def _try_load(self) -> tuple[HnswIndex, int] | None:
        side = self._sidecar()
        try:
            meta = json.loads(side.read_text())
            path = self.store.path / meta["file"]
            ok = (
                meta.get("format") == INDEX_FORMAT
                and meta.get("dim") == self.spec.dim
                and meta.get("metric") == self.spec.metric
                and meta.get("params") == self.params.to_dict()
                and isinstance(meta.get("seq"), int)
                and "/" not in meta["file"]
                and path.is_file()
                and path.stat().st_size == meta.get("size")
                and meta["seq"] <= self.last_seq()
                and sha256_file(path) == meta.get("sha256")
            )
            if not ok:
                return None
            index = HnswIndex.load(str(path), self.spec.dim, self.spec.metric, self.params, meta["live"])
            return index, meta["seq"]
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return None

    def _rebuild(self) -> None:
        conn = self.conn
        try:
            conn.execute("BEGIN")  # one read snapshot for the seq and the rows
            try:
                seq = self.last_seq()
                n = self._count()
                index = HnswIndex(self.spec.dim, self.spec.metric, self.params, capacity=max(n, 1024))
                cur = conn.execute(
                    "SELECT rid, vector FROM records WHERE collection_id = ? ORDER BY rid", (self.cid,)
                )
                while batch := cur.fetchmany(20_000):
                    labels = np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch))
                    vecs = np.frombuffer(b"".join(r[1] for r in batch), dtype=np.float32).reshape(len(batch), -1)
                    index.add(labels, vecs)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise translate(exc, self.store.path, self.store.lock_timeout) from None
        self._index, self._index_seq = index, seq

    def save_index(self, force: bool = False) -> bool:
        """Write the index file atomically if it holds changes the file lacks."""
        if self._index is None or (self._index_seq == self._index_saved_seq and not force):
            return False
        name = f"idx-{self.cid}-{self._index_seq}-{uuid.uuid4().hex[:8]}.hnsw"
        final = self.store.path / name
        tmp = self.store.path / (name + ".tmp")
        self._index.save(str(tmp))
        atomic_replace(tmp, final)
        write_json(self._sidecar(), {
            "format": INDEX_FORMAT, "file": name, "sha256": sha256_file(final), "size": final.stat().st_size,
            "seq": self._index_seq, "live": len(self._index), "dim": self.spec.dim, "metric": self.spec.metric,
            "params": self.params.to_dict(), "saved_at": time.time(),
        })
        self._index_saved_seq = self._index_seq
        self._cleanup_index_files(keep=name)
        return True

    def _cleanup_index_files(self, keep: str) -> None:
        now = time.time()
        for p in self.store.path.glob(f"idx-{self.cid}-*.hnsw*"):
            if p.name == keep:
                continue
            with contextlib.suppress(OSError):
                # a file another process is still writing is young: leave it to that process
                if p.suffix == ".hnsw" or now - p.stat().st_mtime > 600:
                    p.unlink()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file (best effort: readers may hold it)."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- the exact matrix -----------------------------------------------------------------
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

    # -- reads ---------------------------------------------------------------------------
    def candidates(self, where: Any, with_vectors: bool) -> tuple[np.ndarray, np.ndarray | None]:
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

    def allowed(self, where: Any):
        """A membership test for the rids matching a filter (cached with the match set)."""
        rids, _ = self.candidates(where, with_vectors=False)
        key = ("allowed", where)
        hit = self._allowed_cache.get(key)
        if hit is None or hit[0] is not rids:
            hit = (rids, set(rids.tolist()).__contains__)
            self._allowed_cache = {key: hit} if len(self._allowed_cache) >= 16 else {**self._allowed_cache, key: hit}
        return hit[1]

    def exact(self, queries: np.ndarray, k: int, where: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if where is None:
            m = self.matrix()
            return exact_topk(m.data[: m.n], m.rids[: m.n], queries, k, self.spec.metric, unit=self.spec.normalize)
        rids, vecs = self.candidates(where, with_vectors=True)
        return exact_topk(vecs, rids, queries, k, self.spec.metric, unit=self.spec.normalize)

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

    def _entries(self, rids: list[int]) -> list[tuple]:
        """Row cache entries ``(id, document, metadata)`` per rid, in order, fetching the
        missing ones; a rid deleted meanwhile gets ``(None, None, {})``."""
        get = self._row_cache.get
        out = [get(r) for r in rids]
        if None in out:
            # from the fetched rows, not from the cache again: a batch larger than the cache
            # evicts some of its own rows while it is being filled
            rows = self.fetch([r for r, e in zip(rids, out) if e is None])
            out = [e if e is not None else _entry_of(rows.get(r)) for r, e in zip(rids, out)]
        return out

    def hit_columns(self, rids: list[int]) -> tuple[tuple, tuple, Sequence]:
        """``(ids, documents, metadatas)`` of ``rids``, in order, for search hits (the hot path).

        Metadata is a :class:`FrozenDict`: flat metadata is the cache's own object, shared,
        nested metadata is parsed anew. A rid deleted meanwhile has id None.
        """
        if not rids:
            return (), (), ()
        cache = self._row_cache
        try:  # itemgetter looks all rids up in one C call
            found = itemgetter(*rids)(cache) if len(rids) > 1 else (cache[rids[0]],)
        except KeyError:
            found = self._entries(rids)
        ids, docs, metas = zip(*found)
        if str in map(type, metas):  # nested metadata, cached as JSON (its lists and dicts could be changed)
            metas = [m if type(m) is not str else FrozenDict(json.loads(m)) for m in metas]
        return ids, docs, metas

    def fetch(self, rids: list[int], with_vectors: bool = False) -> dict[int, Row]:
        """Rows by rid, with read-only metadata. A rid's row never changes (an upsert writes a
        new rid), so rows are cached in memory (bounded by bytes) and a cached row is current."""
        out: dict[int, Row] = {}
        cache = self._row_cache
        missing = []
        if not with_vectors:
            for rid in rids:
                hit = cache.get(rid)
                if hit is None:
                    missing.append(rid)
                else:
                    rec_id, doc, meta = hit
                    out[rid] = Row(rid, rec_id, doc, meta if type(meta) is not str else FrozenDict(json.loads(meta)))
        else:
            missing = list(rids)
        cols = "rid, id, document, metadata, content_hash" + (", vector" if with_vectors else "")
        for part in _chunks(missing):
            marks = ",".join("?" * len(part))
            for r in self._q(f"SELECT {cols} FROM records WHERE rid IN ({marks})", part):
                vec = np.frombuffer(r[5], dtype=np.float32).copy() if with_vectors else None
                meta = self._cache_row(r[0], r[1], r[2], r[3])
                out[r[0]] = Row(r[0], r[1], r[2], meta, vec, r[4])
        return out

    def _cache_row(self, rid, rec_id, doc, meta_text) -> FrozenDict:
        """Cache one row as ``(id, document, metadata)``; returns its metadata as a FrozenDict.

        Flat metadata is cached as a FrozenDict that every hit shares; nested metadata as its
        JSON text, parsed per hit (so no hit can change what another sees). Eviction is
        first-in first-out: cheaper per hit than LRU bookkeeping. An entry holds nothing
        else: search touches every object of the entries it returns, and memory latency on
        a large cache is most of that cost.
        """
        cached = self._row_cache.get(rid)
        if cached is not None and type(cached[2]) is not str:
            return cached[2]
        meta = json.loads(meta_text)
        flat = all(not isinstance(v, (dict, list)) for v in meta.values())
        frozen = FrozenDict(meta) if meta else EMPTY
        if cached is None:
            entry = (rec_id, doc, frozen if flat else meta_text)
            self._row_cache[rid] = entry
            self._row_cache_bytes += _entry_bytes(entry)
            while self._row_cache_bytes > ROW_CACHE_BYTES and self._row_cache:
                self._row_cache_bytes -= _entry_bytes(self._row_cache.popitem(last=False)[1])
        return frozen

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
        for part in _chunks(ids):
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
            for part in _chunks(ids):
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

    # -- the collection backend interface: search -------------------------------------------
    def hashes(self, ids: list[str]) -> dict[str, str]:
        with self.store._lock:
            return {i: h for i, (_, h, _) in self.existing(ids).items()}

    def flush(self) -> None:
        with self.store._lock:
            self.index()
            self.save_index()
            self.checkpoint()

    def search_one(self, vector: np.ndarray, k: int, ef: int | None) -> list[Hit] | None:
        """One query, no filter, through the index: the common case, lean (the caller checked
        the vector). None hands anything unusual (too few results) to :meth:`search`."""
        with self.store._lock:
            index = self._index
            if index is None or self.store._poll() != self._generation:
                index = self.index()
            found = index.search_one(vector, k, ef)
            if found is None:
                return None  # the general path falls back to an exact scan
            rids, dists = found
            base = 0.0 if self.spec.metric == "l2" else 1.0  # the score: see index.to_scores
            return make_hits(*self.hit_columns(rids), [base - d for d in dists], dists)

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
            rid_of = dict(self._q("SELECT id, rid FROM records WHERE collection_id = ?", (self.cid,)))
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

    # -- the query plan ------------------------------------------------------------------------
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

    def disk_bytes(self) -> int:
        total = 0
        for p in self.store.path.glob(f"idx-{self.cid}-*.hnsw"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(p)
        return total
