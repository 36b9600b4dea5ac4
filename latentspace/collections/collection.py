"""Collection: records bound to one space, with vector, exact, keyword and hybrid search."""

from __future__ import annotations

import hashlib
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..core.errors import InvalidInputError, NotFoundError, SpaceMismatchError, TruncationWarning
from ..core.space import SpaceSpec
from ..core.validation import (
    MAX_K,
    NORM_TOLERANCE,
    canonical_json,
    check_choice,
    check_float,
    check_ids,
    check_int,
    check_k,
    check_metadata,
    check_query_text,
    check_vectors,
)
from ..storage.filter import parse as parse_filter
from .fusion import DEFAULT_FUSION, FUSIONS, Fusion, fuse
from ..storage.hits import Hit, Record

if TYPE_CHECKING:
    from ..embed.base import Encoder
    from ..storage.embedded import CollectionStorage
    from ..storage.base import CollectionInfo
    from .store import Store

Mode = Literal["vector", "exact", "keyword", "hybrid"]
MODES = ("vector", "exact", "keyword", "hybrid")
_TINY, _HUGE = 5e-324, sys.float_info.max  # the smallest positive and the largest finite float
_FLOAT32 = np.dtype(np.float32)  # native float32 (another byte order is another dtype: the general path)


@dataclass(frozen=True)
class WriteResult:
    """What a write did: records added, replaced, and left as they were (same content);
    ``truncated``: documents embedded from their beginning only (longer than the model reads)."""

    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    truncated: int = 0


def content_hash(document: str | None, metadata: dict, vector: np.ndarray | None) -> str:
    h = hashlib.sha256(canonical_json([document, metadata]).encode())
    if vector is not None:
        h.update(vector.tobytes())
    return h.hexdigest()


def _per_id(where: str, n: int, documents, metadatas, vectors) -> tuple[list | None, list | None]:
    """``documents`` and ``metadatas`` as lists, checked to hold one entry per id (as ``vectors``)."""
    if documents is not None:
        if isinstance(documents, str) or not isinstance(documents, Sequence):
            raise InvalidInputError(f"documents must be a list of strings. Got {type(documents).__name__}.")
        documents = list(documents)
        for i, d in enumerate(documents):
            if d is not None and not isinstance(d, str):
                raise InvalidInputError(f"documents[{i}] must be a string or None. Got {type(d).__name__}.")
    if metadatas is not None:
        if isinstance(metadatas, dict) or not isinstance(metadatas, Sequence):
            raise InvalidInputError(f"metadatas must be a list of dicts (one per id). Got {type(metadatas).__name__}.")
        metadatas = list(metadatas)
    lengths = {"ids": n}
    if documents is not None:
        lengths["documents"] = len(documents)
    if metadatas is not None:
        lengths["metadatas"] = len(metadatas)
    if vectors is not None and hasattr(vectors, "__len__"):
        lengths["vectors"] = len(vectors)
    if len(set(lengths.values())) > 1:
        raise InvalidInputError(
            f"{where}: the lists have different lengths ({', '.join(f'{k}={v}' for k, v in lengths.items())}); "
            "give one entry per id."
        )
    return documents, metadatas


