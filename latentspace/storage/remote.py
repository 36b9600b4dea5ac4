"""The remote backend: a store served by ``latentspace serve``, reached over HTTP.

``ls.connect("http://host:8000", api_key=...)`` (or ``ls.open_store("http://...")``) gives a
:class:`~latentspace.collections.store.Store` whose collections have the whole local API:
everything above storage (encoders, space checks, search modes, hybrid fusion, migration,
the apps, analysis) runs here, the records live on the server. The server's ``/v1/backend``
routes mirror the :class:`.base.StoreBackend` / :class:`.base.CollectionBackend` interface
one call for one call; vectors travel as base64 float32, filters as the dicts they parse
from (:func:`.filter.to_dict`), and every call that carries or searches vectors names the
collection's space, which the server checks again (409 when it differs). Text is embedded
on the server by the collection's own encoder (:class:`RemoteEncoder`), so a client needs
no model; a client that passes ``encoder=`` embeds locally instead, checked as anywhere.

A typed error on the server is the same typed error here (``{"error": class}``); a refused
key is :class:`AuthError`. Writes larger than the server's per-request limit go in several
requests: each is atomic, the whole is not (``add`` checks every id first).
"""

from __future__ import annotations

import base64
import os
import threading
from typing import Any
from urllib.parse import quote

import numpy as np

from ..core import errors as _errors
from ..core.errors import AlreadyExistsError, AuthError, BackendUnavailableError, InvalidInputError, LatentSpaceError
from ..core.frozen import EMPTY, FrozenDict
from ..core.space import SpaceSpec
from ..embed.base import Encoder
from .base import Capabilities, CollectionBackend, CollectionInfo, Row, StoreBackend
from .filter import Node, to_dict
from .hits import Hit
from .index import HnswParams, neighbour_arrays

#: the environment variable ``connect`` reads the key from when none is passed
API_KEY_ENV = "LATENTSPACE_API_KEY"


