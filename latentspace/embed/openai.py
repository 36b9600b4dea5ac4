"""An OpenAI-compatible embeddings HTTP API (OpenAI, vLLM, TEI, Ollama, LiteLLM, ...)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import EncodingError, InvalidInputError
from ..core.http import post_json
from ..core.space import SpaceSpec
from ..core.validation import check_int
from .base import Encoder



class OpenAICompatibleEncoder(Encoder):
    """POSTs ``{"model", "input"}`` to ``{base_url}/embeddings`` in batches.

    Retries 429 and 5xx with exponential backoff (honouring ``Retry-After``), and raises
    :class:`EncodingError` on a malformed answer: wrong count, wrong dimension, non-finite
    values. The API key is read from the environment variable ``api_key_env`` at call
    time and never stored. When ``dim`` is not given, one probe request discovers it.
    """

    kind = "openai-compatible"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        dim: int | None = None,
        normalize: bool = True,
        truncate_dim: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        batch_size: int = 64,
        max_retries: int = 5,
        backoff: float = 0.5,
        timeout: float = 60.0,
        revision: str | None = None,
        request_dimensions: bool = False,
    ):
        import httpx

        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InvalidInputError(f"base_url must start with http:// or https://. Got {base_url!r}.")
        if not isinstance(model, str) or not model:
            raise InvalidInputError(f"model must be a non-empty string. Got {model!r}.")
        self.base_url = base_url.rstrip("/")
        self.model_name = model
        self.api_key_env = api_key_env
        self.batch_size = check_int(batch_size, "batch_size", "OpenAICompatibleEncoder", 1, 2048)
        self.max_retries = check_int(max_retries, "max_retries", "OpenAICompatibleEncoder", 0, 20)
        self.backoff = float(backoff)
        self.request_dimensions = request_dimensions
        self._client = httpx.Client(timeout=timeout)
        self._options = dict(
            base_url=self.base_url, model=model, api_key_env=api_key_env, dim=dim, normalize=normalize,
            truncate_dim=truncate_dim, query_prefix=query_prefix, document_prefix=document_prefix,
            batch_size=batch_size, max_retries=max_retries, backoff=backoff, timeout=timeout, revision=revision,
            request_dimensions=request_dimensions,
        )
        native = dim
        if native is None:
            native = int(np.asarray(self._request(["dimension probe"])).shape[1])
            self._options["dim"] = native
        check_int(native, "dim", "OpenAICompatibleEncoder", 1, 65536)
        if truncate_dim is not None:
            check_int(truncate_dim, "truncate_dim", "OpenAICompatibleEncoder", 1, native)
        self._native_dim = native
        self.spec = SpaceSpec(
            model=model,
            dim=truncate_dim or native,
            normalize=normalize,
            revision=revision or f"api:{self.base_url}",
            query_prefix=query_prefix,
            document_prefix=document_prefix,
            truncate_dim=truncate_dim,
            modality="text",
            metadata={"encoder": self.kind, "base_url": self.base_url, "native_dim": native},
        )

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._options}

    def close(self) -> None:
        self._client.close()

    def _request(self, texts: list[str]) -> list[list[float]]:
        body: dict[str, Any] = {"model": self.model_name, "input": texts, "encoding_format": "float"}
        if self.request_dimensions and self._options.get("truncate_dim"):
            body["dimensions"] = self._options["truncate_dim"]
        url = f"{self.base_url}/embeddings"
        payload = post_json(self._client, url, body, api_key_env=self.api_key_env, max_retries=self.max_retries,
                            backoff=self.backoff, error=EncodingError, what="Embeddings API")
        try:
            data = payload["data"]
            items = sorted(data, key=lambda d: d.get("index", 0))
            vectors = [item["embedding"] for item in items]
        except (KeyError, TypeError, AttributeError) as exc:
            raise EncodingError(
                f"Embeddings API at {url} sent a malformed response (expected {{'data': [{{'embedding': [...]}}]}}): {exc!r}"
            ) from None
        if len(vectors) != len(texts):
            raise EncodingError(f"Embeddings API at {url} returned {len(vectors)} vectors for {len(texts)} inputs.")
        lengths = {len(v) if isinstance(v, list) else -1 for v in vectors}
        if len(lengths) != 1 or -1 in lengths:
            raise EncodingError(f"Embeddings API at {url} returned vectors of unequal or invalid lengths {sorted(lengths)}.")
        return vectors

    def _encode_raw(self, texts: list[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            rows.extend(self._request(texts[start : start + self.batch_size]))
        try:
            arr = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise EncodingError(f"Embeddings API returned non-numeric values: {exc}") from None
        expected = self._native_dim if not (self.request_dimensions and self._options.get("truncate_dim")) else self.spec.dim
        if arr.shape[1] != expected:
            raise EncodingError(
                f"Embeddings API returned {arr.shape[1]}-d vectors; this encoder's space is {expected}-d "
                f"({self.model_name}). The server's model may have changed: that is a different space."
            )
        return arr