class Collection:
    """A persistent set of ``(id, vector, document, metadata)`` records in one space."""

    def __init__(self, store: Store, storage: CollectionStorage, info: CollectionInfo, encoder: Encoder | None):
        self.store = store
        self._storage = storage
        self._info = info
        self._encoder = encoder
        spec = info.spec
        #: what the one-vector fast path reads, in one object: right after an HNSW walk each
        #: distinct object a query touches is a cache miss (0.3-1 us each on this project's VMs)
        #: the squared norm a query must have: unit within NORM_TOLERANCE in a normalized space,
        #: else positive and finite (one chained comparison also refuses NaN)
        lo, hi = ((1.0 - NORM_TOLERANCE) ** 2, (1.0 + NORM_TOLERANCE) ** 2) if spec.normalize else (_TINY, _HUGE)
        self._fast = ((spec.dim,), lo, hi, spec._fingerprint, info.encoder is None, storage.search_one)

    # -- identity ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._info.name

    @property
    def spec(self) -> SpaceSpec:
        return self._info.spec

    @property
    def metadata(self) -> dict:
        return dict(self._info.metadata)

    @property
    def encoder(self) -> Encoder:
        """The collection's encoder; rebuilt from its stored config on first use."""
        if self._encoder is None:
            if self._info.encoder is None:
                raise InvalidInputError(
                    f"Collection {self.name!r} was created from a SpaceSpec without an encoder: it cannot embed text. "
                    "Pass vectors (vectors=..., vector=...) or open it with get_collection(name, encoder=...)."
                )
            from ..embed import encoder_from_config

            encoder = encoder_from_config(self._info.encoder)
            self.spec.require_same(encoder.spec, f"Rebuilding the encoder of collection {self.name!r}")
            self._encoder = encoder
        return self._encoder

    @property
    def has_encoder(self) -> bool:
        return self._encoder is not None or self._info.encoder is not None

    def info(self):
        return self.store.collection_info(self.name)

    def __len__(self) -> int:
        return self._storage.count()

    def count(self, where: dict | None = None) -> int:
        return self._storage.count(parse_filter(where))

    def explain_search(self, where: dict | None = None, *, k: int = 10, ef: int | None = None) -> dict:
        """How a vector search with this filter would run now. The embedded store chooses by
        measurement between an exact scan of the matching records, the HNSW walk restricted
        to them and a post-filter of the unrestricted walk: ``{"matches", "plan",
        "estimates" (seconds a query), "measured" (the plans timed on this filter)}``."""
        k = check_k(k)
        if ef is not None:
            ef = check_int(ef, "ef", "explain_search", 1, 100_000)
        return self._storage.explain(parse_filter(where), k, ef)

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, {self.spec.describe()}, metric={self.spec.metric})"

    # -- writes -------------------------------------------------------------------------
    def add(self, ids, documents=None, metadatas=None, *, vectors=None, space: SpaceSpec | None = None) -> WriteResult:
        """Add new records (an id that exists raises AlreadyExistsError; nothing is written)."""
        return self._write(ids, documents, metadatas, vectors, space, replace=False)

    def upsert(self, ids, documents=None, metadatas=None, *, vectors=None, space: SpaceSpec | None = None) -> WriteResult:
        """Add or replace records; records whose content is unchanged are left alone."""
        return self._write(ids, documents, metadatas, vectors, space, replace=True)

    def update(self, ids, documents=None, metadatas=None, *, vectors=None, space: SpaceSpec | None = None,
               merge: bool = True) -> WriteResult:
        """Change some fields of existing records and keep the rest, in one atomic batch.

        ``metadatas`` are merged into the stored metadata key by key (``merge=False``
        replaces it whole). New ``documents`` are embedded again when the collection has an
        encoder and no ``vectors`` are given, so a record's vector always matches its text;
        otherwise the stored vectors are kept. Every id must exist: a missing one raises
        :class:`NotFoundError` naming it, and nothing is written (use :meth:`upsert` to add).
        """
        ids = check_ids(ids, "update")
        if documents is None and metadatas is None and vectors is None:
            raise InvalidInputError("update needs documents=, metadatas= or vectors= (what to change).")
        documents, metadatas = _per_id("update", len(ids), documents, metadatas, vectors)
        # new text with an encoder is embedded again; otherwise the stored vectors stay
        keep_vectors = vectors is None and not (documents is not None and self._info.encoder is not None)
        rows = {r.id: r for r in self._storage.rows(ids, None, None, 0, keep_vectors)}
        missing = [i for i in ids if i not in rows]
        if missing:
            shown = ", ".join(repr(i) for i in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise NotFoundError(f"update: {len(missing)} id(s) not in collection {self.name!r}: {shown}. "
                                "Nothing was written; use upsert to add records.")
        docs = documents if documents is not None else [rows[i].document for i in ids]
        if metadatas is None:
            metas = [rows[i].metadata for i in ids]
        elif merge:
            metas = [{**rows[i].metadata, **check_metadata(m, n)} for n, (i, m) in enumerate(zip(ids, metadatas))]
        else:
            metas = metadatas
        if keep_vectors:
            vectors, space = np.stack([rows[i].vector for i in ids]), self.spec
        # an encoder's vectors are its documents' embeddings: hashed like embedded ones, so a
        # later upsert of the same text and metadata is still recognised as unchanged
        derived = keep_vectors and self._info.encoder is not None
        return self._write(ids, docs, metas, vectors, space, replace=True, derived=derived)

    def _check_vectors(self, vectors: Any, space: SpaceSpec | None, what: str) -> np.ndarray:
        if space is not None:
            self.spec.require_same(space, f"{what} for collection {self.name!r}")
        elif self._info.encoder is not None:
            raise SpaceMismatchError(
                f"{what}: collection {self.name!r} is bound to the space of its encoder ({self.spec.describe()}); "
                "vectors must name their space: pass space=encoder.spec (or embed text through the collection)."
            )
        return check_vectors(vectors, self.spec.dim, metric=self.spec.metric, normalized=self.spec.normalize, what=what)

    def _write(self, ids, documents, metadatas, vectors, space, *, replace: bool, derived: bool = False) -> WriteResult:
        where = "upsert" if replace else "add"
        ids = check_ids(ids, where)
        n = len(ids)
        documents, metadatas = _per_id(where, n, documents, metadatas, vectors)
        metas = [check_metadata(m, i) for i, m in enumerate(metadatas)] if metadatas is not None else [{}] * n
        docs: list[str | None] = documents if documents is not None else [None] * n
        explicit = vectors is not None
        if explicit:
            vecs = self._check_vectors(vectors, space, "vectors")
        else:
            if space is not None:
                raise InvalidInputError(f"{where}: space= names the space of vectors=, but no vectors were given.")
            if documents is None:
                raise InvalidInputError(f"{where}: pass documents= to embed, or vectors= (with space=) to store.")
            for i, d in enumerate(docs):
                if d is None or not d.strip():
                    raise InvalidInputError(f"documents[{i}] is empty; an empty text has no meaning to embed.")
            vecs = None
        hashes = [content_hash(docs[i], metas[i], vecs[i] if explicit and not derived else None) for i in range(n)]
        unchanged = 0
        keep = list(range(n))
        if replace:
            existing = self._storage.hashes(ids)
            keep = [i for i in range(n) if existing.get(ids[i]) != hashes[i]]
            unchanged = n - len(keep)
            if not keep:
                return WriteResult(unchanged=unchanged)
        truncated = 0
        if not explicit:
            vecs = np.empty((n, self.spec.dim), dtype=np.float32)
            texts = [docs[i] for i in keep]
            vecs[keep] = self.encoder.encode_documents(texts)
            truncated = self._warn_truncated(texts, where)
        sel = np.asarray(keep)
        added, replaced = self._storage.write(
            [ids[i] for i in keep], np.ascontiguousarray(vecs[sel]), [docs[i] for i in keep],
            [metas[i] for i in keep], [hashes[i] for i in keep], replace=replace,
        )
        return WriteResult(added=added, replaced=replaced, unchanged=unchanged, truncated=truncated)

    def _warn_truncated(self, texts: list[str], where: str) -> int:
        enc = self.encoder
        prefix = self.spec.document_prefix
        n = enc.count_truncated([prefix + t for t in texts] if prefix else texts)
        if n:
            warnings.warn(
                f"{where}: {n} of {len(texts)} document(s) are longer than {self.spec.model}'s limit of "
                f"{enc.token_limit} tokens and were embedded from their first {enc.token_limit} tokens only; the "
                "rest of their text is not searchable by vector. Split long texts first (latentspace.chunk_text, or "
                "`latentspace ingest --chunk-size`).",
                TruncationWarning, stacklevel=3,
            )
        return n

    def delete(self, ids: Sequence[str] | None = None, where: dict | None = None) -> int:
        """Delete by ids, by filter, or both (ids that match the filter). Returns how many were deleted."""
        if ids is None and where is None:
            raise InvalidInputError("delete needs ids= or where=; to delete everything use store.delete_collection.")
        if ids is not None:
            ids = check_ids(ids, "delete")
        return self._storage.delete(ids, parse_filter(where))

    def get(self, ids=None, where: dict | None = None, limit: int | None = None, offset: int = 0,
            include_vectors: bool = False) -> list[Record]:
        """Records by id (in the order asked; unknown ids are left out) and/or filter."""
        if ids is not None:
            ids = check_ids(ids, "get", allow_empty=True)
        if limit is not None:
            limit = check_int(limit, "limit", "get", 0, 2**62)
        offset = check_int(offset, "offset", "get", 0, 2**62)
        rows = self._storage.rows(ids, parse_filter(where), limit, offset, include_vectors)
        return [Record(r.id, r.document, r.metadata, r.vector, r.content_hash) for r in rows]

    def migrate(self, new_encoder, **options):
        """Move this collection to ``new_encoder``'s space (see :func:`latentspace.collections.migrate.migrate`)."""
        from .migrate import migrate

        return migrate(self, new_encoder, **options)

    def flush(self) -> None:
        """Bring the on-disk index up to date (it is otherwise written on close)."""
        self._storage.flush()

    # -- search -------------------------------------------------------------------------
    def search(
        self,
        query: str | None = None,
        *,
        vector: Any = None,
        space: SpaceSpec | None = None,
        k: int = 10,
        where: dict | None = None,
        mode: Mode = "vector",
        alpha: float = 0.5,
        ef: int | None = None,
        include_vectors: bool = False,
        fusion: Fusion = DEFAULT_FUSION,
    ) -> list[Hit]:
        """Search by text or by a vector. ``mode``: vector (ANN), exact, keyword (BM25) or hybrid.

        Hybrid search fuses the vector and keyword lists with ``fusion`` (``"rrf"``: reciprocal
        rank fusion; ``"convex"``: min-max scaled scores; the default was measured, see
        ``bench/hybrid.py``); ``alpha`` weighs the vector side (1.0 = vector only, 0.0 =
        keyword only).
        """
        if vector is not None and mode == "vector" and not include_vectors and fusion in FUSIONS:
            fast = self._search_fast(vector, space, k, ef, alpha, where)
            if fast is not None:
                return fast
        if vector is not None:
            arr = np.asarray(vector) if not isinstance(vector, (str, bytes)) else vector
            if getattr(arr, "ndim", 1) != 1:
                raise InvalidInputError("search(vector=...) takes one vector (1-D); use search_batch for several.")
            return self.search_batch(None, vectors=[vector], space=space, k=k, where=where, mode=mode, alpha=alpha,
                                     ef=ef, include_vectors=include_vectors, fusion=fusion)[0]
        if query is None:
            raise InvalidInputError("search needs a query text or vector=.")
        check_query_text(query)
        return self.search_batch([query], k=k, where=where, mode=mode, alpha=alpha, ef=ef,
                                 include_vectors=include_vectors, fusion=fusion)[0]

    def _search_fast(self, vector, space, k, ef, alpha=0.5, where=None) -> list[Hit] | None:
        """The common case, one float32 vector (with or without a filter), with the same checks done lean.

        Returns None to hand anything unusual to the general path (which raises the errors).
        """
        shape, lo, hi, fingerprint, no_encoder, search_one = self._fast
        if not (type(vector) is np.ndarray and vector.shape == shape and vector.dtype is _FLOAT32):
            return None
        if type(k) is not int or not 1 <= k <= MAX_K:
            return None
        if ef is not None and (type(ef) is not int or not 1 <= ef <= 100_000):
            return None
        # alpha is unused by vector search, checked alike
        if (type(alpha) is not float and type(alpha) is not int) or not 0.0 <= alpha <= 1.0:
            return None
        if space is None:
            if not no_encoder:
                return None
        elif not isinstance(space, SpaceSpec) or space._fingerprint != fingerprint:
            return None
        if not lo <= float(vector.dot(vector)) <= hi:  # NaN, inf, zero, not unit where it must be
            return None
        return search_one(vector, k, ef, None if where is None else parse_filter(where))

    def search_batch(
        self,
        queries: Sequence[str] | None = None,
        *,
        vectors: Any = None,
        space: SpaceSpec | None = None,
        k: int = 10,
        where: dict | None = None,
        mode: Mode = "vector",
        alpha: float = 0.5,
        ef: int | None = None,
        include_vectors: bool = False,
        fusion: Fusion = DEFAULT_FUSION,
    ) -> list[list[Hit]]:
        """Several searches at once, with the options of :meth:`search`."""
        k = check_k(k)
        check_choice(mode, "mode", "search", MODES)
        check_choice(fusion, "fusion", "search", FUSIONS)
        alpha = check_float(alpha, "alpha", "search", 0.0, 1.0)
        if ef is not None:
            ef = check_int(ef, "ef", "search", 1, 100_000)
        node = parse_filter(where)  # checked before any embedding
        if (queries is None) == (vectors is None):
            raise InvalidInputError("search_batch needs either queries (texts) or vectors=, not both.")
        texts: list[str] | None = None
        if queries is not None:
            if isinstance(queries, str) or not isinstance(queries, Sequence):
                raise InvalidInputError("search_batch(queries) takes a list of strings; use search() for one query.")
            texts = [check_query_text(q, "search_batch") for q in queries]
            if not texts:
                return []
        qvecs = None
        if vectors is not None:
            if mode in ("keyword", "hybrid"):
                raise InvalidInputError(f"mode={mode!r} needs query text (BM25 has no vector input); use mode='vector'.")
            qvecs = self._check_vectors(vectors, space, "query vector")
        elif mode != "keyword":
            qvecs = self.encoder.encode_queries(texts)
        return self._retrieve(texts, qvecs, k, node, mode, alpha, ef, include_vectors, fusion)

    def _retrieve(self, texts, qvecs, k, where, mode, alpha, ef, include_vectors, fusion) -> list[list[Hit]]:
        backend = self._storage
        if mode == "keyword":
            return backend.keyword(texts, k, where, with_vectors=include_vectors)
        if mode != "hybrid":
            return backend.search(qvecs, k, where, exact=mode == "exact", ef=ef, with_vectors=include_vectors)
        depth = min(MAX_K, max(3 * k, 50))
        vec_lists = backend.search(qvecs, depth, where, exact=False, ef=ef, with_vectors=include_vectors)
        key_lists = backend.keyword(texts, depth, where, with_vectors=include_vectors)
        out = []
        for vlist, klist in zip(vec_lists, key_lists):
            by_id = {h.id: h for h in klist}
            by_id.update((h.id, h) for h in vlist)  # the vector side's hit carries the distance
            fused = fuse({"vector": [(h.id, h.score) for h in vlist], "keyword": [(h.id, h.score) for h in klist]},
                         alpha, fusion)
            out.append([by_id[i]._replace(score=score, ranks=ranks) for i, score, ranks in fused[:k]])
        return out
