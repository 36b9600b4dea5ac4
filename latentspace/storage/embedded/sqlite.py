"""The SQLite source of truth: schema, format version, connections, lock errors."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...core.errors import CorruptStoreError, StoreFormatError, StoreLockedError

FORMAT_VERSION = 1
DB_NAME = "latentspace.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    encoder TEXT,
    index_params TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    count INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    rid INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    vector BLOB NOT NULL,
    document TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    content_hash TEXT NOT NULL,
    UNIQUE (collection_id, id)
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('add', 'del')),
    rid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_collection ON changes (collection_id, seq);
"""
HISTORY_SCHEMA = """CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    collection_id INTEGER NOT NULL,
    previous_id INTEGER,
    action TEXT NOT NULL,
    spec TEXT NOT NULL,
    at REAL NOT NULL
)"""


def fts_table(collection_id: int) -> str:
    return f"fts_{int(collection_id)}"


def fts_schema(collection_id: int) -> str:
    return (
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts_table(collection_id)} USING fts5("
        "document, tokenize = 'porter unicode61 remove_diacritics 2')"
    )


def is_locked_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def is_transient(exc: BaseException) -> bool:
    """SQLITE_PROTOCOL: SQLite gave up reading the WAL index while another process rebuilt it
    (the recovery after a writer was killed). Nothing is wrong with the store; a retry works."""
    return isinstance(exc, sqlite3.OperationalError) and "locking protocol" in str(exc).lower()


def read_all(conn: sqlite3.Connection, sql: str, params: Any, path: Path, timeout: float, tries: int = 6) -> list:
    """One read, retried with backoff (~0.6 s in all) on a transient SQLITE_PROTOCOL."""
    for attempt in range(tries):
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            if is_transient(exc) and attempt + 1 < tries:
                time.sleep(0.01 * 2**attempt)
                continue
            raise translate(exc, path, timeout) from None
    raise AssertionError("unreachable")


def translate(exc: sqlite3.Error, path: Path, timeout: float) -> Exception:
    text = str(exc)
    if is_transient(exc):
        return StoreLockedError(
            f"The store {path} was being recovered by another process (SQLite: {text}); nothing is lost: retry."
        )
    if is_locked_error(exc):
        return StoreLockedError(
            f"The store {path} is locked by another writer (waited {timeout:g} s). One process writes at a time: "
            "retry when it finishes, or raise lock_timeout."
        )
    if "malformed" in text or "not a database" in text or not isinstance(exc, sqlite3.OperationalError):
        return CorruptStoreError(
            f"The store's database {path / DB_NAME} is corrupt or not a latentspace store ({text}). Restore it "
            "from a backup; index files are rebuilt from the database, the database is the source of truth."
        )
    return CorruptStoreError(f"SQLite error on {path / DB_NAME}: {text}")


def connect(path: Path, timeout: float, create: bool) -> sqlite3.Connection:
    db = path / DB_NAME
    try:
        conn = sqlite3.connect(db, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise CorruptStoreError(f"Could not put {db} in WAL mode (got {mode}).")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA journal_size_limit = 67108864")  # a checkpointed WAL shrinks back to 64 MB
        conn.execute("PRAGMA foreign_keys = ON")
        _init(conn, db, create)
    except sqlite3.Error as exc:
        raise translate(exc, path, timeout) from None
    return conn


def _init(conn: sqlite3.Connection, db: Path, create: bool) -> None:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        if tables:
            raise CorruptStoreError(f"{db} is a SQLite database but not a latentspace store (tables: {sorted(tables)}).")
        if not create:
            raise CorruptStoreError(f"{db} has no latentspace schema.")
        conn.execute("BEGIN IMMEDIATE")
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "meta" not in tables:
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(HISTORY_SCHEMA)
                conn.execute("INSERT INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
                conn.execute("INSERT INTO meta VALUES ('created_at', ?)", (repr(time.time()),))
                conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    if row is None:
        raise CorruptStoreError(f"{db} has no format version; it is not a complete latentspace store.")
    try:
        version = int(row[0])
    except ValueError:
        raise CorruptStoreError(f"{db} has an unreadable format version {row[0]!r}.") from None
    if version > FORMAT_VERSION:
        raise StoreFormatError(
            f"{db} was written in store format {version}; this latentspace reads format {FORMAT_VERSION} and older. "
            "Upgrade latentspace (pip install -U latentspace); the store was not changed."
        )
    if "history" not in tables:  # format-1 stores made before the history table existed: additive
        conn.execute(HISTORY_SCHEMA)


@contextlib.contextmanager
def write_txn(conn: sqlite3.Connection, path: Path, timeout: float) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT: the write lock, with a typed error when it cannot be had."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise translate(exc, path, timeout) from None
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise translate(exc, path, timeout) from None
        raise
