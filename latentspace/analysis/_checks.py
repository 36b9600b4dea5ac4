"""Input checks shared by the analysis functions (numpy only, no torch)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InvalidInputError


def points(x: Any, name: str = "X", min_rows: int = 2, where: str = "analysis") -> np.ndarray:
    """A finite 2-D float64 array with at least ``min_rows`` rows."""
    if isinstance(x, (str, bytes)):
        raise InvalidInputError(f"{where}: {name} must be a 2-D array of numbers, got {type(x).__name__}.")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{where}: {name} must be a 2-D array of numbers ({exc}).") from None
    if arr.ndim != 2:
        raise InvalidInputError(
            f"{where}: {name} must be 2-D (n_points, dim), got shape {arr.shape}. "
            + ("Reshape a single vector with x[None, :]." if arr.ndim == 1 else "")
        )
    if arr.shape[0] < min_rows:
        raise InvalidInputError(f"{where}: {name} has {arr.shape[0]} rows; this needs at least {min_rows}.")
    if arr.shape[1] < 1:
        raise InvalidInputError(f"{where}: {name} has no columns.")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise InvalidInputError(f"{where}: {name} rows {rows} contain NaN or inf; drop or fix them first.")
    return arr


def paired(x: Any, y: Any, where: str, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    a = points(x, "X", min_rows, where)
    b = points(y, "Y", min_rows, where)
    if a.shape[0] != b.shape[0]:
        raise InvalidInputError(
            f"{where}: X has {a.shape[0]} rows and Y has {b.shape[0]}; rows must be the same items in both spaces."
        )
    return a, b


def sample_rows(x: np.ndarray, max_rows: int | None, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows, the sampled indices or None when all rows were kept)."""
    from .vectors import sample_index

    idx = sample_index(x.shape[0], max_rows, seed)
    return (x, None) if idx is None else (x[idx], idx)
