"""Matryoshka funnel search: a short-vector index finds candidates, the full vectors re-rank them.

A funnel is two ordinary collections that share ids: ``coarse`` holds the vectors cut to
``dim`` values (its own space, ``truncate_dim=dim``) and is what the ANN index searches;
``full`` holds the full vectors. A query is embedded once at full size, cut for the coarse
search, and its ``candidates`` are re-scored exactly against their full vectors.

>>> funnel = MatryoshkaFunnel.create(store, "docs", encoder, dim=128)   # doctest: +SKIP
>>> funnel.add(ids, documents)                                             # doctest: +SKIP
>>> funnel.search("question", k=10, candidates=100)                       # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..collections.graph import search_among
from ..storage.hits import Hit
from ..core.errors import SpaceMismatchError
from ..core.validation import MAX_K, check_int, check_k, check_query_text
from ..embed.truncated import TruncatedEncoder, truncate


def coarse_name(name: str, dim: int) -> str:
    return f"{name}-d{dim}"


class MatryoshkaFunnel:
    """Search ``coarse`` (truncated space) and re-rank with ``full`` (same model, full vectors)."""

    def __init__(self, coarse, full):
        c, f = coarse.spec, full.spec
        if c.truncate_dim is None or c.truncate_dim >= f.dim:
            raise SpaceMismatchError(
                f"The coarse collection {coarse.name!r} must be a truncation of {full.name!r}: its space has "
                f"truncate_dim={c.truncate_dim}, the full space is {f.dim}-d."
            )
        expected = dataclasses.replace(f, dim=c.truncate_dim, truncate_dim=c.truncate_dim)
        expected.require_same(c, f"Funnel {coarse.name!r} -> {full.name!r}")
        self.coarse, self.full = coarse, full
        self.dim = c.truncate_dim

    @classmethod
    def create(cls, store, name: str, encoder, dim: int, *, metric: str = "cosine") -> MatryoshkaFunnel:
        """Create the full collection ``name`` and the coarse ``name-d{dim}`` for ``encoder``."""
        small = TruncatedEncoder(encoder, dim)
        full = store.create_collection(name, encoder=encoder, metric=metric)
        try:
            coarse = store.create_collection(coarse_name(name, dim), encoder=small, metric=metric)
        except Exception:
            store.delete_collection(name)
            raise
        return cls(coarse, full)

    @classmethod
    def build(cls, full, dim: int, *, batch: int = 5_000) -> MatryoshkaFunnel:
        """Create (or bring up to date) the coarse ``{name}-d{dim}`` of an existing collection from
        its stored vectors: nothing is re-embedded. Records gone from ``full`` leave the coarse one."""
        from ..collections.graph import record_arrays
        from ..core.errors import NotFoundError

        store = full.store
        name = coarse_name(full.name, dim)
        if full.has_encoder:
            small_enc = TruncatedEncoder(full.encoder, dim)
            kw = {"encoder": small_enc, "metric": full.spec.metric}
        else:
            check_int(dim, "dim", "MatryoshkaFunnel.build", 1, full.spec.dim - 1)
            kw = {"space": dataclasses.replace(full.spec, dim=dim, truncate_dim=dim)}
        try:
            coarse = store.get_collection(name, encoder=kw.get("encoder"))
        except NotFoundError:
            coarse = store.create_collection(name, **kw)
        funnel = cls(coarse, full)
        rec = record_arrays(full)
        for s in range(0, len(rec), batch):
            part = slice(s, s + batch)
            coarse.upsert(rec.ids[part], rec.documents[part], rec.metadatas[part],
                          vectors=truncate(rec.vectors[part], full.spec, dim), space=coarse.spec)
        gone = sorted({r.id for r in coarse.get()} - set(rec.ids))
        if gone:
            coarse.delete(ids=gone)
        return funnel

    @classmethod
    def open(cls, store, name: str, dim: int, encoder=None) -> MatryoshkaFunnel:
        full = store.get_collection(name, encoder=encoder)
        small = TruncatedEncoder(encoder, dim) if encoder is not None else None
        return cls(store.get_collection(coarse_name(name, dim), encoder=small), full)

    def __len__(self) -> int:
        return len(self.full)

    def add(self, ids, documents=None, metadatas=None, *, vectors=None, space=None) -> None:
        """Add to both collections; documents are embedded once, at full size."""
        if vectors is None:
            vectors = self.full.encoder.encode_documents(documents)
            space = self.full.spec
        self.full.upsert(ids, documents, metadatas, vectors=vectors, space=space)
        self.coarse.upsert(ids, documents, metadatas, vectors=truncate(vectors, self.full.spec, self.dim),
                           space=self.coarse.spec)

    def delete(self, ids) -> int:
        self.coarse.delete(ids=ids)
        return self.full.delete(ids=ids)

    def search(self, query: str | None = None, *, vector=None, space=None, k: int = 10, candidates: int | None = None,
               where: dict | None = None) -> list[Hit]:
        """Top ``k`` by full-vector score among the coarse index's top ``candidates`` (default ``10 k``)."""
        k = check_k(k, "funnel search")
        candidates = check_int(candidates if candidates is not None else min(MAX_K, 10 * k), "candidates",
                               "funnel search", k, MAX_K)
        if vector is None:
            check_query_text(query, "funnel search")
            q = self.full.encoder.encode_queries([query])[0]
        else:
            q = self.full._check_vectors(np.asarray(vector)[None] if np.ndim(vector) == 1 else vector, space,
                                         "query vector")[0]
        qc = truncate(q[None], self.full.spec, self.dim)[0]
        # a wide candidate list needs a wide graph walk: ef = 2 x candidates
        cand = self.coarse.search(vector=qc, space=self.coarse.spec, k=candidates, where=where,
                                  ef=min(100_000, 2 * candidates))
        if not cand:
            return []
        # re-ranked exactly by the candidates' full vectors, in the full collection (whose
        # documents and metadata are the truth: the coarse copy could lag behind it)
        return search_among(self.full, [h.id for h in cand], q, k)
