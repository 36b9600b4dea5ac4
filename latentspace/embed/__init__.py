"""Encoders: content in, float32 vectors of one SpaceSpec out.

Heavy libraries (torch, transformers, sentence-transformers, httpx) are imported only
when an encoder is built, so ``import latentspace`` stays fast.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import InvalidInputError
from .base import Encoder


def default_encoder(**options: Any):
    from .sentence_transformers import default_encoder as _default

    return _default(**options)


def _registry() -> dict[str, Any]:
    from .clip import CLIPEncoder
    from .openai import OpenAICompatibleEncoder
    from .sentence_transformers import SentenceTransformerEncoder
    from .transformers import TransformersEncoder
    from .truncated import TruncatedEncoder

    classes = (SentenceTransformerEncoder, TransformersEncoder, OpenAICompatibleEncoder, TruncatedEncoder, CLIPEncoder)
    return {cls.kind: cls for cls in classes}


def encoder_from_config(config: dict[str, Any]) -> Encoder:
    """Rebuild an encoder from :meth:`Encoder.config` output (as stored with a collection)."""
    from .sentence_transformers import DEFAULT_MODEL

    options = dict(config)
    kind = options.pop("kind", None)
    registry = _registry()
    if kind not in registry:
        raise InvalidInputError(f"Unknown encoder kind {kind!r}. Known: {sorted(registry)}.")
    if kind == "sentence-transformers" and options.get("model") == DEFAULT_MODEL:
        options.pop("model")
        return default_encoder(**options)
    if kind == "truncated":
        return registry[kind].from_config(**options)
    return registry[kind](**options)


def query_encoder_from_config(config: dict[str, Any]) -> Encoder:
    """The encoder of ``config`` set up to embed a few queries in a fresh process: a
    sentence-transformers model runs on ONNX Runtime (the same space, loaded in ~0.5 s
    instead of ~10; exported and checked on first use), any other as configured. Falls
    back to the configured runtime when the ONNX copy cannot be made."""
    from ..core.errors import BackendUnavailableError, ModelLoadError

    fast = _with_onnx(config)
    if fast != config:
        try:
            return encoder_from_config(fast)
        except (BackendUnavailableError, ModelLoadError):
            pass
    return encoder_from_config(config)


def _with_onnx(config: dict[str, Any]) -> dict[str, Any]:
    kind = config.get("kind")
    if kind == "sentence-transformers" and config.get("precision", "auto") != "bf16":
        return {**config, "runtime": "onnx"}
    if kind == "truncated" and isinstance(config.get("base"), dict):
        return {**config, "base": _with_onnx(config["base"])}
    return config


__all__ = ["Encoder", "default_encoder", "encoder_from_config", "query_encoder_from_config"]