# -- the wire format of arrays ------------------------------------------------------------
def pack(arr: np.ndarray) -> dict[str, Any]:
    """A float32 matrix as JSON: ``{"shape": [n, d], "b64": <little-endian float32 bytes>}``."""
    a = np.ascontiguousarray(arr, dtype="<f4")
    return {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def unpack(obj: Any, what: str = "vectors") -> np.ndarray:
    """The matrix of :func:`pack` (InvalidInputError for anything that is not one)."""
    if not isinstance(obj, dict) or set(obj) != {"shape", "b64"}:
        raise InvalidInputError(f"{what} must be {{\"shape\": [n, dim], \"b64\": ...}} (packed float32).")
    shape = obj["shape"]
    if (not isinstance(shape, list) or len(shape) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise InvalidInputError(f"{what}.shape must be [n, dim] with two non-negative integers; got {shape!r}.")
    try:
        raw = base64.b64decode(obj["b64"], validate=True)
    except (ValueError, TypeError):
        raise InvalidInputError(f"{what}.b64 is not base64.") from None
    if len(raw) != 4 * shape[0] * shape[1]:
        raise InvalidInputError(f"{what} holds {len(raw)} bytes; shape {shape} needs {4 * shape[0] * shape[1]}.")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def hit_from_json(h: dict) -> Hit:
    """A Hit from :meth:`Hit.to_dict`'s JSON (metadata read-only, as every backend's)."""
    meta = h.get("metadata") or None
    vec = h.get("vector")
    return Hit(h["id"], h["score"], h.get("document"), FrozenDict(meta) if meta else EMPTY, h.get("distance"),
               h.get("ranks") or None, np.asarray(vec, dtype=np.float32) if vec is not None else None)


# -- HTTP -----------------------------------------------------------------------------------
class _Client:
    """One HTTP connection pool to the server; typed errors from its JSON error bodies."""

    def __init__(self, url: str, api_key: str | None, timeout: float):
        import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._httpx = httpx

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            resp = self._http.request(method, path, json=body)
        except self._httpx.TransportError as exc:
            raise BackendUnavailableError(f"Cannot reach the latentspace server at {self.url} ({type(exc).__name__}: "
                                          f"{exc}). Start it with `latentspace serve STORE`.") from None
        if resp.status_code < 300:
            return resp.json()
        raise self._error(resp)

    def _error(self, resp) -> LatentSpaceError:
        try:
            body = resp.json()
            name, message = body["error"], body["message"]
        except (ValueError, KeyError, TypeError):
            return _errors.UpstreamError(f"The server at {self.url} answered {resp.status_code}: {resp.text[:200]}")
        if resp.status_code in (401, 403):
            return AuthError(message)
        cls = getattr(_errors, name, None)
        if not (isinstance(cls, type) and issubclass(cls, LatentSpaceError)):
            cls = _errors.UpstreamError
        return cls(message)

    def close(self) -> None:
        self._http.close()


def _path(name: str) -> str:
    return f"/v1/backend/collections/{quote(name, safe='')}"


# -- the backends -----------------------------------------------------------------------------
class RemoteCollection(CollectionBackend):
    """One collection on the server, addressed by name (a rename through this store follows)."""

    def __init__(self, store: RemoteStore, name: str, spec: SpaceSpec):
        self.store, self.name, self.spec = store, name, spec
        self.capabilities = store.capabilities
        self._space = spec.to_dict()

    def _call(self, op: str, body: dict | None = None, method: str = "POST") -> Any:
        return self.store._client.call(method, f"{_path(self.name)}/{op}", body)

    def _chunks(self, items: list, size: int):
        for start in range(0, len(items), size):
            yield items[start:start + size]

    # -- size and content ------------------------------------------------------------------
    def count(self, where: Node | None = None) -> int:
        return self._call("count", {"where": to_dict(where)})["count"]

    def count_with_documents(self) -> int:
        return self._call("count", {"where": None, "with_documents": True})["count"]

    def hashes(self, ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in self._chunks(list(ids), self.store.limits["max_batch"]):
            out.update(self._call("hashes", {"ids": part})["hashes"])
        return out

    def vectors(self, ids: list[str]) -> tuple[list[str], np.ndarray]:
        found, parts = [], []
        for part in self._chunks(list(ids), self.store.limits["max_batch"]):
            got = self._call("vectors", {"ids": part, "space": self._space})
            found += got["ids"]
            parts.append(unpack(got["vectors"]))
        return found, (np.concatenate(parts) if parts else np.zeros((0, self.spec.dim), np.float32))

    # -- writes ---------------------------------------------------------------------------
    def write(self, ids, vectors, documents, metadatas, hashes, *, replace: bool) -> tuple[int, int]:
        size = self.store.limits["max_batch"]
        if not replace and len(ids) > size:  # several requests: refuse an existing id before the first
            old = self.hashes(list(ids))
            if old:
                raise AlreadyExistsError(
                    f"{len(old)} id(s) already exist in collection {self.name!r}, e.g. {sorted(old)[:5]}. Nothing was "
                    "added: use upsert() to replace records, or delete them first.")
        added = replaced = 0
        vectors = np.asarray(vectors, dtype=np.float32)
        for start in range(0, len(ids), size):
            end = start + size
            got = self._call("write", {
                "ids": list(ids[start:end]), "vectors": pack(vectors[start:end]),
                "documents": list(documents[start:end]), "metadatas": [dict(m) for m in metadatas[start:end]],
                "hashes": list(hashes[start:end]), "replace": replace, "space": self._space})
            added += got["added"]
            replaced += got["replaced"]
        return added, replaced

    def delete(self, ids: list[str] | None, where: Node | None) -> int:
        if ids is None:
            return self._call("delete", {"ids": None, "where": to_dict(where)})["deleted"]
        return sum(self._call("delete", {"ids": part, "where": to_dict(where)})["deleted"]
                   for part in self._chunks(list(dict.fromkeys(ids)), self.store.limits["max_batch"]))

    # -- reads ----------------------------------------------------------------------------
    def _rows(self, ids, where, limit, offset, with_vectors) -> list[Row]:
        got = self._call("rows", {"ids": ids, "where": to_dict(where), "limit": limit, "offset": offset,
                                  "with_vectors": with_vectors, "space": self._space})
        vecs = unpack(got["vectors"]) if with_vectors else None
        return [Row(r["id"], r["document"], r["metadata"], vecs[n] if vecs is not None else None, r["hash"])
                for n, r in enumerate(got["rows"])]

    def rows(self, ids, where, limit, offset, with_vectors) -> list[Row]:
        size = self.store.limits["max_batch"]
        if ids is not None:
            out = []
            for part in self._chunks(list(ids), size):
                out += self._rows(part, where, None, 0, with_vectors)
            return out[offset: None if limit is None else offset + limit]
        out = []
        while limit is None or len(out) < limit:
            want = size if limit is None else min(size, limit - len(out))
            got = self._rows(None, where, want, offset + len(out), with_vectors)
            out += got
            if len(got) < want:
                break
        return out

    # -- search ---------------------------------------------------------------------------
    def search(self, queries, k, where, *, exact, ef, with_vectors) -> list[list[Hit]]:
        out = []
        queries = np.asarray(queries, dtype=np.float32)
        for start in range(0, len(queries), self.store.limits["max_queries"]):
            got = self._call("search", {
                "queries": pack(queries[start:start + self.store.limits["max_queries"]]), "k": k,
                "where": to_dict(where), "exact": exact, "ef": ef, "with_vectors": with_vectors, "space": self._space})
            out += [[hit_from_json(h) for h in hits] for hits in got["hits"]]
        return out

    def search_one(self, vector, k, ef, where=None) -> list[Hit] | None:
        return None  # search() is one request either way

    def search_among(self, ids, queries, k) -> list[list[Hit]]:
        got = self._call("search_among", {"ids": list(ids), "queries": pack(queries), "k": k, "space": self._space})
        return [[hit_from_json(h) for h in hits] for hits in got["hits"]]

    def neighbors(self, ids, vectors, which, k, where, *, exact=False, ef=None) -> tuple[np.ndarray, np.ndarray]:
        which = np.asarray(which)
        found = []
        for start in range(0, len(which), self.store.limits["max_queries"]):
            part = which[start:start + self.store.limits["max_queries"]]
            hits = self.search(np.asarray(vectors)[part], k + 1, where, exact=exact, ef=ef, with_vectors=False)
            found += [[(h.id, h.distance) for h in row] for row in hits]
        return neighbour_arrays(found, ids, which, k)

    def keyword(self, texts, k, where, *, with_vectors) -> list[list[Hit]]:
        got = self._call("keyword", {"texts": list(texts), "k": k, "where": to_dict(where),
                                     "with_vectors": with_vectors})
        return [[hit_from_json(h) for h in hits] for hits in got["hits"]]

    def flush(self) -> None:
        self._call("flush", {})


class RemoteStore(StoreBackend):
    """A store on a latentspace server (``latentspace serve``)."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 120.0):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidInputError(f"A server URL starts with http:// or https://; got {url!r}.")
        self.path = url.rstrip("/")
        self.messages: list[str] = []
        self._lock = threading.RLock()
        self._client = _Client(self.path, api_key if api_key is not None else os.environ.get(API_KEY_ENV), timeout)
        self._open: dict[str, RemoteCollection] = {}
        try:
            about = self._client.call("GET", "/v1/backend")
        except BaseException:
            self._client.close()
            raise
        self.capabilities = Capabilities(**about["capabilities"])
        self.limits: dict[str, int] = about["limits"]
        self.server_version = about["version"]

    def __repr__(self) -> str:
        return f"RemoteStore({self.path!r})"

    def _handle(self, info: CollectionInfo) -> RemoteCollection:
        col = self._open.get(info.name)
        if col is None or col.spec != info.spec:
            col = self._open[info.name] = RemoteCollection(self, info.name, info.spec)
        return col

    def encoder_for(self, info: CollectionInfo) -> Encoder | None:
        """The server embeds for a collection that has an encoder."""
        return RemoteEncoder(self, info) if info.encoder is not None else None

    def create_collection(self, name, spec, encoder, params, metadata) -> None:
        params = params if isinstance(params, HnswParams) else HnswParams.from_dict(params)
        self._client.call("POST", "/v1/backend/collections", {
            "name": name, "spec": spec.to_dict(), "encoder": encoder, "hnsw": params.to_dict(), "metadata": metadata})

    def open_collection(self, name):
        info = self.collection_info(name)
        return info, self._handle(info)

    def list_names(self) -> list[str]:
        return [i.name for i in self.list_collections()]

    def list_collections(self) -> list[CollectionInfo]:
        return [CollectionInfo.from_dict(d) for d in self._client.call("GET", "/v1/backend/collections")]

    def collection_info(self, name: str) -> CollectionInfo:
        return CollectionInfo.from_dict(self._client.call("GET", _path(name)))

    def delete_collection(self, name: str) -> None:
        self._client.call("DELETE", _path(name))
        self._open.pop(name, None)

    def rename_collection(self, name: str, new_name: str) -> None:
        self._client.call("POST", f"{_path(name)}/rename", {"new_name": new_name})
        prefix = f"~{name}~"
        for old in [n for n in self._open if n == name or n.startswith(prefix)]:
            col = self._open.pop(old)
            col.name = new_name if old == name else f"~{new_name}~{old[len(prefix):]}"
            self._open[col.name] = col

    def swap(self, name: str, new_internal: str, action: str) -> None:
        """(A handle opened on the old space keeps the name, and the server refuses its
        vectors from then on: another space.)"""
        self._client.call("POST", f"{_path(name)}/swap", {"new_internal": new_internal, "action": action})
        self._open.pop(name, None)
        replacement = self._open.pop(new_internal, None)
        if replacement is not None:
            replacement.name = name
            self._open[name] = replacement

    def collection_history(self, name: str) -> list[dict[str, Any]]:
        return self._client.call("GET", f"{_path(name)}/history")

    def rollback_collection(self, name: str) -> None:
        self._client.call("POST", f"{_path(name)}/rollback", {})
        self._open.pop(name, None)

    def drop_retired(self, name: str) -> int:
        return self._client.call("POST", f"{_path(name)}/drop_retired", {})["dropped"]

    def retired_names(self, name: str) -> list[str]:
        return self._client.call("GET", f"{_path(name)}/retired")

    def disk_bytes(self) -> int:
        return self._client.call("GET", "/v1/backend")["disk_bytes"]

    def close(self) -> None:
        self._client.close()


class RemoteEncoder(Encoder):
    """A collection's encoder run by the server: the collection's space, embedded there."""

    kind = "remote"

    def __init__(self, store: RemoteStore, info: CollectionInfo):
        self._store, self._name, self.spec, self._config = store, info.name, info.spec, dict(info.encoder)
        self._limit: int | None | bool = False  # False: not asked yet

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def _embed(self, texts, kind: str) -> np.ndarray:
        out = []
        size = self._store.limits["max_batch"]
        texts = list(texts)
        for start in range(0, len(texts), size):
            got = self._store._client.call("POST", f"{_path(self._name)}/embed",
                                           {"texts": texts[start:start + size], "kind": kind})
            self.spec.require_same(SpaceSpec.from_dict(got["space"]), f"Embedding for collection {self._name!r}")
            out.append(unpack(got["vectors"]))
        return np.concatenate(out) if out else np.zeros((0, self.spec.dim), np.float32)

    def encode_documents(self, items) -> np.ndarray:
        from ..core.validation import check_texts

        return self._embed(check_texts(items, "documents"), "documents")

    def encode_queries(self, texts) -> np.ndarray:
        from ..core.validation import check_texts

        texts = check_texts(texts, "queries")
        for i, t in enumerate(texts):
            if not t.strip():
                raise InvalidInputError(f"queries[{i}] is empty; a query must contain text.")
        return self._embed(texts, "queries")

    def _tokens(self, texts: list[str]) -> dict:
        return self._store._client.call("POST", f"{_path(self._name)}/tokens", {"texts": texts})

    def count_tokens(self, texts) -> list[int]:
        counts: list[int] = []
        texts = list(texts)
        for start in range(0, len(texts), self._store.limits["max_batch"]):
            got = self._tokens(texts[start:start + self._store.limits["max_batch"]])
            counts += got["counts"]
            self._limit = got["limit"]
        return counts

    @property
    def token_limit(self) -> int | None:
        if self._limit is False:
            self._limit = self._tokens([])["limit"]
        return self._limit

    def _encode_raw(self, texts: list[str]) -> Any:  # pragma: no cover - encode_* go to the server
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"RemoteEncoder({self._config.get('model', self._config.get('kind'))!r} on {self._store.path}, " \
               f"fingerprint={self.spec.fingerprint})"


__all__ = ["RemoteCollection", "RemoteEncoder", "RemoteStore", "pack", "unpack", "hit_from_json", "API_KEY_ENV"]
