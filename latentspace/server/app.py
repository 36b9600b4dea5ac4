"""The FastAPI application: ``create_app(settings)``.

REST over the Python API, under ``/v1``. Every call but ``/v1/health`` needs an API key
when the server has keys (``Authorization: Bearer <key>`` or ``X-API-Key``), with the scope
the call needs (read < write < admin) and, for a key limited to collections, the
collection. Errors are JSON ``{"error": <class>, "message": ...}`` with the status of
DESIGN §8; no stack trace reaches a client. A query sent as text is embedded by the
collection's own encoder here; vectors must name their space (a SpaceSpec), and a space
other than the collection's is refused with 409 and the differing fields.
"""

# no "from __future__ import annotations": FastAPI reads the routes' annotations at run time

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..core.errors import AuthError, InvalidInputError, LatentSpaceError

log = logging.getLogger("latentspace.server")

#: the most results one query may ask for, records one write may carry, queries one batch may hold
MAX_K, MAX_BATCH, MAX_QUERIES = 1000, 1000, 256
MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass
class Settings:
    """``store``: a path or URI; ``keys``: the keys file (default: ``keys.json`` in an embedded
    store's folder); ``require_keys``: refuse calls without a key even when no key exists
    (``None``: required once the keys file holds a key, revoked or not)."""

    store: str
    keys: str | None = None
    require_keys: bool | None = None
    max_k: int = MAX_K
    max_batch: int = MAX_BATCH
    max_queries: int = MAX_QUERIES
    max_body_bytes: int = MAX_BODY_BYTES
    store_options: dict[str, Any] = field(default_factory=dict)
    #: latent models the explorer shows: name -> "folder" or "folder:data.npz"
    latent: dict[str, str] = field(default_factory=dict)

    def keys_path(self) -> Path | None:
        if self.keys:
            return Path(self.keys)
        p = Path(self.store)
        if "://" in str(self.store) or str(self.store) == ":memory:":
            return None
        return p / "keys.json"


def _require_fastapi():
    try:
        import fastapi  # noqa: F401
    except ImportError:
        from ..core.errors import BackendUnavailableError

        raise BackendUnavailableError("The server needs FastAPI: pip install 'latentspace[server]'") from None


