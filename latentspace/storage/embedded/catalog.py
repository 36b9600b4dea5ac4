"""The embedded store backend: a directory holding one SQLite database and derived index files.

It keeps the catalog of collections (their SpaceSpec, encoder config, index settings and
metadata), swaps names atomically for migrations, and keeps the history of retired spaces.
It knows nothing of encoders or :class:`~latentspace.collections.collection.Collection`:
the facade :class:`latentspace.collections.store.Store` builds those on top of it.
"""

from __future__ import annotations

import atexit
import json
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from ...core.errors import AlreadyExistsError, InvalidInputError, NotFoundError
from ...core.space import SpaceSpec
from ...core.validation import canonical_json, check_float, check_name
from ..base import Capabilities, CollectionInfo, StoreBackend
from .annfiles import drop_index_files
from .collection import CollectionStorage
from ..index import HnswParams
from .sqlite import DB_NAME, connect, fts_schema, read_all, translate, write_txn


_OPEN: weakref.WeakSet[EmbeddedStore] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # pragma: no cover - runs at interpreter exit
    for store in list(_OPEN):
        try:
            store.close()
        except Exception:
            pass


class _WalIndexWatch:
    """A cheap "has anything committed?" test: the WAL-index header at the start of the
    ``-shm`` file (SQLite's documented walformat: 48 bytes holding the change counter, the
    last valid frame and the salts, rewritten by every commit). A changed header sends the
    caller to ``PRAGMA data_version``, which stays the authority; an unchanged one saves that
    round trip (about 4 us of a 100 us query). Unavailable (no ``-shm``, no mmap): always
    "changed", i.e. the PRAGMA every time.

    Its file descriptors (ours and the one mmap keeps) stay open until :meth:`close`, which
    runs after the SQLite connection is closed: POSIX drops every ``fcntl`` lock a process
    holds on a file when it closes *any* descriptor of that file, so closing one while the
    connection was open dropped SQLite's lock on the ``-shm``; another process's connection
    then took itself for the first, truncated the file and rebuilt the WAL index under ours
    (our mapping died of SIGBUS: a store writing and searching while another process
    opened and closed connections crashed within seconds; tests/test_recovery.py).
    """

    HEADER = 48

    def __init__(self, shm: Path):
        import mmap

        self._map = None
        self._fd: int | None = None
        self._last = b""
        try:
            self._fd = os.open(shm, os.O_RDONLY)
        except OSError:
            return
        try:
            if os.fstat(self._fd).st_size >= self.HEADER:
                self._map = mmap.mmap(self._fd, self.HEADER, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            self._map = None

    def changed(self) -> bool:
        if self._map is None:
            return True
        head = self._map[: self.HEADER]
        if head == self._last:
            return False
        self._last = head
        return True

    def close(self) -> None:
        """Only after the SQLite connection is closed (see the class docstring)."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class EmbeddedStore(StoreBackend):
    """A directory of collections. SQLite (WAL) is the truth; index files are derived.

    One writer at a time (SQLite's lock; :class:`StoreLockedError` after ``lock_timeout``
    seconds), any number of reader processes, each seeing committed writes on its next query.
    """

    capabilities = Capabilities()

    def __init__(self, path: str | os.PathLike, *, lock_timeout: float = 10.0, create: bool = True, verbose: bool = False,
                 huge_pages: bool = True):
        self.lock_timeout = check_float(lock_timeout, "lock_timeout", "open_store", 0.0, 86400.0)
        if type(huge_pages) is not bool:
            raise InvalidInputError(f"open_store's huge_pages is True or False; got {huge_pages!r}.")
        self.huge_pages = huge_pages  # ask Linux for 2 MiB pages under HNSW indexes (see storage/hugepages.py)
        p = Path(path).expanduser()
        if p.exists() and not p.is_dir():
            raise InvalidInputError(f"Store path {p} is a file, not a directory. A store is a directory: pick another path.")
        if not p.exists():
            if not create:
                raise NotFoundError(f"No store at {p}.")
            p.mkdir(parents=True, exist_ok=True)
        elif not (p / DB_NAME).exists() and not create:
            raise NotFoundError(f"{p} is not a latentspace store (it has no {DB_NAME}).")
        self.path = p.resolve()
        self.verbose = verbose
        self.messages: list[str] = []
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = connect(self.path, self.lock_timeout, create)
        self._dv_cursor: sqlite3.Cursor | None = self._conn.cursor()
        self._data_version = self._dv_cursor.execute("PRAGMA data_version").fetchone()[0]
        # opened after that first read, which made SQLite create the -shm file; our open
        # connection keeps that file in place until close
        self._watch = _WalIndexWatch(self.path / (DB_NAME + "-shm"))
        self._watch.changed()  # header first, then the version: a commit in between shows next poll
        self._data_version = self._dv_cursor.execute("PRAGMA data_version").fetchone()[0]
        self._generation = 0
        self._collections: dict[str, CollectionStorage] = {}
        _OPEN.add(self)

    # -- plumbing -------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise InvalidInputError(f"The store {self.path} is closed.")
        return self._conn

    def _poll(self) -> int:
        """Bump the generation when another connection has committed since the last poll.

        (Our own commits leave data_version alone: writers apply them to their indexes directly.)
        """
        if self._dv_cursor is None:
            self._connection()  # raises: the store is closed
        if not self._watch.changed():
            return self._generation
        try:
            v = self._dv_cursor.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise translate(exc, self.path, self.lock_timeout) from None
        if v != self._data_version:
            self._data_version = v
            self._generation += 1
        return self._generation

    def _log(self, message: str) -> None:
        self.messages.append(message)
        if self.verbose:
            print(message)

    def _q(self, sql: str, params: Any = ()) -> list:
        return read_all(self._connection(), sql, params, self.path, self.lock_timeout)

    def close(self) -> None:
        """Save derived index files that are behind, and close the database."""
        if self._conn is None:
            return
        for storage in list(self._collections.values()):
            storage.wait_checkpoint()  # a background save needs the lock: let it finish first
        with self._lock:
            for storage in self._collections.values():
                try:
                    storage.save_index()
                except (OSError, sqlite3.Error):
                    pass
            self._dv_cursor = None
            self._conn.close()
            self._conn = None
            self._watch.close()  # after the connection: closing its descriptors drops SQLite's locks
            _OPEN.discard(self)

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.path)!r})"

    @property
    def closed(self) -> bool:
        return self._conn is None

    # -- collections ----------------------------------------------------------------
    def _row(self, name: str):
        rows = self._q(
            "SELECT id, name, spec, encoder, index_params, metadata, count, created_at FROM collections WHERE name = ?",
            (name,),
        )
        return rows[0] if rows else None

    def _info(self, row) -> CollectionInfo:
        return CollectionInfo(
            name=row[1], count=row[6], spec=SpaceSpec.from_json(row[2]),
            encoder=json.loads(row[3]) if row[3] else None, hnsw=HnswParams.from_dict(json.loads(row[4])),
            metadata=json.loads(row[5]), created_at=row[7],
        )

    def create_collection(self, name: str, spec: SpaceSpec, encoder: dict[str, Any] | None, params: HnswParams,
                          metadata: dict[str, Any]) -> None:
        """Add a collection to the catalog (name, spec and metadata already checked by the caller)."""
        with self._lock:
            conn = self._connection()
            with write_txn(conn, self.path, self.lock_timeout):
                if conn.execute("SELECT 1 FROM collections WHERE name = ?", (name,)).fetchone():
                    raise AlreadyExistsError(
                        f"A collection named {name!r} already exists in {self.path}. Open it with get_collection, "
                        "or use get_or_create_collection."
                    )
                cur = conn.execute(
                    "INSERT INTO collections (name, spec, encoder, index_params, metadata, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (name, spec.to_json(), canonical_json(encoder) if encoder is not None else None,
                     canonical_json(params.to_dict()), canonical_json(metadata), time.time()),
                )
                conn.execute(fts_schema(cur.lastrowid))

    def open_collection(self, name: str) -> tuple[CollectionInfo, CollectionStorage]:
        """The catalog entry of ``name`` and its storage (one per collection per store)."""
        with self._lock:
            row = self._row(name)
            if row is None:
                raise self._missing(name)
            info = self._info(row)
            storage = self._collections.get(name)
            if storage is None or storage.cid != row[0]:
                storage = CollectionStorage(self, row[0], name, info.spec, info.hnsw)
                self._collections[name] = storage
        return info, storage

    def list_names(self) -> list[str]:
        return [r[0] for r in self._q("SELECT name FROM collections WHERE name NOT LIKE '~%' ORDER BY name")]

    def list_collections(self) -> list[CollectionInfo]:
        rows = self._q(
            "SELECT id, name, spec, encoder, index_params, metadata, count, created_at FROM collections "
            "WHERE name NOT LIKE '~%' ORDER BY name"
        )
        return [self._info(r) for r in rows]

    def _missing(self, name: str) -> NotFoundError:
        names = self.list_names()
        hint = f" Collections here: {', '.join(names)}." if names else " The store has no collections."
        return NotFoundError(f"No collection named {name!r} in {self.path}.{hint}")

    def collection_info(self, name: str) -> CollectionInfo:
        check_name(name)
        row = self._row(name)
        if row is None:
            raise self._missing(name)
        return self._info(row)

    def delete_collection(self, name: str) -> None:
        if not (isinstance(name, str) and name.startswith("~")):
            check_name(name)
        with self._lock:
            conn = self._connection()
            with write_txn(conn, self.path, self.lock_timeout):
                row = conn.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()
                if row is None:
                    raise self._missing(name)
                cid = row[0]
                conn.execute("DELETE FROM records WHERE collection_id = ?", (cid,))
                conn.execute("DELETE FROM changes WHERE collection_id = ?", (cid,))
                conn.execute(f"DROP TABLE IF EXISTS fts_{int(cid)}")
                conn.execute("DELETE FROM collections WHERE id = ?", (cid,))
            storage = self._collections.pop(name, None)
            if storage is not None:
                storage._index = None  # a handle still open must not save it back
            drop_index_files(self.path, cid)

    def rename_collection(self, name: str, new_name: str) -> None:
        """Give a collection a new name, atomically. Its history, retired spaces and any
        unfinished migration follow it; handles opened under the old name keep working."""
        check_name(name)
        check_name(new_name)
        with self._lock:
            conn = self._connection()
            with write_txn(conn, self.path, self.lock_timeout):
                if conn.execute("SELECT 1 FROM collections WHERE name = ?", (name,)).fetchone() is None:
                    raise self._missing(name)
                if conn.execute("SELECT 1 FROM collections WHERE name = ?", (new_name,)).fetchone() is not None:
                    raise AlreadyExistsError(f"A collection named {new_name!r} already exists in {self.path}.")
                # with the store's own names derived from it, "~name~..." (shadows, retired spaces)
                prefix = f"~{name}~"
                owned = conn.execute("SELECT name FROM collections WHERE substr(name, 1, ?) = ?",
                                     (len(prefix), prefix)).fetchall()
                renames = {name: new_name, **{o: f"~{new_name}~{o[len(prefix):]}" for (o,) in owned}}
                for old, new in renames.items():
                    conn.execute("UPDATE collections SET name = ? WHERE name = ?", (new, old))
                conn.execute("UPDATE history SET name = ? WHERE name = ?", (new_name, name))
            for old, new in renames.items():
                storage = self._collections.pop(old, None)
                if storage is not None:
                    storage.name = new
                    self._collections[new] = storage

    # -- spaces over time: the switch of a migration, rollback, history ------------------
    def swap(self, name: str, new_internal: str, action: str) -> None:
        """Atomically give ``name`` to the collection ``new_internal`` and retire the current one."""
        with self._lock:
            conn = self._connection()
            with write_txn(conn, self.path, self.lock_timeout):
                cur = conn.execute("SELECT id, spec FROM collections WHERE name = ?", (name,)).fetchone()
                new = conn.execute("SELECT id, spec FROM collections WHERE name = ?", (new_internal,)).fetchone()
                if cur is None or new is None:
                    raise NotFoundError(f"Cannot switch {name!r}: the collection or its replacement is missing.")
                retired = f"~{name}~retired~{cur[0]}"
                conn.execute("UPDATE collections SET name = ? WHERE id = ?", (retired, cur[0]))
                conn.execute("UPDATE collections SET name = ? WHERE id = ?", (name, new[0]))
                conn.execute(
                    "INSERT INTO history (name, collection_id, previous_id, action, spec, at) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, new[0], cur[0], action, new[1], time.time()),
                )
            self._collections.pop(name, None)

    def collection_history(self, name: str) -> list[dict[str, Any]]:
        """The spaces ``name`` has had, oldest first: each switch and rollback."""
        rows = self._q("SELECT seq, collection_id, previous_id, action, spec, at FROM history WHERE name = ? ORDER BY seq",
                       (name,))
        return [{"seq": r[0], "collection_id": r[1], "previous_id": r[2], "action": r[3],
                 "fingerprint": SpaceSpec.from_json(r[4]).fingerprint, "model": SpaceSpec.from_json(r[4]).model,
                 "at": r[5]} for r in rows]

    def rollback_collection(self, name: str) -> None:
        """Give ``name`` back to the space it had before its last switch (kept until dropped)."""
        check_name(name)
        last = self._q("SELECT previous_id FROM history WHERE name = ? ORDER BY seq DESC LIMIT 1", (name,))
        if not last or last[0][0] is None:
            raise NotFoundError(f"Collection {name!r} has no earlier space to roll back to.")
        prev = self._q("SELECT name FROM collections WHERE id = ?", (last[0][0],))
        if not prev:
            raise NotFoundError(f"The earlier space of {name!r} was dropped; nothing to roll back to.")
        self.swap(name, prev[0][0], "rollback")

    def drop_retired(self, name: str) -> int:
        """Delete the retired spaces of ``name`` (no rollback past this). Returns how many."""
        check_name(name)
        prefix = f"~{name}~"  # compared as a prefix: LIKE would read '_' in a name as a wildcard
        retired = [r[0] for r in self._q("SELECT name FROM collections WHERE substr(name, 1, ?) = ?",
                                         (len(prefix), prefix))]
        for internal in retired:
            self.delete_collection(internal)
        return len(retired)

    def retired_names(self, name: str) -> list[str]:
        check_name(name)
        prefix = f"~{name}~retired~"
        return [r[0] for r in self._q("SELECT name FROM collections WHERE substr(name, 1, ?) = ? ORDER BY id",
                                      (len(prefix), prefix))]

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())


__all__ = ["EmbeddedStore", "CollectionInfo"]
