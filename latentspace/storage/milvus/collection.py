"""One latentspace collection in Milvus: a Milvus collection with a fixed schema.

Fields: ``id`` (VARCHAR primary key), ``vector`` (FLOAT_VECTOR, an HNSW index under the
space's metric), ``document`` (VARCHAR with an analyzer; ``""`` where there is none, with
``has_document`` telling them apart), ``sparse`` (its BM25 vector, made by Milvus' BM25
function), ``metadata`` (JSON), ``content_hash`` and ``seq`` (insertion order: an upsert
moves a record to the end, as in the embedded store).

Filters compile to a superset expression (:mod:`.expr`) and every record Milvus returns
is checked with the reference semantics; a search whose expression is not exact asks for
more candidates until ``k`` match or the candidates run out, then scans exactly. Scores
follow the one convention: a distance under the metric (``1 - cosine``, ``1 - dot``,
Euclidean) turned into "higher is better" by :func:`..index.to_scores`; BM25 scores are
positive (Milvus Lite reports them negated, the server not: both read as their magnitude).
"""

from __future__ import annotations

import numpy as np

from ...core.errors import AlreadyExistsError, InvalidInputError
from ...core.frozen import EMPTY, FrozenDict
from ..base import CollectionBackend, Row
from ..filter import Node, matches
from ..hits import Hit
from ..index import HnswParams, exact_topk, neighbour_arrays, to_scores
from .expr import compile_expr, quote

MAX_TOPK = 16_384  # Milvus' limit on k (and on offset + limit of a query)
ID_CHUNK = 1_000  # ids per "id in [...]" expression
WRITE_ROWS = 2_000  # rows per insert request
MAX_DOCUMENT_BYTES = 65_535  # a VARCHAR field's limit
TIE_MARGIN = 8  # extra results asked for, so that ties at the k-th place break by insertion order
METRICS = {"cosine": "COSINE", "dot": "IP", "l2": "L2"}
FIELDS = ["id", "document", "has_document", "metadata", "content_hash", "seq"]


def _frozen(meta: dict) -> FrozenDict:
    return FrozenDict(meta) if meta else EMPTY


def _ranked(hits: list[Hit], seqs: dict[str, int]) -> list[Hit]:
    """Best first; equal distances (to float32 precision) in insertion order."""
    return sorted(hits, key=lambda h: (round(h.distance, 6), seqs.get(h.id, 0)))