def create_app(settings: Settings | str):
    """The application serving ``settings.store``."""
    _require_fastapi()
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field

    from ..collections.store import open_store
    from ..core.space import SpaceSpec
    from .keys import KeyStore

    if isinstance(settings, str):
        settings = Settings(store=settings)
    store = open_store(settings.store, **settings.store_options)
    kpath = settings.keys_path()
    keys = KeyStore(kpath) if kpath is not None else None

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app):
        yield
        store.close()

    app = FastAPI(title="latentspace", version=_version(), lifespan=lifespan,
                  description="Collections of vectors, each bound to one space, over HTTP.")
    app.state.store = store
    app.state.settings = settings

    error_text = {401: "no API key, or one not accepted (AuthError)",
                  403: "the key's scope or collections do not allow it", 404: "no such collection or record "
                  "(NotFoundError)", 409: "another space, or a name taken", 413: "the request body is too large",
                  422: "bad input (InvalidInputError)", 500: "an internal error (no details are sent)",
                  503: "the store is locked by another writer"}
    # the error responses go into the schema once, for every operation (declared on each of
    # 50 routes they cost 0.1 s per app: a pydantic field per route and status)
    errors: dict = {}

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = {
            "title": "ErrorBody", "type": "object", "required": ["error", "message"],
            "properties": {"error": {"title": "Error", "type": "string"}, "message": {"title": "Message", "type": "string"}}}
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, operations in schema["paths"].items():
            for op in operations.values():
                for code, what in error_text.items():
                    if path != "/v1/health" or code == 500:
                        op["responses"][str(code)] = {"description": what, "content": body}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi

    # -- errors -----------------------------------------------------------------------------
    @app.exception_handler(LatentSpaceError)
    async def _typed(request: Request, exc: LatentSpaceError):
        status = exc.http_status
        if isinstance(exc, _Forbidden):
            status = 403
        body = {"error": "AuthError" if isinstance(exc, _Forbidden) else type(exc).__name__, "message": str(exc)}
        if status >= 500:
            log.warning("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": "InvalidInputError", "message": f"{where}: {first.get('msg', 'invalid')}"},
                            status_code=422)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # a body that does not parse: bad input, as everywhere else (422)
            return JSONResponse({"error": "InvalidInputError", "message": f"The request body is not valid JSON "
                                 f"({exc.detail})."}, status_code=422)
        name = {404: "NotFoundError", 405: "InvalidInputError"}.get(exc.status_code, "HTTPError")
        message = f"No route {request.method} {request.url.path}." if exc.status_code in (404, 405) else str(exc.detail)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of the path (Starlette names only one route's)
            from starlette.routing import Match

            methods = set()
            for route in app.router.routes:
                match, _ = route.matches({**request.scope, "method": "GET"})
                if match != Match.NONE and getattr(route, "methods", None):
                    methods |= set(route.methods)
                match, _ = route.matches({**request.scope, "method": "POST"})
                if match != Match.NONE and getattr(route, "methods", None):
                    methods |= set(route.methods)
            if methods:
                headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"error": name, "message": message}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("internal error on %s", request.url.path)
        return JSONResponse({"error": "InternalError", "message": "Internal error; the server's log has the details."},
                            status_code=500)

    class LimitBody:
        """Refuse a body larger than the limit (by its Content-Length) before reading it: a
        plain ASGI middleware (Starlette's BaseHTTPMiddleware costs a task per request)."""

        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                for k, v in scope["headers"]:
                    if k == b"content-length" and v.isdigit() and int(v) > settings.max_body_bytes:
                        resp = JSONResponse({"error": "InvalidInputError", "message": f"The request body is "
                                             f"{int(v):,} bytes; this server takes at most "
                                             f"{settings.max_body_bytes:,}."}, status_code=413)
                        await resp(scope, receive, send)
                        return
            await self.inner(scope, receive, send)

    app.add_middleware(LimitBody)

    # -- auth ---------------------------------------------------------------------------------
    async def caller(request: Request):
        if keys is None or not (settings.require_keys or (settings.require_keys is None and keys.configured())):
            if settings.require_keys:
                raise AuthError("This server requires API keys but has no keys file.")
            return None
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
        return keys.check(key)

    def allow(entry, scope: str, collection: str | None = None) -> None:
        if collection is not None and collection.startswith("~"):  # a retired space counts as its collection
            from .backend_routes import base_name

            collection = base_name(collection)
        if entry is not None and not entry.allows(scope, collection):
            what = f"collection {collection!r}" if collection else "the whole store"
            raise _Forbidden(f"This key (scope {entry.scope}"
                             f"{', collections ' + ', '.join(entry.collections) if entry.collections else ''}) "
                             f"does not allow a {scope} call on {what}.")

    # -- bodies ---------------------------------------------------------------------------------
    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class CreateBody(Strict):
        name: str
        space: dict | None = Field(None, description="A SpaceSpec (vectors you bring).")
        encoder: dict | None = Field(None, description="An encoder config (Encoder.config()): texts embedded here.")
        metadata: dict | None = None

    class QueryOptions(Strict):
        k: int = 10
        where: dict | None = None
        mode: Literal["vector", "exact", "keyword", "hybrid"] = "vector"
        alpha: float = 0.5
        ef: int | None = None
        include_vectors: bool = False
        fusion: Literal["rrf", "convex"] = "convex"

        def options(self) -> dict:
            return {"k": self.k, "where": self.where, "mode": self.mode, "alpha": self.alpha, "ef": self.ef,
                    "include_vectors": self.include_vectors, "fusion": self.fusion}

    class SearchBody(QueryOptions):
        query: str | None = None
        vector: list[float] | None = None
        space: dict | None = Field(None, description="The SpaceSpec of `vector`; required with a vector.")

    class BatchBody(QueryOptions):
        queries: list[str] | None = None
        vectors: list[list[float]] | None = None
        space: dict | None = Field(None, description="The SpaceSpec of `vectors`; required with vectors.")

    class WriteBody(Strict):
        ids: list[str]
        documents: list[str | None] | None = None
        metadatas: list[dict] | None = None
        vectors: list[list[float]] | None = None
        space: dict | None = None

    class GetBody(Strict):
        ids: list[str] | None = None
        where: dict | None = None
        limit: int | None = None
        offset: int = 0
        include_vectors: bool = False

    class DeleteBody(Strict):
        ids: list[str] | None = None
        where: dict | None = None

    def check_k(k: int) -> None:
        if not 1 <= k <= settings.max_k:
            raise InvalidInputError(f"k must be in [1, {settings.max_k}] on this server; got {k}.")

    encoders: dict = {}  # collection name -> its encoder, loaded once per process (not per request)

    def collection(name: str, embeds: bool = False):
        """The collection; with ``embeds`` its encoder too, loaded once and kept for later requests."""
        from ..core.errors import SpaceMismatchError
        from .backend_routes import base_name

        base_name(name)  # a collection's name, or the store's name of one of its retired spaces
        encoder = encoders.get(name)
        if encoder is None:
            col = store.get_collection(name)
        else:
            try:
                col = store.get_collection(name, encoder=encoder)
            except SpaceMismatchError:  # migrated to another model since: load the new one when needed
                encoders.pop(name, None)
                col = store.get_collection(name)
        if embeds and col.has_encoder and name not in encoders:
            encoders[name] = col.encoder
        return col

    # -- routes -------------------------------------------------------------------------------
    @app.get("/v1/health", tags=["server"])
    def health() -> dict:
        return {"status": "ok", "version": _version()}

    @app.get("/v1/collections", tags=["collections"], responses=errors)
    def list_collections(entry=Depends(caller)) -> list[dict]:
        allow(entry, "read") if entry is not None and entry.collections is None else None
        infos = [i.to_dict() for i in store.list_collections()]
        if entry is not None and entry.collections is not None:
            infos = [i for i in infos if i["name"] in entry.collections]
        return infos

    @app.post("/v1/collections", tags=["collections"], responses=errors, status_code=201)
    def create_collection(body: CreateBody, entry=Depends(caller)) -> dict:
        allow(entry, "admin", body.name)
        encoder = None
        if body.encoder is not None:
            from ..embed import encoder_from_config

            if body.encoder.get("trust_remote_code"):
                raise InvalidInputError("The server does not load models with trust_remote_code.")
            encoder = encoder_from_config(body.encoder)
        space = SpaceSpec.from_dict(body.space) if body.space is not None else None
        col = store.create_collection(body.name, encoder=encoder, space=space, metadata=body.metadata)
        return col.info().to_dict()

    @app.get("/v1/collections/{name}", tags=["collections"], responses=errors)
    def info(name: str, entry=Depends(caller)) -> dict:
        allow(entry, "read", name)
        return collection(name).info().to_dict()

    @app.delete("/v1/collections/{name}", tags=["collections"], responses=errors)
    def drop(name: str, entry=Depends(caller)) -> dict:
        allow(entry, "admin", name)
        collection(name)
        store.delete_collection(name)
        encoders.pop(name, None)
        return {"dropped": name}

    def space_of(spec: dict | None, vectors: bool) -> SpaceSpec | None:
        if spec is None:
            if vectors:
                raise InvalidInputError("Vectors sent to the server must name their space: add \"space\" (the "
                                        "SpaceSpec of the model that made them; GET the collection for its own).")
            return None
        from .backend_routes import parse_space

        return parse_space(spec)

    async def run(fn, inline: bool):
        """Vector work runs on the event loop (a search is far cheaper than a thread hop);
        embedding text (milliseconds, a model load the first time) runs in the thread pool."""
        if inline:
            return fn()
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(fn)

    @app.post("/v1/collections/{name}/search", tags=["search"], responses=errors)
    async def search(name: str, body: SearchBody, entry=Depends(caller)) -> list[dict]:
        allow(entry, "read", name)
        check_k(body.k)
        embeds = body.query is not None and body.mode != "keyword"

        def work():
            col = collection(name, embeds=embeds)
            space = space_of(body.space, body.vector is not None)
            return [h.to_dict() for h in col.search(body.query, vector=body.vector, space=space, **body.options())]

        return JSONResponse(await run(work, inline=not embeds))

    @app.post("/v1/collections/{name}/search_batch", tags=["search"], responses=errors)
    async def search_batch(name: str, body: BatchBody, entry=Depends(caller)) -> list[list[dict]]:
        allow(entry, "read", name)
        check_k(body.k)
        n = len(body.queries or body.vectors or [])
        if n > settings.max_queries:
            raise InvalidInputError(f"A batch holds at most {settings.max_queries} queries on this server; got {n}.")
        embeds = body.queries is not None and body.mode != "keyword"

        def work():
            col = collection(name, embeds=embeds)
            space = space_of(body.space, body.vectors is not None)
            out = col.search_batch(body.queries, vectors=body.vectors, space=space, **body.options())
            return [[h.to_dict() for h in hits] for hits in out]

        return JSONResponse(await run(work, inline=not embeds))

    def write(name: str, body: WriteBody, entry, replace: bool) -> dict:
        allow(entry, "write", name)
        if len(body.ids) > settings.max_batch:
            raise InvalidInputError(f"A write holds at most {settings.max_batch} records on this server; got "
                                    f"{len(body.ids)}. Send several.")
        col = collection(name, embeds=body.vectors is None)
        space = space_of(body.space, body.vectors is not None)
        fn = col.upsert if replace else col.add
        res = fn(body.ids, documents=body.documents, metadatas=body.metadatas, vectors=body.vectors, space=space)
        return {"added": res.added, "replaced": res.replaced, "unchanged": res.unchanged, "truncated": res.truncated}

    @app.post("/v1/collections/{name}/add", tags=["records"], responses=errors)
    def add(name: str, body: WriteBody, entry=Depends(caller)) -> dict:
        return write(name, body, entry, replace=False)

    @app.post("/v1/collections/{name}/upsert", tags=["records"], responses=errors)
    def upsert(name: str, body: WriteBody, entry=Depends(caller)) -> dict:
        return write(name, body, entry, replace=True)

    @app.post("/v1/collections/{name}/get", tags=["records"], responses=errors)
    def get(name: str, body: GetBody, entry=Depends(caller)) -> list[dict]:
        allow(entry, "read", name)
        if body.limit is not None and not 1 <= body.limit <= settings.max_batch:
            raise InvalidInputError(f"limit must be in [1, {settings.max_batch}] on this server; got {body.limit}.")
        if body.ids is not None and len(body.ids) > settings.max_batch:
            raise InvalidInputError(f"At most {settings.max_batch} ids per call on this server.")
        limit = body.limit if body.limit is not None or body.ids is not None else settings.max_batch
        records = collection(name).get(ids=body.ids, where=body.where, limit=limit, offset=body.offset,
                                       include_vectors=body.include_vectors)
        return [r.to_dict() for r in records]

    @app.post("/v1/collections/{name}/delete", tags=["records"], responses=errors)
    def delete(name: str, body: DeleteBody, entry=Depends(caller)) -> dict:
        allow(entry, "write", name)
        return {"deleted": collection(name).delete(ids=body.ids, where=body.where)}

    from .backend_routes import add_backend_routes
    from .routes_apps import add_app_routes

    add_app_routes(app, store, caller, allow, settings, errors, collection)
    add_backend_routes(app, store, caller, allow, settings, errors)

    from .routes_latent import LatentMaps, add_latent_routes

    add_latent_routes(app, LatentMaps(settings.latent), caller, allow, errors)

    # -- the web explorer: static files, no build step ---------------------------------------------
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    static = Path(__file__).parent / "static"

    @app.get("/", include_in_schema=False)
    def explorer():
        return FileResponse(static / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static), name="static")
    return app


def app_from_env():
    """The application ``latentspace serve`` starts in each worker process (settings from the
    environment the command set)."""
    import os

    import json

    return create_app(Settings(store=os.environ["LATENTSPACE_SERVE_STORE"],
                               keys=os.environ.get("LATENTSPACE_SERVE_KEYS") or None,
                               latent=json.loads(os.environ.get("LATENTSPACE_SERVE_LATENT") or "{}")))


class _Forbidden(AuthError):
    """A key that is valid but does not allow the call: 403 (an AuthError on the client)."""

    http_status = 403


def _version() -> str:
    from .._version import __version__

    return __version__


__all__ = ["Settings", "create_app", "MAX_K", "MAX_BATCH", "MAX_QUERIES", "MAX_BODY_BYTES"]
