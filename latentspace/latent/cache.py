"""Latents into collections, through a cache keyed by (model weights sha256, input content hash)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InvalidInputError
from ..core.io import cache_dir


def row_hashes(x: np.ndarray) -> list[str]:
    """sha256 of each item's float32 bytes and shape: equal inputs, equal keys."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    shape = str(x.shape[1:]).encode()
    return [hashlib.sha256(shape + row.tobytes()).hexdigest() for row in x.reshape(len(x), -1)]


class LatentCache:
    """A SQLite file of posterior means: (model sha256, input sha256) -> latent, with when it was made."""

    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            path = cache_dir() / "latents.db"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS latents (model_sha TEXT NOT NULL, input_sha TEXT NOT NULL, "
            "vector BLOB NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (model_sha, input_sha))"
        )
        self.hits = 0
        self.misses = 0

    def close(self) -> None:
        self._conn.close()

    def latents(self, model, x: Any) -> tuple[np.ndarray, list[str]]:
        """Posterior means of x, encoding only the items not cached for this model's weights."""
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim < 2 or len(arr) == 0:
            raise InvalidInputError(f"latents needs a non-empty batch of items; got shape {arr.shape}.")
        keys = row_hashes(arr)
        sha = model.weights_sha256()
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(keys))
        for s in range(0, len(uniq), 500):
            part = uniq[s : s + 500]
            marks = ",".join("?" * len(part))
            for key, blob in self._conn.execute(
                f"SELECT input_sha, vector FROM latents WHERE model_sha = ? AND input_sha IN ({marks})", [sha, *part]
            ):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        missing = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            z = model.latents(arr[missing])
            now = time.time()
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT OR REPLACE INTO latents VALUES (?, ?, ?, ?)",
                ((sha, keys[i], z[j].tobytes(), now) for j, i in enumerate(missing)),
            )
            self._conn.execute("COMMIT")
            for j, i in enumerate(missing):
                found[keys[i]] = z[j]
        return np.stack([found[k] for k in keys]).astype(np.float32), keys


def to_collection(model, x: Any, store, name: str, *, ids: list[str] | None = None,
                  metadatas: list[dict] | None = None, cache: LatentCache | None = None):
    """Store the latents of ``x`` in collection ``name`` (created in the model's space if missing).

    Each record's metadata records its provenance: the model, its weights' sha256 and the
    input's content hash. Searching the collection with another model's latents is refused
    like any other space mismatch.
    """
    spec = model.spec
    own_cache = cache is None
    cache = cache or LatentCache()
    try:
        z, keys = cache.latents(model, x)
    finally:
        if own_cache:
            cache.close()
    n = len(z)
    ids = ids if ids is not None else [k[:16] for k in keys]
    if len(ids) != n:
        raise InvalidInputError(f"to_collection: {len(ids)} ids for {n} items.")
    metas = metadatas if metadatas is not None else [{} for _ in range(n)]
    if len(metas) != n:
        raise InvalidInputError(f"to_collection: {len(metas)} metadatas for {n} items.")
    provenance = [{**m, "encoded_by": spec.model, "weights_sha256": spec.weights_sha256, "input_sha256": k}
                  for m, k in zip(metas, keys)]
    col = store.get_or_create_collection(name, space=spec)
    spec_of_col = col.spec
    spec_of_col.require_same(spec, f"Storing latents of {spec.model} in collection {name!r}")
    col.upsert(ids, vectors=z, metadatas=provenance, space=spec)
    return col
