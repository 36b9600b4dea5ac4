"""The Milvus backend: collections in a Milvus server, or in Milvus Lite (a local file).

``ls.open_store("milvus://host:19530")`` (``milvus://user:password@host:19530/db``,
``milvus+https://...``; ``token=`` for an API key) or ``ls.open_store("milvus+lite:///dir")``.

Names. Every latentspace name (a visible one, and the store's own ``~name~...`` names for
migration shadows and retired spaces) is a Milvus *alias* of one physical collection
(``lsc_<uuid>``): the name itself where it is a valid Milvus name, else ``ls_`` and its
base32 (Milvus allows letters, digits and ``_`` only). Migration's switch is one
``alter_alias`` (atomic on Milvus); rename moves the aliases.

The space. Each physical collection carries its catalog entry in its properties:
``latentspace.info`` (SpaceSpec, encoder config, HNSW settings, metadata, creation time),
``latentspace.fingerprint`` (the spec's fingerprint, so that a spec edited by hand is
caught: its recomputed fingerprint differs) and ``latentspace.history`` (its name's
switches, for rollback). A collection without them was not made by latentspace and is
refused, as is one whose schema disagrees with its spec.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ...core.errors import (
    AlreadyExistsError,
    AuthError,
    BackendUnavailableError,
    InvalidInputError,
    NotFoundError,
    StoreFormatError,
    UpstreamError,
)
from ...core.space import SpaceSpec
from ...core.validation import check_name
from ..base import Capabilities, CollectionInfo, StoreBackend
from ..index import HnswParams
from .collection import MAX_DOCUMENT_BYTES, METRICS, MilvusCollection

FORMAT = 1
INFO, FINGERPRINT, HISTORY = "latentspace.info", "latentspace.fingerprint", "latentspace.history"
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,254}")
MIN_SERVER = (3, 0)  # pymilvus 3.x is the SDK of Milvus 3.x (pinned in the 'milvus' extra)
log = logging.getLogger(__name__)


def alias_of(name: str) -> str:
    """The Milvus alias of a latentspace name (reversible: :func:`name_of`)."""
    if _IDENT.fullmatch(name) and not name.lower().startswith(("ls_", "lsc_")):
        return name
    return "ls_" + base64.b32encode(name.encode()).decode().rstrip("=").lower()


def name_of(alias: str) -> str | None:
    """The latentspace name of an alias, or None if it is not one of ours."""
    if not alias.startswith("ls_"):
        return alias if not alias.lower().startswith("lsc_") else None
    body = alias[3:].upper()
    try:
        return base64.b32decode(body + "=" * (-len(body) % 8)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def parse_uri(uri: str) -> dict[str, Any]:
    """``milvus://``, ``milvus+https://`` or ``milvus+lite://`` -> MilvusClient arguments."""
    parts = urlsplit(uri)
    if parts.scheme == "milvus+lite":
        path = Path(unquote(parts.netloc + parts.path)).expanduser()
        if not str(path) or str(path) == ".":
            raise InvalidInputError(f"{uri!r} names no folder: milvus+lite:///path/to/folder.")
        return {"lite": path}
    if parts.scheme not in ("milvus", "milvus+http", "milvus+https"):
        raise InvalidInputError(f"Not a Milvus URI: {uri!r} (milvus://host:19530, milvus+https://host, "
                                "milvus+lite:///folder).")
    if not parts.hostname:
        raise InvalidInputError(f"{uri!r} names no host: milvus://host:19530.")
    scheme = "https" if parts.scheme == "milvus+https" else "http"
    out: dict[str, Any] = {"uri": f"{scheme}://{parts.hostname}:{parts.port or 19530}"}
    if parts.username:
        out["token"] = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    if parts.path.strip("/"):
        out["db_name"] = parts.path.strip("/")
    return out


def _quiet_pymilvus() -> None:
    """pymilvus logs every refused call with a traceback at ERROR (its ``decorators``
    logger; latentspace raises a typed error instead) and a warning on every iterator over
    Milvus Lite (which has no MVCC timestamp to hand out). Left alone if the user set a level."""
    for name, level in (("pymilvus.decorators", logging.CRITICAL),
                        ("pymilvus.client.iterator.query_iterator", logging.ERROR)):
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(level)


