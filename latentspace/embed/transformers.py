"""Any transformers ``AutoModel`` as an encoder, with mean, CLS or last-token pooling."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.errors import ModelLoadError
from ..core.space import SpaceSpec
from ..core.validation import check_choice, check_int
from . import _loading
from .base import Encoder
from .precision import autocast_context

Pooling = Literal["mean", "cls", "last"]


class TransformersEncoder(Encoder):
    kind = "transformers"

    def __init__(
        self,
        model: str,
        *,
        pooling: Pooling = "mean",
        normalize: bool = True,
        truncate_dim: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        device: str | None = None,
        batch_size: int = 32,
        max_length: int = 512,
        revision: str | None = None,
        trust_remote_code: bool = False,
        precision: Literal["fp32", "bf16"] = "fp32",
    ):
        check_choice(pooling, "pooling", "TransformersEncoder", ("mean", "cls", "last"))
        check_choice(precision, "precision", "TransformersEncoder", ("fp32", "bf16"))
        self.batch_size = check_int(batch_size, "batch_size", "TransformersEncoder", 1, 4096)
        self.max_length = check_int(max_length, "max_length", "TransformersEncoder", 1, 1 << 16)
        self.pooling = pooling
        self.device = _loading.pick_device(device)
        self._precision = precision
        self._options = dict(
            model=str(model), pooling=pooling, normalize=normalize, truncate_dim=truncate_dim,
            query_prefix=query_prefix, document_prefix=document_prefix, batch_size=batch_size,
            max_length=max_length, revision=revision, precision=precision,
        )
        tf = _loading.require("transformers", "embed")
        local = _loading.is_local(model)
        source, weights_sha = _loading.locate(model)
        try:
            with _loading.quiet_loading():
                self.tokenizer = tf.AutoTokenizer.from_pretrained(source, revision=revision,
                                                                  trust_remote_code=trust_remote_code)
                self.model = tf.AutoModel.from_pretrained(
                    source, revision=revision, trust_remote_code=trust_remote_code, use_safetensors=True
                )
        except Exception as exc:
            raise ModelLoadError(f"Could not load transformers model {model!r}: {exc}") from exc
        self.model.eval().to(self.device)
        # never past what the model has positions for (a longer input crashes its embeddings)
        limits = [getattr(self.model.config, "max_position_embeddings", None),
                  getattr(self.tokenizer, "model_max_length", None)]
        self.max_length = min([self.max_length, *(int(x) for x in limits if isinstance(x, int) and 0 < x < 1 << 20)])
        if pooling == "last" and self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if not local:
            weights_sha = _loading.hub_weights_sha256(model, revision)
        native_dim = int(self.model.config.hidden_size)
        if truncate_dim is not None:
            check_int(truncate_dim, "truncate_dim", "TransformersEncoder", 1, native_dim)
        self.spec = SpaceSpec(
            model=Path(model).name if local else str(model),
            dim=truncate_dim or native_dim,
            normalize=normalize,
            weights_sha256=weights_sha,
            revision=revision if weights_sha is None else None,
            pooling=pooling,
            query_prefix=query_prefix,
            document_prefix=document_prefix,
            truncate_dim=truncate_dim,
            modality="text",
            metadata={"encoder": self.kind, "compute_precision": precision, "max_length": self.max_length,
                      "native_dim": native_dim},
        )

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._options}

    @property
    def token_limit(self) -> int | None:
        return self.max_length

    def count_tokens(self, texts):
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]]

    def _encode_raw(self, texts: list[str]) -> np.ndarray:
        import torch

        out = []
        # sort by length so each batch pads little; restore order at the end
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            with torch.inference_mode(), autocast_context(self._precision, self.device):
                hidden = self.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            if self.pooling == "mean":
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            elif self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                # last non-padding token, for right or left padding
                if self.tokenizer.padding_side == "left":
                    pooled = hidden[:, -1]
                else:
                    last = batch["attention_mask"].sum(1) - 1
                    pooled = hidden[torch.arange(hidden.shape[0]), last]
            out.append((idx, pooled.cpu().numpy()))
        result = np.empty((len(texts), out[0][1].shape[1]), dtype=np.float32)
        for idx, arr in out:
            result[idx] = arr
        return result
