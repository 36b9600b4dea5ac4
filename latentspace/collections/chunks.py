"""Records and their chunks: the unit the applications work in.

A long text is stored as several rows, its chunks, each with ``metadata["source_id"]``
naming the record it was cut from (``latentspace ingest`` and :func:`latentspace.ingest.chunk_items`
write it); a text that fits is one row whose id is the record's. Deduplication, outliers
and recommendation work per record by default (a record is a duplicate of another, not
half of it) and per chunk on request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

SOURCE_KEY = "source_id"
Unit = Literal["record", "chunk"]
UNITS = ("record", "chunk")


def record_of(row_id: str, metadata: dict | None) -> str:
    """The id of the record a stored row belongs to: its ``source_id`` when it is a chunk."""
    source = (metadata or {}).get(SOURCE_KEY)
    return source if isinstance(source, str) and source else row_id


@dataclass(frozen=True)
class RecordIndex:
    """Rows grouped by record: ``of[i]`` is the position in ``ids`` of row ``i``'s record."""

    ids: list[str]
    of: np.ndarray

    @property
    def chunked(self) -> bool:
        """Whether any record has several rows (else records and rows are the same)."""
        return len(self.ids) < len(self.of)

    def sizes(self) -> np.ndarray:
        return np.bincount(self.of, minlength=len(self.ids))


def record_index(row_ids: list[str], metadatas: list[dict]) -> RecordIndex:
    """Records in order of their first row."""
    pos: dict[str, int] = {}
    of = np.fromiter((pos.setdefault(record_of(i, m), len(pos)) for i, m in zip(row_ids, metadatas)),
                     dtype=np.int64, count=len(row_ids))
    return RecordIndex(list(pos), of)


def record_vectors(vectors: np.ndarray, index: RecordIndex, normalize: bool) -> np.ndarray:
    """One vector per record: the mean of its rows' vectors (unit length when the space is)."""
    out = np.zeros((len(index.ids), vectors.shape[1]), dtype=np.float64)
    np.add.at(out, index.of, vectors)
    out /= np.maximum(index.sizes(), 1)[:, None]
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)
