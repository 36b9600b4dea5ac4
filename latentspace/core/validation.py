"""Parameter and data checks, in one place and with one message shape.

The message shape follows scikit-learn's parameter validation:
``The 'k' parameter of search must be an int in the range [1, 10000]. Got 0 instead.``
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InvalidInputError

MAX_K = 10_000
MAX_ID_LENGTH = 512
MAX_NAME_LENGTH = 128
MAX_METADATA_DEPTH = 4
MAX_METADATA_BYTES = 64 * 1024
NORM_TOLERANCE = 1e-3

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _bad(param: str, where: str, expected: str, got: Any) -> InvalidInputError:
    shown = repr(got)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return InvalidInputError(f"The {param!r} parameter of {where} must be {expected}. Got {shown} instead.")


def check_int(value: Any, param: str, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= int(value) <= high:
        raise _bad(param, where, f"an int in the range [{low}, {high}]", value)
    return int(value)


def check_k(k: Any, where: str = "search") -> int:
    return check_int(k, "k", where, 1, MAX_K)


def check_float(value: Any, param: str, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not low <= value <= high:
        raise _bad(param, where, f"a float in the range [{low}, {high}]", value)
    return float(value)


def check_choice(value: Any, param: str, where: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise _bad(param, where, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def check_name(name: Any, what: str = "collection") -> str:
    """A collection (or similar) name: 1-128 chars of letters, digits, '.', '_' or '-'."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"A {what} name must be a non-empty string. Got {name!r} instead.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(f"A {what} name must be at most {MAX_NAME_LENGTH} characters. Got {len(name)}.")
    if ".." in name or not _NAME_RE.match(name):
        raise InvalidInputError(
            f"A {what} name may contain only letters, digits, '.', '_' and '-', must start with a letter "
            f"or digit and may not contain '..'. Got {name!r}. Try {_suggest(name)!r}."
        )
    return name


def _suggest(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).replace("..", ".").strip("-._")
    return s or "my-collection"


def check_query_text(text: Any, where: str = "search") -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"The query of {where} must be a non-empty string. Got {text!r} instead.")
    return text


def check_texts(texts: Any, what: str = "documents") -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidInputError(f"{what} must be a list of strings. Got {type(texts).__name__} instead.")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInputError(f"{what}[{i}] must be a string. Got {type(t).__name__} instead.")
    return list(texts)


def check_ids(ids: Any, where: str = "add", allow_empty: bool = False) -> list[str]:
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise InvalidInputError(f"The 'ids' parameter of {where} must be a list of strings. Got {type(ids).__name__}.")
    ids = list(ids)
    if not ids and not allow_empty:
        raise InvalidInputError(f"The 'ids' parameter of {where} is empty: pass at least one id.")
    seen: set[str] = set()
    for i, x in enumerate(ids):
        if not isinstance(x, str) or not x:
            raise InvalidInputError(f"ids[{i}] must be a non-empty string. Got {x!r} instead.")
        if len(x) > MAX_ID_LENGTH:
            raise InvalidInputError(f"ids[{i}] is {len(x)} characters long; the limit is {MAX_ID_LENGTH}.")
        if "\x00" in x:
            raise InvalidInputError(f"ids[{i}] contains a NUL character.")
        if x in seen:
            raise InvalidInputError(f"ids[{i}] = {x!r} appears more than once in this batch; ids must be unique.")
        seen.add(x)
    return ids