class MilvusStore(StoreBackend):
    """Collections in Milvus (see the module docstring)."""

    def __init__(self, uri: str, *, token: str | None = None, db_name: str | None = None, timeout: float = 10.0,
                 create: bool = True):
        try:
            from pymilvus import MilvusClient, MilvusException
        except ImportError:
            raise BackendUnavailableError("The Milvus backend needs pymilvus: pip install 'latentspace[milvus]'") \
                from None
        _quiet_pymilvus()
        self._MilvusException = MilvusException
        target = parse_uri(uri)
        self.uri = uri
        self.messages: list[str] = []
        self._lock = threading.RLock()
        self._seq = 0
        lite = target.get("lite")
        self.path = uri  # what open_store takes to open it again
        self._folder = lite
        self.capabilities = Capabilities(persistent=True, multi_process=lite is None, keyword=True, ann=True,
                                         atomic_swap=True)
        kwargs: dict[str, Any] = {"timeout": timeout}
        if token or target.get("token"):
            kwargs["token"] = token or target["token"]
        if db_name or target.get("db_name"):
            kwargs["db_name"] = db_name or target["db_name"]
        if lite is not None:
            try:
                import milvus_lite  # noqa: F401
            except ImportError:
                raise BackendUnavailableError("Milvus Lite needs the milvus-lite package: pip install "
                                              "'latentspace[milvus]' (Linux and macOS).") from None
            if not create and not (lite / "milvus.db").exists():
                raise NotFoundError(f"No Milvus Lite store at {lite} (no milvus.db there).")
            if lite.exists() and not lite.is_dir():
                raise InvalidInputError(f"{lite} is a file; milvus+lite:// takes a folder (latentspace keeps "
                                        "milvus.db in it).")
            lite.mkdir(parents=True, exist_ok=True)
            where = str(lite / "milvus.db")
        else:
            where = target["uri"]
        try:
            self._client = MilvusClient(uri=where, **kwargs)
        except MilvusException as exc:
            raise self._connect_error(where, exc) from None
        except Exception as exc:  # grpc and socket errors come in many classes
            raise BackendUnavailableError(f"Cannot reach Milvus at {where} ({type(exc).__name__}: {exc}). Start it "
                                          "(docs/milvus.md) or check the address.") from None
        if lite is None:
            self._check_version()
        self._closed = False

    def __repr__(self) -> str:
        return f"MilvusStore({self.uri!r})"

    # -- errors -----------------------------------------------------------------------------
    def _connect_error(self, where: str, exc: Exception) -> Exception:
        text = str(getattr(exc, "message", "") or exc)
        low = text.lower()
        if any(w in low for w in ("auth", "credential", "password", "token", "permission")):
            return AuthError(f"Milvus at {where} refused the credentials ({text}). Pass milvus://user:password@host "
                             "or token=.")
        return BackendUnavailableError(f"Cannot reach Milvus at {where} ({text}). Start it (docs/milvus.md) or "
                                       "check the address.")

    def _check_version(self) -> None:
        try:
            version = str(self._client.get_server_version())
        except Exception:  # noqa: BLE001 - some deployments hide it; then let calls speak
            return
        m = re.search(r"(\d+)\.(\d+)", version)
        if m and (int(m.group(1)), int(m.group(2))) < MIN_SERVER:
            raise BackendUnavailableError(f"Milvus {version} is older than the server latentspace's pymilvus 3.x is "
                                          f"made for (Milvus {'.'.join(map(str, MIN_SERVER))}+): upgrade the server "
                                          "(docs/milvus.md).")

    def _call(self, fn: str, *args, collection: MilvusCollection | None = None, **kwargs):
        try:
            return getattr(self._client, fn)(*args, **kwargs)
        except self._MilvusException as exc:
            text = str(getattr(exc, "message", "") or exc)
            if collection is not None and ("not found" in text.lower() or "not exist" in text.lower()):
                raise NotFoundError(f"Collection {collection.name!r} was deleted from the store.") from None
            if "auth" in text.lower() or "permission" in text.lower():
                raise AuthError(f"Milvus refused {fn}: {text}") from None
            raise UpstreamError(f"Milvus refused {fn}: {text}") from None

    # -- names and the catalog ---------------------------------------------------------------
    def _aliases(self) -> dict[str, str]:
        """latentspace name -> physical collection, for every alias of ours."""
        out = {}
        for alias in self._call("list_aliases").get("aliases", []):
            name = name_of(alias)
            if name is not None:
                out[name] = alias
        return out

    def _physical(self, name: str) -> str | None:
        try:
            return self._client.describe_alias(alias_of(name))["collection_name"]
        except self._MilvusException:
            return None

    def _properties(self, physical: str) -> dict[str, str]:
        return dict(self._call("describe_collection", physical).get("properties") or {})

    def _info(self, name: str, physical: str) -> tuple[CollectionInfo, dict[str, str]]:
        props = self._properties(physical)
        if INFO not in props:
            raise StoreFormatError(f"Milvus collection {physical!r} (named {name!r}) was not made by latentspace: it "
                                   f"has no {INFO} property. latentspace opens only collections it created; copy the "
                                   "data into one ('latentspace collection copy').")
        try:
            data = json.loads(props[INFO])
            spec = SpaceSpec.from_dict(data["spec"])
            params = HnswParams.from_dict(data.get("hnsw"))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreFormatError(f"The latentspace properties of Milvus collection {physical!r} ({name!r}) are "
                                   f"unreadable ({exc}); were they edited by hand?") from None
        if data.get("format", 0) > FORMAT:
            raise StoreFormatError(f"Milvus collection {name!r} was written by a newer latentspace (format "
                                   f"{data['format']}); upgrade latentspace.")
        stored = props.get(FINGERPRINT)
        if stored != spec.fingerprint:
            raise StoreFormatError(f"The space recorded with Milvus collection {name!r} was altered: its spec "
                                   f"({spec.describe()}) has fingerprint {spec.fingerprint}, but the collection was "
                                   f"created with {stored}. Restore the property or copy the data into a new "
                                   "collection.")
        return CollectionInfo(name, 0, spec, data.get("encoder"), params, data.get("metadata") or {},
                              float(data.get("created_at") or 0.0)), props

    def _check_schema(self, name: str, physical: str, spec: SpaceSpec) -> None:
        desc = self._call("describe_collection", physical)
        fields = {f["name"]: f for f in desc.get("fields", [])}
        vec = fields.get("vector")
        dim = (vec or {}).get("params", {}).get("dim")
        if vec is None or int(dim or -1) != spec.dim:
            raise StoreFormatError(f"Milvus collection {name!r} holds {dim}-dimensional vectors but its recorded "
                                   f"space says {spec.dim}: the schema was changed outside latentspace.")
        missing = {"id", "document", "has_document", "metadata", "content_hash", "seq", "sparse"} - set(fields)
        if missing:
            raise StoreFormatError(f"Milvus collection {name!r} lacks field(s) {sorted(missing)}: not a latentspace "
                                   "schema.")

    def _missing(self, name: str) -> NotFoundError:
        names = self.list_names()
        hint = f" Collections here: {', '.join(names)}." if names else " The store has no collections."
        foreign = ""
        if _IDENT.fullmatch(name) and self._client.has_collection(name):
            foreign = (f" (Milvus has a collection named {name!r}, but latentspace did not create it: latentspace "
                       "opens only its own collections.)")
        return NotFoundError(f"No collection named {name!r} in {self.uri}.{foreign}{hint}")

    def _next_seqs(self, n: int) -> list[int]:
        """Insertion order across clients: microseconds since the epoch, strictly increasing here."""
        with self._lock:
            start = max(self._seq + 1, time.time_ns() // 1000)
            self._seq = start + n - 1
            return list(range(start, start + n))

    # -- the interface ------------------------------------------------------------------------
    def create_collection(self, name, spec, encoder, params, metadata) -> None:
        from pymilvus import DataType, Function, FunctionType

        params = params if isinstance(params, HnswParams) else HnswParams()
        with self._lock:
            alias = alias_of(name)
            if self._physical(name) is not None:
                raise AlreadyExistsError(f"A collection named {name!r} already exists in {self.uri}. Open it with "
                                         "get_collection, or use get_or_create_collection.")
            physical = "lsc_" + uuid.uuid4().hex
            schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=4096)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=spec.dim)
            schema.add_field("document", DataType.VARCHAR, max_length=MAX_DOCUMENT_BYTES, enable_analyzer=True)
            schema.add_field("has_document", DataType.BOOL)
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_field("metadata", DataType.JSON)
            schema.add_field("content_hash", DataType.VARCHAR, max_length=128)
            schema.add_field("seq", DataType.INT64)
            schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                         input_field_names=["document"], output_field_names=["sparse"]))
            index = self._client.prepare_index_params()
            index.add_index("vector", index_type="HNSW", metric_type=METRICS[spec.metric],
                            params={"M": params.M, "efConstruction": params.ef_construction})
            index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
            info = {"format": FORMAT, "spec": spec.to_dict(), "encoder": encoder, "hnsw": params.to_dict(),
                    "metadata": dict(metadata), "created_at": time.time()}
            props = {INFO: json.dumps(info), FINGERPRINT: spec.fingerprint, HISTORY: "[]"}
            self._call("create_collection", physical, schema=schema, consistency_level="Strong", properties=props)
            try:
                self._call("create_index", physical, index, sync=False)  # empty: nothing to wait for
                self._call("load_collection", physical)
                self._call("create_alias", physical, alias)
            except BaseException:
                self._client.drop_collection(physical)
                raise

    def open_collection(self, name):
        with self._lock:
            physical = self._physical(name)
            if physical is None:
                raise self._missing(name)
            info, _ = self._info(name, physical)
            self._check_schema(name, physical, info.spec)
            state = self._call("get_load_state", physical).get("state")
            if "Loaded" not in str(state):  # a reopened collection may be left unloaded (the server)
                self._call("load_collection", physical)
            col = MilvusCollection(self, name, physical, info.spec, info.hnsw)
            import dataclasses

            return dataclasses.replace(info, count=col.count()), col

    def list_names(self) -> list[str]:
        with self._lock:
            return sorted(n for n in self._aliases() if not n.startswith("~"))

    def list_collections(self) -> list[CollectionInfo]:
        with self._lock:
            out = []
            for name in self.list_names():
                try:
                    out.append(self.open_collection(name)[0])
                except StoreFormatError:
                    continue  # not ours: listed by nobody
            return out

    def collection_info(self, name: str) -> CollectionInfo:
        check_name(name)
        return self.open_collection(name)[0]

    def delete_collection(self, name: str) -> None:
        if not (isinstance(name, str) and name.startswith("~")):
            check_name(name)
        with self._lock:
            physical = self._physical(name)
            if physical is None:
                raise self._missing(name)
            self._info(name, physical)  # never drop what latentspace did not make
            self._call("drop_alias", alias_of(name))
            self._call("drop_collection", physical)

    def rename_collection(self, name: str, new_name: str) -> None:
        check_name(name)
        check_name(new_name)
        with self._lock:
            if self._physical(name) is None:
                raise self._missing(name)
            if self._physical(new_name) is not None:
                raise AlreadyExistsError(f"A collection named {new_name!r} already exists in {self.uri}.")
            prefix = f"~{name}~"
            moves = {name: new_name, **{o: f"~{new_name}~{o[len(prefix):]}" for o in self._aliases()
                                        if o.startswith(prefix)}}
            for old, new in moves.items():  # the new alias first: the collection never goes nameless
                self._call("create_alias", self._physical(old), alias_of(new))
                self._call("drop_alias", alias_of(old))

    def _history(self, physical: str) -> list[dict[str, Any]]:
        return json.loads(self._properties(physical).get(HISTORY) or "[]")

    def swap(self, name: str, new_internal: str, action: str) -> None:
        with self._lock:
            current, replacement = self._physical(name), self._physical(new_internal)
            if current is None or replacement is None:
                raise NotFoundError(f"Cannot switch {name!r}: the collection or its replacement is missing.")
            history = self._history(current)
            seq = max([h["seq"] for h in history] + [0]) + 1
            new_info, _ = self._info(new_internal, replacement)
            history.append({"seq": seq, "collection_id": replacement, "previous_id": current, "action": action,
                            "fingerprint": new_info.spec.fingerprint, "model": new_info.spec.model,
                            "at": time.time()})
            self._call("alter_collection_properties", replacement, properties={HISTORY: json.dumps(history)})
            self._call("alter_alias", replacement, alias_of(name))  # the switch: one atomic step
            self._call("drop_alias", alias_of(new_internal))
            self._call("create_alias", current, alias_of(f"~{name}~retired~{seq}"))

    def collection_history(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            physical = self._physical(name)
            return self._history(physical) if physical else []

    def rollback_collection(self, name: str) -> None:
        check_name(name)
        with self._lock:
            physical = self._physical(name)
            history = self._history(physical) if physical else []
            if not history:
                raise NotFoundError(f"Collection {name!r} has no earlier space to roll back to.")
            previous = history[-1]["previous_id"]
            internal = next((n for n, a in self._aliases().items() if n.startswith(f"~{name}~")
                             and self._physical(n) == previous), None)
            if internal is None:
                raise NotFoundError(f"The earlier space of {name!r} was dropped; nothing to roll back to.")
            self.swap(name, internal, "rollback")

    def drop_retired(self, name: str) -> int:
        check_name(name)
        with self._lock:
            retired = [n for n in self._aliases() if n.startswith(f"~{name}~")]
            for internal in retired:
                self.delete_collection(internal)
            return len(retired)

    def retired_names(self, name: str) -> list[str]:
        check_name(name)
        with self._lock:
            prefix = f"~{name}~retired~"
            return sorted((n for n in self._aliases() if n.startswith(prefix)), key=lambda n: int(n[len(prefix):]))

    def disk_bytes(self) -> int:
        if self._folder is None:
            return 0  # a server's storage is its own (object storage, etcd)
        return sum(p.stat().st_size for p in Path(self._folder).rglob("*") if p.is_file())

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._client.close()


__all__ = ["MilvusStore", "alias_of", "name_of", "parse_uri"]
