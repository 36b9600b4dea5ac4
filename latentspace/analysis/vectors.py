"""Getting vectors out of collections for analysis: sampled with a seed when large."""

from __future__ import annotations

import numpy as np

from ..core.errors import InvalidInputError


def sample_index(n: int, max_rows: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded sample of ``max_rows`` out of ``n``, or None to keep all."""
    if max_rows is None or n <= max_rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))


def collection_records(col, max_rows: int | None, seed: int = 0, where: dict | None = None) -> tuple[list, int]:
    """(records with vectors, total count): all of them (those matching ``where``), or a
    seeded sample of ``max_rows``."""
    total = len(col) if where is None else col.count(where)
    pick = sample_index(total, max_rows, seed)
    if pick is None:
        return col.get(where=where, include_vectors=True), total
    ids = [r.id for r in col.get(where=where)]
    return col.get(ids=[ids[i] for i in pick], include_vectors=True), total


def stack(records, dim: int) -> np.ndarray:
    return np.stack([r.vector for r in records]) if records else np.zeros((0, dim), dtype=np.float32)


def collection_vectors(col, max_rows: int | None, seed: int = 0) -> tuple[np.ndarray, int]:
    """(vectors, total count): all vectors, or a seeded random sample of ``max_rows``."""
    recs, total = collection_records(col, max_rows, seed)
    return stack(recs, col.spec.dim), total


def paired_vectors(a, b, max_rows: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The vectors of the items two collections share (by id, in a's order), sampled when many."""
    ids_b = {r.id for r in b.get()}
    shared = [r.id for r in a.get() if r.id in ids_b]
    if len(shared) < 3:
        raise InvalidInputError(f"Collections {a.name!r} and {b.name!r} share {len(shared)} ids; pairing needs 3+.")
    pick = sample_index(len(shared), max_rows, seed)
    if pick is not None:
        shared = [shared[i] for i in pick]
    return (stack(a.get(ids=shared, include_vectors=True), a.spec.dim),
            stack(b.get(ids=shared, include_vectors=True), b.spec.dim))
