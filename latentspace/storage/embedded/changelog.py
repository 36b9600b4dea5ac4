"""The change log: every write appends (seq, op, row id); derived structures replay it.

The HNSW index and the exact matrix each know the last change they contain. A writer
applies its own changes directly when its structures were current; otherwise (and when
another process wrote, seen through :meth:`sync`) they replay the log from their seq.
"""

from __future__ import annotations

import numpy as np


class ChangeLog:
    """Keeping the derived index and matrix in step with SQLite. (A part of :class:`.collection.CollectionStorage`.)"""

    def sync(self) -> None:
        """Catch up with writes committed by other connections since the last call."""
        gen = self.store._poll()
        if gen == self._generation:
            return
        self._generation = gen
        self.check_exists()
        seq = self.last_seq()
        if seq != self._synced_seq:  # another connection changed this collection: what was cached of it is stale
            self._forget_derived(seq)
        if self._index is not None and seq != self._index_seq:
            self._replay_index()
        if self._matrix is not None and seq != self._matrix.seq:
            self._replay_matrix()

    def _forget_derived(self, seq: int) -> None:
        """Drop what is cached per filter (match sets, membership tests) and the id map: they
        hold the collection as of an older change sequence."""
        self._filters.clear()
        self._rid_of = None
        self._synced_seq = seq

    def _after_write(self, prev_seq, new_seq, removed, rids, vectors) -> None:
        self._forget_derived(new_seq)
        if self._index is not None:
            if self._index_seq == prev_seq:
                if len(removed):
                    self._index.remove(np.asarray(removed, dtype=np.int64))
                if len(rids):
                    self._index.add(rids, vectors)
                self._index_seq = new_seq
            else:
                self._replay_index()
        if self._matrix is not None:
            if self._matrix.seq == prev_seq:
                self._matrix_apply(removed, rids, vectors)
                self._matrix.seq = new_seq
            else:
                self._replay_matrix()

    def _changes_since(self, seq: int):
        return self._q(
            "SELECT c.seq, c.op, c.rid, r.vector FROM changes c LEFT JOIN records r ON r.rid = c.rid AND c.op = 'add' "
            "WHERE c.collection_id = ? AND c.seq > ? ORDER BY c.seq",
            (self.cid, seq),
        )

    def _apply_log(self, rows, remove, add) -> int:
        """Apply change rows in order, batching runs of adds and of deletes."""
        last = None
        pending_add: list[tuple[int, bytes]] = []
        pending_del: list[int] = []

        def flush():
            if pending_del:
                remove(np.asarray(pending_del, dtype=np.int64))
                pending_del.clear()
            if pending_add:
                labels = np.asarray([r for r, _ in pending_add], dtype=np.int64)
                vecs = np.frombuffer(b"".join(b for _, b in pending_add), dtype=np.float32).reshape(len(pending_add), -1)
                add(labels, vecs)
                pending_add.clear()

        for seq, op, rid, blob in rows:
            last = seq
            if op == "add":
                if pending_del:
                    flush()
                if blob is not None:
                    pending_add.append((rid, blob))
            else:
                if pending_add:
                    flush()
                pending_del.append(rid)
        flush()
        return last

    def _replay_index(self) -> None:
        rows = self._changes_since(self._index_seq)
        if rows:
            self._index_seq = self._apply_log(rows, self._index.remove, self._index.add)

    def _replay_matrix(self) -> None:
        rows = self._changes_since(self._matrix.seq)
        if rows:
            self._matrix.seq = self._apply_log(
                rows, lambda r: self._matrix_apply(r, np.zeros(0, np.int64), None),
                lambda labels, vecs: self._matrix_apply([], labels, vecs),
            )
