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


def distances(hits: list[Hit]) -> list[float | None]:
    """The distances of a result list, in order."""
    return [h.distance for h in hits]
