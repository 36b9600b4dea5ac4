"""``/v1/backend``: the storage interface over HTTP, for ``ls.connect`` (the remote backend).

One route per method of :class:`~latentspace.storage.base.StoreBackend` and
:class:`~latentspace.storage.base.CollectionBackend`, so that a remote client runs the whole
Collection layer (and the conformance suite) against this server. The server does not trust
the client's checks: ids, documents, metadata, hashes and vectors are checked again, every
call that carries or searches vectors must name the collection's space (409 otherwise), and
the keys, scopes and limits of the REST routes apply (the store's own names ``~name~...``
count as ``name``).
"""

# no "from __future__ import annotations": FastAPI reads the routes' annotations at run time

import json
import re
from functools import lru_cache
from typing import Any

import numpy as np

from ..core.errors import InvalidInputError
from ..core.space import SpaceSpec
from ..core.validation import check_ids, check_metadata, check_name, check_texts, check_vectors
from ..storage.filter import parse
from ..storage.remote import pack, unpack

_INTERNAL_PART = re.compile(r"^[A-Za-z0-9]{1,64}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")


@lru_cache(maxsize=256)
def _space_of_json(text: str) -> SpaceSpec:
    return SpaceSpec.from_dict(json.loads(text))


def parse_space(space: dict) -> SpaceSpec:
    """The SpaceSpec a request names, parsed once per distinct JSON (a client repeats one)."""
    return _space_of_json(json.dumps(space, sort_keys=True, default=str))


def base_name(name: str) -> str:
    """The collection a name belongs to: itself, or ``name`` of the store's own ``~name~...``
    (checked: a path trick or a bad name is InvalidInputError)."""
    if isinstance(name, str) and name.startswith("~"):
        parts = name[1:].split("~")
        if len(parts) < 2 or not all(_INTERNAL_PART.match(p) for p in parts[1:]):
            raise InvalidInputError(f"{name!r} is not a collection name of this store.")
        return check_name(parts[0])
    return check_name(name)


