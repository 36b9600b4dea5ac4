"""What searches and gets return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


class Hit(NamedTuple):
    """One search result. ``score``: higher is better, in every mode.

    ``distance`` is the metric's distance (cosine ``1 - cos``, dot ``1 - <q, x>``, l2
    Euclidean) when the hit came from the vector side, else ``None``. ``ranks`` (hybrid
    search only) gives the hit's 1-based rank in each retriever that found it. A Hit is an
    immutable named tuple: cheap to make by the thousand.
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
