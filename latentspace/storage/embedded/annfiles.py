"""The HNSW index of a collection: loaded from its file, rebuilt from SQLite, saved atomically.

The file ``idx-<cid>-<seq>-<rand>.hnsw`` is committed by atomically replacing the sidecar
``idx-<cid>.json`` (sha256, size, seq, count, params): the sidecar is the commit point. A
missing, truncated or altered file fails the check and the index is rebuilt from SQLite.

Checkpoints: as writes accumulate (``CHECKPOINT_MIN`` changes and ``CHECKPOINT_FRACTION``
of the live vectors since the file on disk), a background thread brings the index up to
date and saves it, so that the next open after a writer died replays only the tail of the
change log instead of rebuilding the graph (minutes at a million vectors). The thread takes
the store's lock like any writer; the writer's next batch is embedded meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from ...core.io import atomic_replace, sha256_file, write_json
from ..index import HnswIndex
from .sqlite import translate

INDEX_FORMAT = 1
CHECKPOINT_MIN = 20_000  # changes since the saved index before a background save
CHECKPOINT_FRACTION = 0.25  # ... and this fraction of the live vectors: the saved bytes stay within ~5x the last file


def drop_index_files(store_path: Path, cid: int) -> None:
    """Remove a collection's derived index files (its data lives in SQLite)."""
    for p in [*store_path.glob(f"idx-{cid}-*"), store_path / f"idx-{cid}.json"]:
        with contextlib.suppress(OSError):
            p.unlink()


class IndexFiles:
    """The ANN index: load or rebuild, catch up, save. (A part of :class:`.collection.CollectionStorage`.)"""

    def _sidecar(self) -> Path:
        return self.store.path / f"idx-{self.cid}.json"  # named as in drop_index_files

    def index(self) -> HnswIndex:
        """The ANN index, loaded (or rebuilt) and caught up with SQLite."""
        self.sync()
        if self._index is None:
            self._load_or_rebuild()
        return self._index

    def _load_or_rebuild(self) -> None:
        loaded = self._try_load()
        if loaded is None:
            self._rebuild()
            self.store._log(f"rebuilt index of {self.name!r} from the database ({len(self._index)} vectors)")
        else:
            self._index, self._index_seq = loaded
            self._index_saved_seq = self._index_seq
            self._replay_index()

    def _try_load(self) -> tuple[HnswIndex, int] | None:
        side = self._sidecar()
        try:
            meta = json.loads(side.read_text())
            path = self.store.path / meta["file"]
            ok = (
                meta.get("format") == INDEX_FORMAT
                and meta.get("dim") == self.spec.dim
                and meta.get("metric") == self.spec.metric
                and meta.get("params") == self.params.to_dict()
                and isinstance(meta.get("seq"), int)
                and "/" not in meta["file"]
                and path.is_file()
                and path.stat().st_size == meta.get("size")
                and meta["seq"] <= self.last_seq()
                and sha256_file(path) == meta.get("sha256")
            )
            if not ok:
                return None
            index = HnswIndex.load(str(path), self.spec.dim, self.spec.metric, self.params, meta["live"],
                                     huge_pages=self.store.huge_pages)
            return index, meta["seq"]
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return None

    def _rebuild(self) -> None:
        conn = self.conn
        try:
            conn.execute("BEGIN")  # one read snapshot for the seq and the rows
            try:
                seq = self.last_seq()
                n = self._count()
                index = HnswIndex(self.spec.dim, self.spec.metric, self.params, capacity=max(n, 1024),
                                  huge_pages=self.store.huge_pages)
                cur = conn.execute(
                    "SELECT rid, vector FROM records WHERE collection_id = ? ORDER BY rid", (self.cid,)
                )
                while batch := cur.fetchmany(20_000):
                    labels = np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch))
                    vecs = np.frombuffer(b"".join(r[1] for r in batch), dtype=np.float32).reshape(len(batch), -1)
                    index.add(labels, vecs)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise translate(exc, self.store.path, self.store.lock_timeout) from None
        self._index, self._index_seq = index, seq

    def _durable_seq(self) -> int:
        """The change sequence the index file on disk holds (0: none)."""
        if self._index_saved_seq >= 0:
            return self._index_saved_seq
        if self._disk_seq is None:
            try:
                self._disk_seq = int(json.loads(self._sidecar().read_text()).get("seq", 0))
            except (OSError, ValueError, TypeError, AttributeError):
                self._disk_seq = 0
        return self._disk_seq

    def _maybe_checkpoint(self, new_seq: int) -> None:
        """After a write: start a background save when the file on disk is far behind."""
        if self._checkpoint is not None or CHECKPOINT_MIN <= 0:
            return
        pending = new_seq - self._durable_seq()
        if pending < CHECKPOINT_MIN or pending < CHECKPOINT_FRACTION * self._count():
            return

        def run() -> None:
            try:
                with self.store._lock:
                    if not self.store.closed:
                        self.index()
                        self.save_index()
            except Exception as exc:  # noqa: BLE001 - a failed checkpoint leaves the last good file: say so
                self.store._log(f"background save of the index of {self.name!r} failed ({exc}); the next open "
                                "replays more of the change log")
            finally:
                self._checkpoint = None

        self._checkpoint = threading.Thread(target=run, name=f"latentspace-index-{self.cid}", daemon=True)
        self._checkpoint.start()

    def wait_checkpoint(self) -> None:
        """Wait for a background save in progress (call without holding the store's lock)."""
        t = self._checkpoint
        if t is not None and t is not threading.current_thread():
            t.join()

    def save_index(self, force: bool = False) -> bool:
        """Write the index file atomically if it holds changes the file lacks."""
        if self._index is None or (self._index_seq == self._index_saved_seq and not force):
            return False
        name = f"idx-{self.cid}-{self._index_seq}-{uuid.uuid4().hex[:8]}.hnsw"
        final = self.store.path / name
        tmp = self.store.path / (name + ".tmp")
        self._index.save(str(tmp))
        atomic_replace(tmp, final)
        write_json(self._sidecar(), {
            "format": INDEX_FORMAT, "file": name, "sha256": sha256_file(final), "size": final.stat().st_size,
            "seq": self._index_seq, "live": len(self._index), "dim": self.spec.dim, "metric": self.spec.metric,
            "params": self.params.to_dict(), "saved_at": time.time(),
        })
        self._index_saved_seq = self._disk_seq = self._index_seq
        self._cleanup_index_files(keep=name)
        return True

    def _cleanup_index_files(self, keep: str) -> None:
        now = time.time()
        for p in self.store.path.glob(f"idx-{self.cid}-*.hnsw*"):
            if p.name == keep:
                continue
            with contextlib.suppress(OSError):
                # a file another process is still writing is young: leave it to that process
                if p.suffix == ".hnsw" or now - p.stat().st_mtime > 600:
                    p.unlink()