def add_backend_routes(app, store, caller, allow, settings, errors) -> None:
    from fastapi import Depends
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field

    backend = store.backend

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class Packed(Strict):
        shape: list[int] = Field(description="[n, dim]")
        b64: str = Field(description="n * dim little-endian float32, base64")

    class CreateBody(Strict):
        name: str
        spec: dict
        encoder: dict | None = None
        hnsw: dict | None = None
        metadata: dict | None = None

    class RenameBody(Strict):
        new_name: str

    class SwapBody(Strict):
        new_internal: str
        action: str = Field("switch", max_length=300)

    class CountBody(Strict):
        where: dict | None = None
        with_documents: bool = False

    class IdsBody(Strict):
        ids: list[str]
        space: dict | None = None

    class WriteBody(Strict):
        ids: list[str]
        vectors: Packed
        documents: list[str | None]
        metadatas: list[dict]
        hashes: list[str]
        replace: bool
        space: dict

    class DeleteBody(Strict):
        ids: list[str] | None = None
        where: dict | None = None

    class RowsBody(Strict):
        ids: list[str] | None = None
        where: dict | None = None
        limit: int | None = None
        offset: int = Field(0, ge=0)
        with_vectors: bool = False
        space: dict | None = None

    class SearchBody(Strict):
        queries: Packed
        k: int
        where: dict | None = None
        exact: bool = False
        ef: int | None = Field(None, ge=1, le=10_000)
        with_vectors: bool = False
        space: dict

    class AmongBody(Strict):
        ids: list[str]
        queries: Packed
        k: int
        space: dict

    class KeywordBody(Strict):
        texts: list[str]
        k: int
        where: dict | None = None
        with_vectors: bool = False

    class EmbedBody(Strict):
        texts: list[str]
        kind: str = Field("queries", pattern="^(queries|documents)$")

    class TokensBody(Strict):
        texts: list[str]

    def json(content: Any) -> JSONResponse:
        return JSONResponse(content)

    def col(name: str, entry, scope: str):
        allow(entry, scope, base_name(name))
        return backend.open_collection(name)

    def same_space(c, space: dict | None, what: str) -> None:
        if space is None:
            raise InvalidInputError(f"{what} must name the space of its vectors (\"space\": a SpaceSpec).")
        spec = parse_space(space)
        if spec is not c.spec and spec != c.spec:
            c.spec.require_same(spec, f"{what} on collection {c.name!r}")

    def limit(n: int, most: int, what: str) -> None:
        if n > most:
            raise InvalidInputError(f"{what}: at most {most:,} per call on this server; got {n:,}.")

    def check_k(k: int) -> None:
        if not 1 <= k <= settings.max_k:
            raise InvalidInputError(f"k must be in [1, {settings.max_k}] on this server; got {k}.")

    def queries_of(c, packed: Packed) -> np.ndarray:
        q = unpack(packed.model_dump(), "queries")
        limit(len(q), settings.max_queries, "queries")
        if len(q) == 0:
            return q
        return check_vectors(q, c.spec.dim, metric=c.spec.metric, normalized=False, what="queries")

    def hits_json(lists) -> JSONResponse:
        return json({"hits": [[h.to_dict() for h in hits] for hits in lists]})

    # -- the store ------------------------------------------------------------------------------
    @app.get("/v1/backend", tags=["backend"], responses=errors)
    def about(entry=Depends(caller)) -> dict:
        allow(entry, "read") if entry is not None and entry.collections is None else None
        from dataclasses import asdict

        from .app import _version

        return {"version": _version(), "capabilities": asdict(backend.capabilities),
                "limits": {"max_k": settings.max_k, "max_batch": settings.max_batch,
                           "max_queries": settings.max_queries, "max_body_bytes": settings.max_body_bytes},
                "disk_bytes": backend.disk_bytes() if entry is None or entry.collections is None else 0}

    @app.get("/v1/backend/collections", tags=["backend"], responses=errors)
    def list_all(entry=Depends(caller)) -> list[dict]:
        infos = [i.to_dict() for i in backend.list_collections()]
        if entry is not None:
            infos = [i for i in infos if entry.allows("read", i["name"])]
        return infos

    @app.post("/v1/backend/collections", tags=["backend"], responses=errors, status_code=201)
    def create(body: CreateBody, entry=Depends(caller)) -> dict:
        allow(entry, "admin", base_name(body.name))
        from ..storage.index import HnswParams

        if body.encoder is not None and body.encoder.get("trust_remote_code"):
            raise InvalidInputError("The server does not load models with trust_remote_code.")
        backend.create_collection(body.name, SpaceSpec.from_dict(body.spec), body.encoder,
                                  HnswParams.from_dict(body.hnsw), check_metadata(body.metadata))
        return {"created": body.name}

    @app.get("/v1/backend/collections/{name}", tags=["backend"], responses=errors)
    def info(name: str, entry=Depends(caller)) -> dict:
        return col(name, entry, "read")[0].to_dict()

    @app.delete("/v1/backend/collections/{name}", tags=["backend"], responses=errors)
    def delete_collection(name: str, entry=Depends(caller)) -> dict:
        allow(entry, "admin", base_name(name))
        backend.delete_collection(name)
        return {"dropped": name}

    @app.post("/v1/backend/collections/{name}/rename", tags=["backend"], responses=errors)
    def rename(name: str, body: RenameBody, entry=Depends(caller)) -> dict:
        allow(entry, "admin", check_name(name))
        allow(entry, "admin", check_name(body.new_name))
        backend.rename_collection(name, body.new_name)
        return {"renamed": name, "to": body.new_name}

    @app.post("/v1/backend/collections/{name}/swap", tags=["backend"], responses=errors)
    def swap(name: str, body: SwapBody, entry=Depends(caller)) -> dict:
        allow(entry, "admin", check_name(name))
        if base_name(body.new_internal) != name or body.new_internal == name:
            raise InvalidInputError(f"{body.new_internal!r} is not one of {name!r}'s own collections.")
        backend.swap(name, body.new_internal, body.action)
        return {"switched": name}

    @app.get("/v1/backend/collections/{name}/history", tags=["backend"], responses=errors)
    def history(name: str, entry=Depends(caller)) -> list[dict]:
        allow(entry, "read", check_name(name))
        return json(backend.collection_history(name))

    @app.post("/v1/backend/collections/{name}/rollback", tags=["backend"], responses=errors)
    def rollback(name: str, entry=Depends(caller)) -> dict:
        allow(entry, "admin", check_name(name))
        backend.rollback_collection(name)
        return {"rolled_back": name}

    @app.get("/v1/backend/collections/{name}/retired", tags=["backend"], responses=errors)
    def retired(name: str, entry=Depends(caller)) -> list[str]:
        allow(entry, "read", check_name(name))
        return backend.retired_names(name)

    @app.post("/v1/backend/collections/{name}/drop_retired", tags=["backend"], responses=errors)
    def drop_retired(name: str, entry=Depends(caller)) -> dict:
        allow(entry, "admin", check_name(name))
        return {"dropped": backend.drop_retired(name)}

    # -- a collection's records -------------------------------------------------------------------
    @app.post("/v1/backend/collections/{name}/count", tags=["backend"], responses=errors)
    def count(name: str, body: CountBody, entry=Depends(caller)) -> dict:
        _, c = col(name, entry, "read")
        return {"count": c.count_with_documents() if body.with_documents else c.count(parse(body.where))}

    @app.post("/v1/backend/collections/{name}/hashes", tags=["backend"], responses=errors)
    def hashes(name: str, body: IdsBody, entry=Depends(caller)) -> dict:
        _, c = col(name, entry, "read")
        limit(len(body.ids), settings.max_batch, "ids")
        return {"hashes": c.hashes(body.ids)}

    @app.post("/v1/backend/collections/{name}/vectors", tags=["backend"], responses=errors)
    def vectors(name: str, body: IdsBody, entry=Depends(caller)) -> dict:
        _, c = col(name, entry, "read")
        limit(len(body.ids), settings.max_batch, "ids")
        same_space(c, body.space, "Reading vectors")
        found, vecs = c.vectors(body.ids)
        return {"ids": found, "vectors": pack(vecs)}

    @app.post("/v1/backend/collections/{name}/write", tags=["backend"], responses=errors)
    def write(name: str, body: WriteBody, entry=Depends(caller)) -> dict:
        _, c = col(name, entry, "write")
        n = len(body.ids)
        limit(n, settings.max_batch, "records")
        same_space(c, body.space, "A write")
        ids = check_ids(body.ids, "write")
        vecs = unpack(body.vectors.model_dump())
        lengths = {len(vecs), len(body.documents), len(body.metadatas), len(body.hashes)}
        if lengths != {n}:
            raise InvalidInputError(f"write: ids, vectors, documents, metadatas and hashes must have one entry per "
                                    f"id ({n}); got lengths {sorted(lengths)}.")
        vecs = check_vectors(vecs, c.spec.dim, metric=c.spec.metric, normalized=c.spec.normalize)
        metas = [check_metadata(m, i) for i, m in enumerate(body.metadatas)]
        for i, h in enumerate(body.hashes):
            if not _HASH.match(h):
                raise InvalidInputError(f"hashes[{i}] must be a sha256 hex digest.")
        added, replaced = c.write(ids, vecs, list(body.documents), metas, list(body.hashes), replace=body.replace)
        return {"added": added, "replaced": replaced}

    @app.post("/v1/backend/collections/{name}/delete", tags=["backend"], responses=errors)
    def delete(name: str, body: DeleteBody, entry=Depends(caller)) -> dict:
        _, c = col(name, entry, "write")
        if body.ids is not None:
            limit(len(body.ids), settings.max_batch, "ids")
        return {"deleted": c.delete(body.ids, parse(body.where))}

    @app.post("/v1/backend/collections/{name}/rows", tags=["backend"], responses=errors)
    def rows(name: str, body: RowsBody, entry=Depends(caller)) -> dict:
        _, c = col(name, entry, "read")
        if body.ids is not None:
            limit(len(body.ids), settings.max_batch, "ids")
        elif body.limit is None or not 0 <= body.limit <= settings.max_batch:
            raise InvalidInputError(f"limit must be in [0, {settings.max_batch}] on this server; got {body.limit}.")
        if body.with_vectors:
            same_space(c, body.space, "Reading vectors")
        got = c.rows(body.ids, parse(body.where), body.limit, body.offset, body.with_vectors)
        out = {"rows": [{"id": r.id, "document": r.document, "metadata": r.metadata, "hash": r.content_hash}
                        for r in got], "vectors": None}
        if body.with_vectors:
            out["vectors"] = pack(np.stack([r.vector for r in got]) if got else np.zeros((0, c.spec.dim)))
        return json(out)

    # -- search -----------------------------------------------------------------------------------
    @app.post("/v1/backend/collections/{name}/search", tags=["backend"], responses=errors)
    async def search(name: str, body: SearchBody, entry=Depends(caller)) -> dict:
        _, c = col(name, entry, "read")
        check_k(body.k)
        same_space(c, body.space, "A search")
        q = queries_of(c, body.queries)
        where = parse(body.where)
        if len(q) == 1 and not body.exact and not body.with_vectors:
            one = c.search_one(q[0], body.k, body.ef, where)
            if one is not None:
                return hits_json([one])
        return hits_json(c.search(q, body.k, where, exact=body.exact, ef=body.ef, with_vectors=body.with_vectors)
                         if len(q) else [])

    @app.post("/v1/backend/collections/{name}/search_among", tags=["backend"], responses=errors)
    def search_among(name: str, body: AmongBody, entry=Depends(caller)) -> dict:
        _, c = col(name, entry, "read")
        check_k(body.k)
        limit(len(body.ids), settings.max_batch * 10, "ids")
        same_space(c, body.space, "A search")
        return hits_json(c.search_among(body.ids, queries_of(c, body.queries), body.k))

    @app.post("/v1/backend/collections/{name}/keyword", tags=["backend"], responses=errors)
    def keyword(name: str, body: KeywordBody, entry=Depends(caller)) -> dict:
        _, c = col(name, entry, "read")
        check_k(body.k)
        limit(len(body.texts), settings.max_queries, "texts")
        return hits_json(c.keyword(body.texts, body.k, parse(body.where), with_vectors=body.with_vectors))

    @app.post("/v1/backend/collections/{name}/flush", tags=["backend"], responses=errors)
    def flush(name: str, entry=Depends(caller)) -> dict:
        _, c = col(name, entry, "write")
        c.flush()
        return {"flushed": name}

    # -- the collection's encoder, run here ---------------------------------------------------------
    encoders: dict[str, Any] = {}  # fingerprint -> encoder, loaded once per process

    def encoder_of(name: str, entry):
        info, _ = col(name, entry, "read")
        if info.encoder is None:
            raise InvalidInputError(f"Collection {name!r} has no encoder: it takes vectors, not text.")
        enc = encoders.get(info.spec.fingerprint)
        if enc is None:
            from ..embed import encoder_from_config

            if info.encoder.get("trust_remote_code"):
                raise InvalidInputError("The server does not load models with trust_remote_code.")
            enc = encoder_from_config(info.encoder)
            info.spec.require_same(enc.spec, f"Rebuilding the encoder of collection {name!r}")
            encoders[info.spec.fingerprint] = enc
        return enc

    @app.post("/v1/backend/collections/{name}/embed", tags=["backend"], responses=errors)
    def embed(name: str, body: EmbedBody, entry=Depends(caller)) -> dict:
        limit(len(body.texts), settings.max_batch, "texts")
        enc = encoder_of(name, entry)
        texts = check_texts(body.texts, body.kind)
        vecs = enc.encode_queries(texts) if body.kind == "queries" else enc.encode_documents(texts)
        return {"vectors": pack(vecs), "space": enc.spec.to_dict()}

    @app.post("/v1/backend/collections/{name}/tokens", tags=["backend"], responses=errors)
    def tokens(name: str, body: TokensBody, entry=Depends(caller)) -> dict:
        limit(len(body.texts), settings.max_batch, "texts")
        enc = encoder_of(name, entry)
        return {"counts": enc.count_tokens(check_texts(body.texts, "texts")) if body.texts else [],
                "limit": enc.token_limit}


__all__ = ["add_backend_routes", "base_name", "parse_space"]