class MilvusCollection(CollectionBackend):
    def __init__(self, store, name: str, physical: str, spec, params: HnswParams):
        self.store, self.name, self.physical, self.spec, self.params = store, name, physical, spec, params
        self.capabilities = store.capabilities
        self._metric = METRICS[spec.metric]

    # -- helpers --------------------------------------------------------------------------
    @property
    def _client(self):
        return self.store._client

    def _call(self, fn: str, *args, **kwargs):
        return self.store._call(fn, *args, collection=self, **kwargs)

    def _distance(self, raw: float) -> float:
        """Milvus' reported value -> the distance convention of :func:`..index.to_scores`."""
        if self.spec.metric == "l2":
            return float(np.sqrt(max(raw, 0.0)))  # Milvus reports the squared distance
        return 1.0 - float(raw)

    @staticmethod
    def _row(e: dict, with_vectors: bool) -> Row:
        vec = np.asarray(e["vector"], dtype=np.float32) if with_vectors else None
        return Row(e["id"], e["document"] if e.get("has_document") else None, dict(e.get("metadata") or {}), vec,
                   e["content_hash"])

    def _hit(self, e: dict, score: float, distance: float | None, with_vectors: bool) -> Hit:
        meta = e.get("metadata") or {}
        return Hit(e["id"], score, e["document"] if e.get("has_document") else None, _frozen(meta), distance, None,
                   np.asarray(e["vector"], dtype=np.float32) if with_vectors else None)

    def _query_all(self, expr: str | None, fields: list[str]) -> list[dict]:
        """Every record the expression selects (all of them for None), by an iterator."""
        out: list[dict] = []
        it = self._call("query_iterator", self.physical, batch_size=4_096, filter=expr or "", output_fields=fields)
        try:
            while True:
                batch = it.next()
                if not batch:
                    break
                out.extend(batch)
        finally:
            it.close()
        return out

    def _by_ids(self, ids: list[str], fields: list[str], expr: str | None = None) -> dict[str, dict]:
        found: dict[str, dict] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), ID_CHUNK):
            chunk = unique[start: start + ID_CHUNK]
            cond = "id in [" + ", ".join(quote(i) or '""' for i in chunk) + "]"
            if expr:
                cond = f"({cond}) and {expr}"
            for e in self._call("query", self.physical, filter=cond, output_fields=fields, limit=len(chunk)):
                found[e["id"]] = e
        return found

    def _matching(self, where: Node | None, fields: list[str], ids: list[str] | None = None) -> list[dict]:
        """The records matching ``where`` (among ``ids``), checked exactly."""
        expr, _ = compile_expr(where)
        need = list(dict.fromkeys(fields + ["document", "has_document", "metadata"]))
        rows = list(self._by_ids(ids, need, expr).values()) if ids is not None else self._query_all(expr, need)
        return [e for e in rows if matches(where, e["document"] if e["has_document"] else None, e["metadata"] or {})]

    # -- size and content ------------------------------------------------------------------
    def count(self, where: Node | None = None) -> int:
        with self.store._lock:
            expr, exact = compile_expr(where)
            if exact:
                res = self._call("query", self.physical, filter=expr or "", output_fields=["count(*)"])
                return int(res[0]["count(*)"])
            return len(self._matching(where, ["id"]))

    def count_with_documents(self) -> int:
        with self.store._lock:
            res = self._call("query", self.physical, filter="has_document == true", output_fields=["count(*)"])
            return int(res[0]["count(*)"])

    def hashes(self, ids: list[str]) -> dict[str, str]:
        with self.store._lock:
            found = self._by_ids(ids, ["id", "content_hash"])
            return {i: found[i]["content_hash"] for i in ids if i in found}

    def vectors(self, ids: list[str]) -> tuple[list[str], np.ndarray]:
        with self.store._lock:
            found = self._by_ids(ids, ["id", "vector"])
            order = [i for i in ids if i in found]
            if not order:
                return [], np.zeros((0, self.spec.dim), np.float32)
            return order, np.asarray([found[i]["vector"] for i in order], dtype=np.float32)

    # -- writes ---------------------------------------------------------------------------
    def write(self, ids, vectors, documents, metadatas, hashes, *, replace: bool) -> tuple[int, int]:
        for n, doc in enumerate(documents):
            if doc is not None and len(doc.encode("utf-8")) > MAX_DOCUMENT_BYTES:
                raise InvalidInputError(f"documents[{n}] is {len(doc.encode('utf-8')):,} bytes; a Milvus collection "
                                        f"holds documents of at most {MAX_DOCUMENT_BYTES:,} bytes (split it into "
                                        "chunks: ingest does).")
        with self.store._lock:
            old = set(self._by_ids(list(ids), ["id"]))
            if old and not replace:
                raise AlreadyExistsError(
                    f"{len(old)} id(s) already exist in collection {self.name!r}, e.g. {sorted(old)[:5]}. Nothing was "
                    "added: use upsert() to replace records, or delete them first."
                )
            seqs = self.store._next_seqs(len(ids))
            rows = [{"id": i, "vector": np.asarray(vectors[n], dtype=np.float32).tolist(),
                     "document": documents[n] or "", "has_document": documents[n] is not None,
                     "metadata": dict(metadatas[n]), "content_hash": hashes[n], "seq": seqs[n]}
                    for n, i in enumerate(ids)]
            for start in range(0, len(rows), WRITE_ROWS):
                self._call("upsert" if replace else "insert", self.physical, rows[start: start + WRITE_ROWS])
            return len(ids) - len(old), len(old)

    def delete(self, ids: list[str] | None, where: Node | None) -> int:
        with self.store._lock:
            gone = [e["id"] for e in self._matching(where, ["id"], ids)]
            for start in range(0, len(gone), ID_CHUNK):
                chunk = gone[start: start + ID_CHUNK]
                self._call("delete", self.physical, filter="id in [" + ", ".join(quote(i) or '""' for i in chunk) + "]")
            return len(gone)

    # -- reads ----------------------------------------------------------------------------
    def ids(self) -> list[str]:
        with self.store._lock:
            return [e["id"] for e in sorted(self._query_all(None, ["id", "seq"]), key=lambda e: e["seq"])]

    def rows(self, ids, where, limit, offset, with_vectors) -> list[Row]:
        with self.store._lock:
            picked = self._matching(where, FIELDS, ids)
            if ids is not None:
                at = {e["id"]: e for e in picked}
                picked = [at[i] for i in dict.fromkeys(ids) if i in at]
            else:
                picked.sort(key=lambda e: e["seq"])
            picked = picked[offset: None if limit is None else offset + limit]
            if with_vectors and picked:
                vecs = self._by_ids([e["id"] for e in picked], ["id", "vector"])
                picked = [e | {"vector": vecs[e["id"]]["vector"]} for e in picked]
            return [self._row(e, with_vectors) for e in picked]

    # -- search ---------------------------------------------------------------------------
    def _exact(self, queries: np.ndarray, k: int, where: Node | None, with_vectors: bool) -> list[list[Hit]]:
        pool = sorted(self._matching(where, FIELDS + ["vector"]), key=lambda e: e["seq"])  # ties: insertion order
        return self._scan(pool, queries, k, with_vectors)

    def _scan(self, pool: list[dict], queries: np.ndarray, k: int, with_vectors: bool) -> list[list[Hit]]:
        """Exact top-k of each query among the records ``pool`` (with their vectors)."""
        if not pool:
            return [[] for _ in range(len(queries))]
        matrix = np.asarray([e["vector"] for e in pool], dtype=np.float32)
        labels, dists = exact_topk(matrix, np.arange(len(pool)), queries, k, self.spec.metric,
                                   unit=self.spec.normalize)
        out = []
        for lrow, drow in zip(labels, dists):
            keep = lrow >= 0
            d = drow[keep].astype(np.float64)
            out.append([self._hit(pool[j], s, dd, with_vectors)
                        for j, dd, s in zip(lrow[keep].tolist(), d.tolist(), to_scores(d, self.spec.metric).tolist())])
        return out

    def _ann(self, queries: np.ndarray, limit: int, expr: str | None, ef: int, fields: list[str]) -> list[list[dict]]:
        return self._call("search", self.physical, data=queries.tolist(), anns_field="vector", limit=limit,
                          filter=expr or "", output_fields=fields,
                          search_params={"metric_type": self._metric, "params": {"ef": max(ef, limit)}})

    def search(self, queries, k, where, *, exact, ef, with_vectors) -> list[list[Hit]]:
        with self.store._lock:
            if exact or k > MAX_TOPK:
                return self._exact(queries, k, where, with_vectors)
            expr, expr_exact = compile_expr(where)
            fields = FIELDS + (["vector"] if with_vectors else [])
            ef = ef or self.params.ef_search
            out: list[list[Hit] | None] = [None] * len(queries)
            todo = list(range(len(queries)))
            # a few more than k, then ties broken by insertion order (as every backend does): the
            # index's own order among equal distances differs between a batch and a single query
            limit = min(MAX_TOPK, k + TIE_MARGIN) if expr_exact else min(MAX_TOPK, 4 * k)
            total: int | None = None
            seqs: dict[str, int] = {}
            while todo:
                found = self._ann(queries[todo], limit, expr, ef, fields)
                again = []
                for q, res in zip(todo, found):
                    hits = []
                    for r in res:
                        e = r["entity"]
                        seqs[e["id"]] = e["seq"]
                        if expr_exact or matches(where, e["document"] if e["has_document"] else None,
                                                 e["metadata"] or {}):
                            d = self._distance(r["distance"])
                            hits.append(self._hit(e, to_scores([d], self.spec.metric)[0], d, with_vectors))
                    if len(hits) >= k or len(res) < limit:
                        out[q] = _ranked(hits, seqs)[:k]
                    else:
                        again.append(q)
                if not again:
                    break
                if limit >= MAX_TOPK:
                    for q, hits in zip(again, self._exact(queries[again], k, where, with_vectors)):
                        out[q] = hits
                    break
                todo, limit = again, min(MAX_TOPK, 4 * limit)
            # an index walk may come back short of k while k match: then scan exactly
            short = [q for q, hits in enumerate(out) if hits is not None and len(hits) < k]
            if short:
                total = self.count(where) if total is None else total
                short = [q for q in short if len(out[q]) < min(k, total)]
                for q, hits in zip(short, self._exact(queries[short], k, where, with_vectors) if short else []):
                    out[q] = hits
            return out  # type: ignore[return-value]

    def search_one(self, vector, k, ef, where=None) -> list[Hit] | None:
        return self.search(vector[None], k, where, exact=False, ef=ef, with_vectors=False)[0]

    def search_among(self, ids, queries, k) -> list[list[Hit]]:
        with self.store._lock:
            found = self._by_ids(ids, FIELDS + ["vector"])
            return self._scan([found[i] for i in dict.fromkeys(ids) if i in found], queries, k, False)

    def neighbors(self, ids, vectors, which, k, where, *, exact=False, ef=None) -> tuple[np.ndarray, np.ndarray]:
        which = np.asarray(which)
        found = self.search(np.asarray(vectors)[which], k + 1, where, exact=exact, ef=ef, with_vectors=False)
        return neighbour_arrays([[(h.id, h.distance) for h in hits] for hits in found], ids, which, k)

    def keyword(self, texts, k, where, *, with_vectors) -> list[list[Hit]]:
        with self.store._lock:
            expr, expr_exact = compile_expr(where)
            cond = "has_document == true" + (f" and {expr}" if expr else "")
            fields = FIELDS + (["vector"] if with_vectors else [])
            out = []
            for text in texts:
                if not text.strip():
                    out.append([])
                    continue
                limit = k if expr_exact else min(MAX_TOPK, 4 * k)
                while True:
                    res = self._call("search", self.physical, data=[text], anns_field="sparse", limit=min(limit, MAX_TOPK),
                                     filter=cond, output_fields=fields, search_params={"metric_type": "BM25"})[0]
                    hits = [self._hit(r["entity"], abs(float(r["distance"])), None, with_vectors) for r in res
                            if expr_exact or matches(where, r["entity"]["document"], r["entity"]["metadata"] or {})]
                    hits = [h for h in hits if h.score > 0]
                    if len(hits) >= k or len(res) < limit or limit >= MAX_TOPK:
                        break
                    limit *= 4
                hits.sort(key=lambda h: -h.score)
                out.append(hits[:k])
            return out

    def flush(self) -> None:
        with self.store._lock:
            self._call("flush", self.physical)


__all__ = ["MilvusCollection"]
