"""The row cache: what search results are made of, kept in memory.

A row id's row never changes (an upsert writes a new row id), so a cached row is always
current. An entry is ``(id, document, metadata)`` and nothing else: flat metadata is a
:class:`FrozenDict` every hit of the row shares, nested metadata its JSON text, parsed per
hit. Bounded by bytes, first in first out.

Entries sit in a list indexed by row id (None where not cached), not a dict: right after an
HNSW walk a hit's lookup is cache misses, and a list slot is one where a dict costs its
index slot, its entry and the stored key's int object (``bench/rowcache.py``: 10 hits of a
100k-row cache after 4 MB of other memory traffic, 7.0-12 us against 9.8-16 us for the
dict over five runs here). The list costs 8 bytes a row
id up to the largest cached, at most LIST_SLOTS (row ids past it, in a store grown that
large, go to a dict).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

from ...core.frozen import EMPTY, FrozenDict
from ..hits import Hit, make_hits
from ..index import to_scores

ROW_CACHE_BYTES = 64 << 20  # rows (id, document, metadata) kept in memory for search results
LIST_SLOTS = 4 << 20  # row ids below this are cached in the list (at most 32 MB of slots)
_CHUNK = 500  # SQL variables per IN (...) list
_GONE = (None, None, EMPTY)  # a row cache entry for a rid deleted meanwhile


@dataclass
class Row:
    rid: int
    id: str
    document: str | None
    metadata: dict[str, Any]
    vector: np.ndarray | None = None
    content_hash: str = ""


def chunks(seq: list, size: int = _CHUNK):
    """``seq`` in pieces small enough for one SQL ``IN (...)`` list."""
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _entry_of(row: Row | None) -> tuple:
    return _GONE if row is None else (row.id, row.document, row.metadata)


def _flat(meta: dict) -> bool:
    """Whether metadata holds no lists or dicts (then one read-only copy serves every hit)."""
    return all(not isinstance(v, (dict, list)) for v in meta.values())


def _entry_bytes(entry: tuple) -> int:
    """What a row cache entry counts against ROW_CACHE_BYTES (a fixed function of the entry)."""
    rec_id, doc, meta = entry
    return 200 + len(rec_id) + len(doc or "") + (len(meta) if type(meta) is str else 64 * len(meta))


class RowCache:
    """Rows by row id for search hits, through a bounded in-memory cache. (A part of :class:`.collection.CollectionStorage`.)"""

    def clear_row_cache(self) -> None:
        """Empty the cache (also its initial state)."""
        self._row_slots: list = []  # row id -> entry, or None
        self._far_rows: dict[int, tuple] = {}  # the entries of row ids >= LIST_SLOTS
        self._row_order: deque[int] = deque()  # cached row ids, oldest first
        self._row_cache_bytes = 0
        self._nested_cached = False  # whether any cached row's metadata is nested (kept as JSON text)

    def cached_entry(self, rid: int) -> tuple | None:
        """The cache entry of ``rid``, or None."""
        rows = self._row_slots
        return rows[rid] if 0 <= rid < len(rows) else self._far_rows.get(rid)

    def _entries(self, rids: list[int]) -> list[tuple]:
        """Row cache entries ``(id, document, metadata)`` per rid, in order, fetching the
        missing ones; a rid deleted meanwhile gets ``(None, None, {})``."""
        get = self.cached_entry
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
        rows = self._row_slots
        try:  # itemgetter looks all rids up in one C call; a rid not cached is None, which zip refuses
            ids, docs, metas = zip(*(itemgetter(*rids)(rows) if len(rids) > 1 else (rows[rids[0]],)))
        except (IndexError, TypeError):
            ids, docs, metas = zip(*self._entries(rids))
        if str in map(type, metas):  # nested metadata, cached as JSON (its lists and dicts could be changed)
            metas = [m if type(m) is not str else FrozenDict(json.loads(m)) for m in metas]
        return ids, docs, metas

    def hits_for(self, rids: list[int], dists: list[float]) -> list[Hit]:
        """One query's hits from its row ids (the index's labels: never negative, which a list
        would read from its end) and distances (best first): the single-query hot path. When
        every row is cached with flat metadata (the usual case) each hit is one
        tuple built in a list comprehension, its score made there (1.5 us less for 10 hits
        than :func:`make_hits`'s columns); anything else goes through :meth:`hit_columns`."""
        if not rids:
            return []
        if not self._nested_cached:
            rows = self._row_slots
            try:  # a rid past the list, or not cached (its slot None: hits_of cannot subscript it)
                return self.hits_of(itemgetter(*rids)(rows) if len(rids) > 1 else (rows[rids[0]],), dists)
            except (IndexError, TypeError):
                pass
        return make_hits(*self.hit_columns(rids), to_scores(dists, self.spec.metric), dists)

    def hits_of(self, entries: Iterable[tuple], dists: list[float]) -> list[Hit]:
        """One query's hits from its rows' cache entries, all with flat metadata (the caller
        checked), and distances, best first: each hit one tuple, its score made here."""
        new, offset = tuple.__new__, self._score_offset
        return [new(Hit, (e[0], offset - d, e[1], e[2], d, None, None)) for e, d in zip(entries, dists)]

    def entries_of(self, rids: list[int]) -> list[tuple] | None:
        """The cache entries of ``rids`` in order, fetching the missing ones, for
        :meth:`hits_of`; None where one has nested metadata (parsed per hit, see :meth:`hit_columns`)."""
        entries = self._entries(rids)
        # (a row just fetched comes with its nested metadata parsed, not as text)
        return entries if all(type(e[2]) is not str and _flat(e[2]) for e in entries) else None

    def fetch(self, rids: list[int], with_vectors: bool = False) -> dict[int, Row]:
        """Rows by rid, with read-only metadata. A rid's row never changes (an upsert writes a
        new rid), so rows are cached in memory (bounded by bytes) and a cached row is current."""
        out: dict[int, Row] = {}
        get = self.cached_entry
        missing = []
        if not with_vectors:
            for rid in rids:
                hit = get(rid)
                if hit is None:
                    missing.append(rid)
                else:
                    rec_id, doc, meta = hit
                    out[rid] = Row(rid, rec_id, doc, meta if type(meta) is not str else FrozenDict(json.loads(meta)))
        else:
            missing = list(rids)
        cols = "rid, id, document, metadata, content_hash" + (", vector" if with_vectors else "")
        for part in chunks(missing):
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
        cached = self.cached_entry(rid)
        if cached is not None and type(cached[2]) is not str:
            return cached[2]
        meta = json.loads(meta_text)
        flat = _flat(meta)
        frozen = FrozenDict(meta) if meta else EMPTY
        if cached is None:
            entry = (rec_id, doc, frozen if flat else meta_text)
            self._nested_cached |= not flat
            rows = self._row_slots
            if rid < len(rows):
                rows[rid] = entry
            elif rid < LIST_SLOTS:  # grown by half at least: amortised O(1) a row
                rows.extend([None] * min(LIST_SLOTS - len(rows), max(rid + 1 - len(rows), len(rows) // 2)))
                rows[rid] = entry
            else:
                self._far_rows[rid] = entry
            self._row_order.append(rid)
            self._row_cache_bytes += _entry_bytes(entry)
            while self._row_cache_bytes > ROW_CACHE_BYTES and self._row_order:
                self._row_cache_bytes -= _entry_bytes(self._evict(self._row_order.popleft()))
        return frozen

    def _evict(self, rid: int) -> tuple:
        rows = self._row_slots
        if rid < len(rows):
            entry, rows[rid] = rows[rid], None
            return entry
        return self._far_rows.pop(rid)
