"""Getting vectors out of a Collection for analysis, sampled with a seed when large."""

from __future__ import annotations

import numpy as np


def collection_vectors(col, max_rows: int | None, seed: int = 0) -> tuple[np.ndarray, int]:
    """(vectors, total count): all vectors, or a seeded random sample of ``max_rows``."""
    total = len(col)
    if max_rows is None or total <= max_rows:
        recs = col.get(include_vectors=True)
    else:
        ids = [r.id for r in col.get()]
        pick = np.sort(np.random.default_rng(seed).choice(len(ids), max_rows, replace=False))
        recs = col.get(ids=[ids[i] for i in pick], include_vectors=True)
    if not recs:
        return np.zeros((0, col.spec.dim), dtype=np.float32), total
    return np.stack([r.vector for r in recs]), total
