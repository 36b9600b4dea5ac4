"""The memory backend: dicts and numpy arrays, exact search, a plain BM25 scorer.

The reference every other backend is tested against (as httpx's MockTransport is for
httpx), and a store for throw-away collections: ``ls.open_store(":memory:")``. Nothing
persists; one process. Search is exact (a scan of the matching rows), keyword search is
BM25 (k1 1.2, b 0.75) over lower-cased word tokens, filters are evaluated by the filter
tree's reference semantics (:func:`.filter.matches`).
"""

from __future__ import annotations

import copy
import math
import re
import threading
import time
from collections import Counter
from typing import Any

import numpy as np

from ..core.errors import AlreadyExistsError, NotFoundError
from ..core.frozen import EMPTY, FrozenDict
from ..core.space import SpaceSpec
from ..core.validation import check_name
from .base import Capabilities, CollectionBackend, CollectionInfo, Row, StoreBackend
from .filter import Node, matches
from .hits import Hit
from .index import HnswParams, exact_topk, neighbour_arrays, to_scores

_TOKEN = re.compile(r"\w+", re.UNICODE)
K1, B = 1.2, 0.75


def _frozen(meta: dict) -> FrozenDict:
    return FrozenDict(copy.deepcopy(dict(meta))) if meta else EMPTY


