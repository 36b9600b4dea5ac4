"""The Encoder interface: content in, float32 vectors of one SpaceSpec out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..core.errors import EncodingError, InvalidInputError
from ..core.space import SpaceSpec
from ..core.validation import check_texts


class Encoder(ABC):
    """Turns content into vectors of one space.

    Subclasses implement :meth:`_encode_raw` (one batch of already-prefixed texts to a
    float array) and set ``self.spec``. The base class checks inputs, adds prefixes,
    applies Matryoshka truncation and normalization, and checks every output: float32,
    shape ``(n, spec.dim)``, finite. Anything else raises :class:`EncodingError`.
    """

    #: registry key under which :func:`encoder_from_config` rebuilds this encoder
    kind: ClassVar[str] = ""
    spec: SpaceSpec

    # -- public ---------------------------------------------------------------------
    def encode_documents(self, items: Sequence[Any]) -> np.ndarray:
        texts = check_texts(items, "documents")
        return self._run([self.spec.document_prefix + t for t in texts])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts, "queries")
        for i, t in enumerate(texts):
            if not t.strip():
                raise InvalidInputError(f"queries[{i}] is empty; a query must contain text.")
        return self._run([self.spec.query_prefix + t for t in texts])

    def config(self) -> dict[str, Any]:
        """JSON-serialisable options that rebuild this encoder (never secrets)."""
        return {"kind": self.kind}

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model sees them (whitespace words where unknown)."""
        return [len(t.split()) for t in texts]

    @property
    def token_limit(self) -> int | None:
        """How many tokens of a text the model reads (None: no known limit)."""
        return None

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many of ``texts`` (as embedded: prefixes included) exceed :attr:`token_limit`."""
        limit = self.token_limit
        if not limit or not texts:
            return 0
        # a token covers at least a character or two; only texts long enough can exceed
        long = [t for t in texts if len(t) > limit // 2]
        return sum(n > limit for n in self.count_tokens(long)) if long else 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.describe()}, fingerprint={self.spec.fingerprint})"

    # -- for subclasses ---------------------------------------------------------------
    @abstractmethod
    def _encode_raw(self, texts: list[str]) -> Any:
        """Encode texts to an (n, native_dim) array, before truncation/normalization."""

    def _run(self, texts: list[str]) -> np.ndarray:
        dim = self.spec.dim
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        raw = self._encode_raw(texts)
        return self._finish(raw, len(texts))

    def _finish(self, raw: Any, n: int) -> np.ndarray:
        try:
            arr = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise EncodingError(f"{type(self).__name__} returned something that is not numeric vectors: {exc}") from None
        if arr.ndim != 2 or arr.shape[0] != n:
            raise EncodingError(
                f"{type(self).__name__} returned an array of shape {arr.shape} for {n} inputs; expected ({n}, dim)."
            )
        spec = self.spec
        if spec.truncate_dim is not None:
            if arr.shape[1] < spec.truncate_dim:
                raise EncodingError(
                    f"{type(self).__name__} returned {arr.shape[1]}-d vectors, fewer than truncate_dim={spec.truncate_dim}."
                )
            arr = arr[:, : spec.truncate_dim]
        if arr.shape[1] != spec.dim:
            raise EncodingError(
                f"{type(self).__name__} returned {arr.shape[1]}-d vectors; its space {spec.describe()} is {spec.dim}-d."
            )
        if not np.isfinite(arr).all():
            bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
            raise EncodingError(
                f"{type(self).__name__} returned non-finite values (NaN or inf) for input(s) {bad[:5].tolist()}; "
                "nothing was stored. Check the model's weights and compute precision."
            )
        if spec.normalize:
            norms = np.linalg.norm(arr, axis=1, keepdims=True)
            if (norms == 0).any():
                bad = np.flatnonzero(norms[:, 0] == 0)
                raise EncodingError(f"{type(self).__name__} returned zero vectors for input(s) {bad[:5].tolist()}.")
            arr = arr / norms
        return np.ascontiguousarray(arr, dtype=np.float32)