def _check_meta_value(value: Any, path: str, depth: int) -> None:
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, numbers.Integral):
        if not -(2**63) <= int(value) < 2**63:
            raise InvalidInputError(f"metadata{path} = {value} does not fit in 64 bits.")
        return
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise InvalidInputError(f"metadata{path} is {value}; metadata numbers must be finite.")
        return
    if depth >= MAX_METADATA_DEPTH and isinstance(value, (Mapping, list, tuple)):
        raise InvalidInputError(
            f"metadata{path} is nested deeper than {MAX_METADATA_DEPTH} levels; flatten it."
        )
    if isinstance(value, Mapping):
        _check_meta_dict(value, path, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_meta_value(v, f"{path}[{i}]", depth + 1)
        return
    raise InvalidInputError(
        f"metadata{path} has type {type(value).__name__}; metadata values must be str, int, float, bool, "
        "None, lists or objects of those."
    )


def _check_meta_dict(meta: Mapping, path: str, depth: int) -> None:
    for key, value in meta.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"metadata{path} has key {key!r}; keys must be non-empty strings.")
        if key.startswith("$"):
            raise InvalidInputError(f"metadata{path} has key {key!r}; keys may not start with '$' (reserved for filters).")
        _check_meta_value(value, f"{path}[{key!r}]", depth)


def check_metadata(meta: Any, index: int | None = None) -> dict:
    label = "metadata" if index is None else f"metadatas[{index}]"
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidInputError(f"{label} must be a JSON object (a dict). Got {type(meta).__name__} instead.")
    try:
        _check_meta_dict(meta, "", 1)
    except InvalidInputError as exc:
        raise InvalidInputError(str(exc).replace("metadata", label, 1)) from None
    encoded = canonical_json(meta)
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidInputError(f"{label} is {len(encoded)} bytes as JSON; the limit is {MAX_METADATA_BYTES}.")
    return json.loads(encoded)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def as_matrix(vectors: Any, what: str = "vectors") -> np.ndarray:
    """Coerce to a 2-D float32 C-contiguous array, rejecting non-numeric input."""
    if isinstance(vectors, (str, bytes)):
        raise InvalidInputError(f"{what} must be a 2-D array of numbers. Got {type(vectors).__name__}.")
    try:
        arr = np.asarray(vectors)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{what} must be a 2-D array of numbers (rows of equal length): {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InvalidInputError(f"{what} must contain numbers only. Got dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise InvalidInputError(f"{what} must be real numbers. Got complex values.")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidInputError(f"{what} must be 2-D (n, dim). Got shape {arr.shape}.")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def check_vectors(
    vectors: Any,
    dim: int,
    *,
    metric: str,
    normalized: bool,
    what: str = "vectors",
) -> np.ndarray:
    """Check dimension, finiteness, zero rows for cosine and unit norm when normalized."""
    arr = as_matrix(vectors, what)
    if arr.shape[0] == 0:
        raise InvalidInputError(f"{what} is empty: pass at least one vector.")
    if arr.shape[1] != dim:
        raise InvalidInputError(f"{what} have dimension {arr.shape[1]}; this space has dimension {dim}.")
    # one pass: a NaN or inf anywhere makes the row's squared norm non-finite
    with np.errstate(over="ignore", invalid="ignore"):
        sq = np.einsum("ij,ij->i", arr, arr)
    if not np.isfinite(sq).all():
        finite = np.isfinite(arr).all(axis=1)
        bad = np.flatnonzero(~finite)
        if len(bad):
            raise InvalidInputError(
                f"{what} row(s) {bad[:5].tolist()} contain NaN or inf (or overflow float32); every value must be finite."
            )
        bad = np.flatnonzero(~np.isfinite(sq))
        raise InvalidInputError(f"{what} row(s) {bad[:5].tolist()} are too large: their norm overflows float32.")
    norms = np.sqrt(sq)
    if metric == "cosine" and (norms == 0).any():
        bad = np.flatnonzero(norms == 0)
        raise InvalidInputError(f"{what} row(s) {bad[:5].tolist()} are zero vectors, which have no cosine direction.")
    if normalized:
        off = np.abs(norms - 1.0) > NORM_TOLERANCE
        if off.any():
            bad = np.flatnonzero(off)
            raise InvalidInputError(
                f"{what} row(s) {bad[:5].tolist()} have norm {norms[bad[0]]:.4f}; this space is normalized, so "
                f"every vector must have unit norm (within {NORM_TOLERANCE}). Normalize them or create the "
                "collection with normalize=False."
            )
    return arr