class MemoryCollection(CollectionBackend):
    """One collection in memory: rows by id in insertion order (an upsert moves a row to the
    end, as a new row id does in the embedded store)."""

    capabilities = Capabilities(persistent=False, multi_process=False, ann=False)

    def __init__(self, store: MemoryStore, name: str, spec: SpaceSpec):
        self.store, self.name, self.spec = store, name, spec
        self._rows: dict[str, Row] = {}
        self._matrix: tuple[list[str], np.ndarray] | None = None  # (ids, vectors), rebuilt after writes
        self._seq = 0  # writes so far

    # -- size and content ------------------------------------------------------------------
    def _check(self) -> None:
        if not any(c is self for c in self.store._collections.values()):
            raise NotFoundError(f"Collection {self.name!r} was deleted from the store.")

    @staticmethod
    def _shown(meta: FrozenDict) -> FrozenDict:
        """A hit's read-only metadata: shared when flat, a deep copy when it holds lists or
        dicts (which could be changed), as the embedded store gives."""
        return meta if all(not isinstance(v, (dict, list)) for v in meta.values()) else _frozen(meta)

    def _matching(self, where: Node | None) -> list[Row]:
        return [r for r in self._rows.values() if matches(where, r.document, r.metadata)]

    def count(self, where: Node | None = None) -> int:
        with self.store._lock:
            return len(self._rows) if where is None else len(self._matching(where))

    def count_with_documents(self) -> int:
        with self.store._lock:
            return sum(bool(r.document) for r in self._rows.values())

    def explain(self, where: Node | None, k: int = 10, ef: int | None = None) -> dict[str, Any]:
        return {"matches": self.count(where), "plan": "exact", "estimates": {}, "measured": []}  # exact, always

    def hashes(self, ids: list[str]) -> dict[str, str]:
        with self.store._lock:
            return {i: self._rows[i].content_hash for i in ids if i in self._rows}

    def vectors(self, ids: list[str]) -> tuple[list[str], np.ndarray]:
        with self.store._lock:
            found = [i for i in ids if i in self._rows]
            vecs = np.stack([self._rows[i].vector for i in found]) if found else np.zeros((0, self.spec.dim), np.float32)
            return found, vecs.astype(np.float32, copy=False)

    # -- writes ---------------------------------------------------------------------------
    def write(self, ids, vectors, documents, metadatas, hashes, *, replace: bool) -> tuple[int, int]:
        with self.store._lock:
            self._check()
            old = [i for i in ids if i in self._rows]
            if old and not replace:
                raise AlreadyExistsError(
                    f"{len(old)} id(s) already exist in collection {self.name!r}, e.g. {sorted(old)[:5]}. Nothing was "
                    "added: use upsert() to replace records, or delete them first."
                )
            for i in old:
                del self._rows[i]
            for n, i in enumerate(ids):
                self._rows[i] = Row(i, documents[n], _frozen(metadatas[n]), np.array(vectors[n], dtype=np.float32),
                                    hashes[n])
            self._matrix = None
            self._seq += 1
            return len(ids) - len(old), len(old)

    def delete(self, ids: list[str] | None, where: Node | None) -> int:
        with self.store._lock:
            self._check()
            pool = [self._rows[i] for i in dict.fromkeys(ids) if i in self._rows] if ids is not None else list(
                self._rows.values())
            gone = [r.id for r in pool if matches(where, r.document, r.metadata)]
            for i in gone:
                del self._rows[i]
            if gone:
                self._matrix = None
                self._seq += 1
            return len(gone)

    # -- reads ----------------------------------------------------------------------------
    def rows(self, ids, where, limit, offset, with_vectors) -> list[Row]:
        with self.store._lock:
            self._check()
            pool = [self._rows[i] for i in ids if i in self._rows] if ids is not None else list(self._rows.values())
            picked = [r for r in pool if matches(where, r.document, r.metadata)]
            picked = picked[offset: None if limit is None else offset + limit]
            return [Row(r.id, r.document, copy.deepcopy(dict(r.metadata)), r.vector.copy() if with_vectors else None,
                        r.content_hash) for r in picked]

    # -- search ---------------------------------------------------------------------------
    def _arrays(self, where: Node | None) -> tuple[list[str], np.ndarray]:
        if where is None:
            if self._matrix is None:
                ids = list(self._rows)
                vecs = np.stack([r.vector for r in self._rows.values()]) if ids else np.zeros((0, self.spec.dim))
                self._matrix = (ids, vecs.astype(np.float32, copy=False))
            return self._matrix
        rows = self._matching(where)
        vecs = np.stack([r.vector for r in rows]) if rows else np.zeros((0, self.spec.dim), np.float32)
        return [r.id for r in rows], vecs.astype(np.float32, copy=False)

    def _hits(self, ids: list[str], labels: np.ndarray, dists: np.ndarray, with_vectors: bool) -> list[list[Hit]]:
        out = []
        for lrow, drow in zip(labels, dists):
            keep = lrow >= 0
            scores = to_scores(drow[keep].astype(np.float64), self.spec.metric)
            hits = []
            for j, d, s in zip(lrow[keep].tolist(), drow[keep].astype(np.float64).tolist(), scores.tolist()):
                r = self._rows[ids[j]]
                hits.append(Hit(r.id, s, r.document, self._shown(r.metadata), d, None,
                                r.vector.copy() if with_vectors else None))
            out.append(hits)
        return out

    def search(self, queries, k, where, *, exact, ef, with_vectors) -> list[list[Hit]]:
        with self.store._lock:
            self._check()
            ids, vecs = self._arrays(where)
            labels, dists = exact_topk(vecs, np.arange(len(ids)), queries, k, self.spec.metric,
                                       unit=self.spec.normalize)
            return self._hits(ids, labels, dists, with_vectors)

    def search_one(self, vector, k, ef, where=None) -> list[Hit] | None:
        return self.search(vector[None], k, where, exact=True, ef=ef, with_vectors=False)[0]

    def search_among(self, ids, queries, k) -> list[list[Hit]]:
        with self.store._lock:
            found, vecs = self.vectors(ids)
            labels, dists = exact_topk(vecs, np.arange(len(found)), queries, k, self.spec.metric,
                                       unit=self.spec.normalize)
            return self._hits(found, labels, dists, False)

    def neighbors(self, ids, vectors, which, k, where, *, exact=False, ef=None) -> tuple[np.ndarray, np.ndarray]:
        with self.store._lock:
            pool_ids, pool = self._arrays(where)
            labels, dists = exact_topk(pool, np.arange(len(pool_ids)), vectors[which], k + 1, self.spec.metric,
                                       unit=self.spec.normalize)
        found = [[(pool_ids[j], d) for j, d in zip(lrow.tolist(), drow.tolist()) if j >= 0]
                 for lrow, drow in zip(labels, dists)]
        return neighbour_arrays(found, ids, which, k)

    def keyword(self, texts, k, where, *, with_vectors) -> list[list[Hit]]:
        with self.store._lock:
            self._check()
            rows = [r for r in self._matching(where) if r.document]
            docs = [Counter(_TOKEN.findall(r.document.lower())) for r in rows]
            lengths = [sum(d.values()) for d in docs]
            avg = sum(lengths) / len(lengths) if lengths else 0.0
            n = len(rows)
            out = []
            for text in texts:
                terms = list(dict.fromkeys(_TOKEN.findall(text.lower())))[:64]
                df = {t: sum(t in d for d in docs) for t in terms}
                scored = []
                for r, d, length in zip(rows, docs, lengths):
                    s = 0.0
                    for t in terms:
                        f = d.get(t, 0)
                        if f:
                            idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                            s += idf * f * (K1 + 1) / (f + K1 * (1 - B + B * length / max(avg, 1e-9)))
                    if s > 0:
                        scored.append((s, r))
                scored.sort(key=lambda x: -x[0])
                out.append([Hit(r.id, s, r.document, self._shown(r.metadata), None, None,
                                r.vector.copy() if with_vectors else None) for s, r in scored[:k]])
            return out

    def flush(self) -> None:
        """Nothing to persist."""

    def change_seq(self) -> int | None:
        return self._seq


