"""Matryoshka truncation of an existing encoder, sharing its model: another space, same weights."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..core.errors import InvalidInputError
from ..core.validation import check_int
from .base import Encoder


class TruncatedEncoder(Encoder):
    """``base``'s vectors cut to their first ``dim`` values, renormalised when ``base`` normalises.

    Its space is ``base``'s with ``truncate_dim=dim``: the same space as building the base
    encoder with ``truncate_dim=dim``, without loading the model twice.
    """

    kind = "truncated"

    def __init__(self, base: Encoder, dim: int):
        if not isinstance(base, Encoder):
            raise InvalidInputError(f"TruncatedEncoder needs an Encoder to truncate; got {type(base).__name__}.")
        native = int(base.spec.metadata.get("native_dim") or base.spec.dim)
        top = base.spec.dim if base.spec.truncate_dim is None else base.spec.truncate_dim
        self.dim = check_int(dim, "dim", "TruncatedEncoder", 1, min(native, top))
        self.base = base
        self.spec = dataclasses.replace(base.spec, dim=self.dim, truncate_dim=self.dim,
                                        metadata={**base.spec.metadata, "truncated_from": base.spec.fingerprint})

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "base": self.base.config(), "dim": self.dim}

    @classmethod
    def from_config(cls, base: dict[str, Any], dim: int) -> TruncatedEncoder:
        from . import encoder_from_config

        return cls(encoder_from_config(base), dim)

    def count_tokens(self, texts):
        return self.base.count_tokens(texts)

    @property
    def token_limit(self) -> int | None:
        return self.base.token_limit

    def _encode_raw(self, texts: list[str]) -> np.ndarray:
        return self.base._encode_raw(texts)


def truncate(vectors: np.ndarray, full_spec, dim: int) -> np.ndarray:
    """Vectors of ``full_spec`` cut to ``dim`` values the way a truncated encoder cuts them."""
    out = np.array(np.asarray(vectors, dtype=np.float32)[:, :dim], dtype=np.float32, order="C")  # always a copy
    if full_spec.normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out
