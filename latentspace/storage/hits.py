"""What searches and gets return."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np


class Hit(NamedTuple):
    """One search result. ``score``: higher is better, in every mode.

    ``distance`` is the metric's distance (cosine ``1 - cos``, dot ``1 - <q, x>``, l2
    Euclidean) when the hit came from the vector side, else ``None``. ``ranks`` (hybrid
    search only) gives the hit's 1-based rank in each retriever that found it. A Hit is an
    immutable named tuple, cheap to make by the thousand, and its ``metadata`` is read-only
    (a ``dict`` subclass shared with the store's row cache; ``dict(hit.metadata)`` copies it).
    """

    id: str
    score: float
    document: str | None
    metadata: dict[str, Any]
    distance: float | None = None
    ranks: dict[str, int] | None = None
    vector: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "score": self.score, "distance": self.distance, "document": self.document,
               "metadata": self.metadata, "ranks": self.ranks or {}}
        if self.vector is not None:
            out["vector"] = self.vector.tolist()
        return out

    def __repr__(self) -> str:
        doc = (self.document or "")[:40]
        return f"Hit(id={self.id!r}, score={self.score:.4f}, document={doc!r}, metadata={self.metadata!r})"


def make_hits(ids: Sequence, documents: Sequence, metadatas: Sequence, scores: Sequence[float],
              dists: Sequence[float], keep_gone: bool = False) -> list:
    """Hits from columns in one C-level pass (``tuple.__new__`` skips the named tuple's
    Python-level constructor). A row deleted meanwhile (id None) is left out, or with
    ``keep_gone`` kept as None so that positions still line up."""
    new = tuple.__new__
    hits = list(map(new, repeat(Hit), zip(ids, scores, documents, metadatas, dists, repeat(None), repeat(None))))
    if None in ids:
        hits = [h if h[0] is not None else None for h in hits]
        if not keep_gone:
            hits = [h for h in hits if h is not None]
    return hits


@dataclass(frozen=True)
class Record:
    id: str
    document: str | None
    metadata: dict[str, Any]
    vector: np.ndarray | None = None
    content_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "document": self.document, "metadata": self.metadata}
        if self.vector is not None:
            out["vector"] = self.vector.tolist()
        return out


HIT_COLUMNS = ("query", "rank", "id", "score", "distance", "document")


def hit_rows(hits) -> list[dict[str, Any]]:
    """One flat row per hit: query number (for a batch), 1-based rank, id, score, distance,
    document, then each metadata key as a column of its own (``metadata.<key>`` where a key
    would shadow one of those)."""
    batches = hits if hits and isinstance(hits[0], list) else [hits]
    rows = []
    for q, result in enumerate(batches):
        for rank, h in enumerate(result, start=1):
            row = {"query": q, "rank": rank, "id": h.id, "score": h.score, "distance": h.distance,
                   "document": h.document}
            for key, value in (h.metadata or {}).items():
                row[f"metadata.{key}" if key in HIT_COLUMNS else key] = value
            rows.append(row)
    return rows


def hits_to_arrow(hits):
    """A search result (or a batch of them) as a ``pyarrow.Table``, one row per hit."""
    from ..core.errors import BackendUnavailableError

    try:
        import pyarrow as pa
    except ImportError:
        raise BackendUnavailableError("hits_to_arrow needs pyarrow: pip install 'latentspace[dataframe]'") from None
    rows = hit_rows(hits)
    names = list(dict.fromkeys(k for row in rows for k in row)) or list(HIT_COLUMNS)
    return pa.Table.from_pylist(rows, schema=None) if rows else pa.table({n: [] for n in names})


def hits_to_pandas(hits):
    """A search result (or a batch of them) as a ``pandas.DataFrame``, one row per hit."""
    from ..core.errors import BackendUnavailableError

    try:
        import pandas as pd
    except ImportError:
        raise BackendUnavailableError("hits_to_pandas needs pandas: pip install 'latentspace[dataframe]'") from None
    rows = hit_rows(hits)
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(HIT_COLUMNS))


def distances(hits: list[Hit]) -> list[float | None]:
    """The distances of a result list, in order."""
    return [h.distance for h in hits]