class MemoryStore(StoreBackend):
    """Collections in this process's memory; gone when it ends."""

    capabilities = Capabilities(persistent=False, multi_process=False, ann=False)

    def __init__(self):
        self.path = None
        self.messages: list[str] = []
        self._lock = threading.RLock()
        self._collections: dict[str, MemoryCollection] = {}
        self._info: dict[str, CollectionInfo] = {}
        self._history: list[dict[str, Any]] = []
        self._next = 1
        self._closed = False

    def __repr__(self) -> str:
        return "MemoryStore()"

    def _missing(self, name: str) -> NotFoundError:
        names = self.list_names()
        hint = f" Collections here: {', '.join(names)}." if names else " The store has no collections."
        return NotFoundError(f"No collection named {name!r} in the memory store.{hint}")

    def create_collection(self, name, spec, encoder, params, metadata) -> None:
        with self._lock:
            if name in self._collections:
                raise AlreadyExistsError(f"A collection named {name!r} already exists in the memory store. Open it "
                                         "with get_collection, or use get_or_create_collection.")
            self._collections[name] = MemoryCollection(self, name, spec)
            self._info[name] = CollectionInfo(name, 0, spec, encoder, params if isinstance(params, HnswParams)
                                              else HnswParams(), dict(metadata), time.time())

    def open_collection(self, name):
        with self._lock:
            if name not in self._collections:
                raise self._missing(name)
            return self._current_info(name), self._collections[name]

    def _current_info(self, name: str) -> CollectionInfo:
        import dataclasses

        return dataclasses.replace(self._info[name], name=name, count=len(self._collections[name]._rows))

    def list_names(self) -> list[str]:
        with self._lock:
            return sorted(n for n in self._collections if not n.startswith("~"))

    def list_collections(self) -> list[CollectionInfo]:
        with self._lock:
            return [self._current_info(n) for n in self.list_names()]

    def collection_info(self, name: str) -> CollectionInfo:
        check_name(name)
        return self.open_collection(name)[0]

    def delete_collection(self, name: str) -> None:
        if not (isinstance(name, str) and name.startswith("~")):
            check_name(name)
        with self._lock:
            if name not in self._collections:
                raise self._missing(name)
            del self._collections[name]
            del self._info[name]

    def rename_collection(self, name: str, new_name: str) -> None:
        check_name(name)
        check_name(new_name)
        with self._lock:
            if name not in self._collections:
                raise self._missing(name)
            if new_name in self._collections:
                raise AlreadyExistsError(f"A collection named {new_name!r} already exists in the memory store.")
            prefix = f"~{name}~"
            renames = {name: new_name, **{o: f"~{new_name}~{o[len(prefix):]}" for o in self._collections
                                          if o.startswith(prefix)}}
            moved = {old: (self._collections.pop(old), self._info.pop(old)) for old in renames}
            for old, (col, info) in moved.items():
                col.name = renames[old]
                self._collections[renames[old]] = col
                self._info[renames[old]] = info
            for h in self._history:
                if h["name"] == name:
                    h["name"] = new_name

    def swap(self, name: str, new_internal: str, action: str) -> None:
        with self._lock:
            if name not in self._collections or new_internal not in self._collections:
                raise NotFoundError(f"Cannot switch {name!r}: the collection or its replacement is missing.")
            current, replacement = self._collections.pop(name), self._collections.pop(new_internal)
            cur_info, new_info = self._info.pop(name), self._info.pop(new_internal)
            retired = f"~{name}~retired~{self._next}"
            self._next += 1
            current.name, replacement.name = retired, name
            self._collections[retired], self._info[retired] = current, cur_info
            self._collections[name], self._info[name] = replacement, new_info
            self._history.append({"seq": len(self._history) + 1, "name": name, "collection": replacement,
                                  "previous": current, "action": action, "spec": new_info.spec, "at": time.time()})

    def collection_history(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [{"seq": h["seq"], "collection_id": id(h["collection"]), "previous_id": id(h["previous"]),
                     "action": h["action"], "fingerprint": h["spec"].fingerprint, "model": h["spec"].model,
                     "at": h["at"]} for h in self._history if h["name"] == name]

    def rollback_collection(self, name: str) -> None:
        check_name(name)
        with self._lock:
            last = [h for h in self._history if h["name"] == name]
            if not last:
                raise NotFoundError(f"Collection {name!r} has no earlier space to roll back to.")
            previous = last[-1]["previous"]
            internal = next((n for n, c in self._collections.items() if c is previous), None)
            if internal is None:
                raise NotFoundError(f"The earlier space of {name!r} was dropped; nothing to roll back to.")
            self.swap(name, internal, "rollback")

    def drop_retired(self, name: str) -> int:
        check_name(name)
        with self._lock:
            retired = [n for n in self._collections if n.startswith(f"~{name}~")]
            for internal in retired:
                self.delete_collection(internal)
            return len(retired)

    def retired_names(self, name: str) -> list[str]:
        check_name(name)
        with self._lock:
            return [n for n in self._collections if n.startswith(f"~{name}~retired~")]

    def disk_bytes(self) -> int:
        return 0

    def close(self) -> None:
        self._closed = True


__all__ = ["MemoryCollection", "MemoryStore"]
