"""CLIP: texts and images in one space (``modality="text+image"``).

``encode_queries`` and ``encode_documents`` take texts; ``encode_images`` takes images:
file paths, ``PIL.Image`` objects, or arrays (``(h, w)`` grey or ``(h, w, 3)`` RGB; uint8
0-255, or floats in [0, 1]). All three give vectors of the same space, so a collection
of image vectors can be searched with text and with images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InvalidInputError, ModelLoadError, NotFoundError
from ..core.space import SpaceSpec
from ..core.validation import check_int
from . import _loading
from .base import Encoder

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


def to_pil(item: Any, i: int = 0):
    """One image as an RGB ``PIL.Image`` (see the module docstring for what is accepted)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, (str, os.PathLike)):
        path = Path(item).expanduser()
        if not path.is_file():
            raise NotFoundError(f"images[{i}]: no image file at {path}.")
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise InvalidInputError(f"images[{i}]: {path} is not a readable image: {exc}") from None
    arr = np.asarray(item) if not isinstance(item, (bytes, dict)) else None
    if arr is None or arr.dtype == object or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3)):
        raise InvalidInputError(
            f"images[{i}] must be a file path, a PIL image, or an array of shape (h, w) or (h, w, 3); "
            f"got {type(item).__name__}{' of shape ' + str(arr.shape) if arr is not None else ''}."
        )
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise InvalidInputError(f"images[{i}] contains NaN or inf.")
        if arr.min() < 0 or arr.max() > 1:
            raise InvalidInputError(
                f"images[{i}]: float pixels must lie in [0, 1] (got {arr.min():.3g}..{arr.max():.3g}); "
                "scale them, or pass uint8 0-255."
            )
        arr = (arr * 255).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise InvalidInputError(f"images[{i}]: integer pixels must lie in 0..255.")
        arr = arr.astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(arr).convert("RGB")


class CLIPEncoder(Encoder):
    """A CLIP model (local folder or hub id) from transformers: text and image towers."""

    kind = "clip"

    def __init__(
        self,
        model: str = DEFAULT_CLIP,
        *,
        normalize: bool = True,
        device: str | None = None,
        batch_size: int = 32,
        revision: str | None = None,
        trust_remote_code: bool = False,
        query_prefix: str = "",
        document_prefix: str = "",
    ):
        self.batch_size = check_int(batch_size, "batch_size", "CLIPEncoder", 1, 4096)
        if not isinstance(normalize, bool):
            raise InvalidInputError(f"normalize must be a bool. Got {normalize!r}.")
        self.device = _loading.pick_device(device)
        self._options = dict(model=str(model), normalize=normalize, batch_size=batch_size, revision=revision,
                             query_prefix=query_prefix, document_prefix=document_prefix)
        tf = _loading.require("transformers", "embed")
        local = _loading.is_local(model)
        source, weights_sha = _loading.locate(model)
        try:
            with _loading.quiet_loading():
                self.model = tf.CLIPModel.from_pretrained(source, revision=revision,
                                                          trust_remote_code=trust_remote_code, use_safetensors=True)
                self.tokenizer = tf.AutoTokenizer.from_pretrained(source, revision=revision,
                                                                  trust_remote_code=trust_remote_code)
                # the PIL backend: the default one wants torchvision, which we do not install
                processor_cls = getattr(tf, "CLIPImageProcessorPil", None) or tf.CLIPImageProcessor
                self.image_processor = processor_cls.from_pretrained(source, revision=revision)
        except Exception as exc:
            raise ModelLoadError(f"Could not load CLIP model {model!r}: {exc}") from exc
        self.model.eval().to(self.device)
        if not local:
            weights_sha = _loading.hub_weights_sha256(str(model), revision)
        dim = int(self.model.config.projection_dim)
        self.max_length = int(self.model.config.text_config.max_position_embeddings)
        self.spec = SpaceSpec(
            model=Path(model).name if local else str(model),
            dim=dim,
            normalize=normalize,
            weights_sha256=weights_sha,
            revision=revision if weights_sha is None else None,
            pooling="clip-projection",
            query_prefix=query_prefix,
            document_prefix=document_prefix,
            modality="text+image",
            metadata={"encoder": self.kind, "native_dim": dim},
        )

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._options}

    @property
    def token_limit(self) -> int | None:
        return self.max_length

    def count_tokens(self, texts):
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]]

    @staticmethod
    def _pooled(out):
        return out.pooler_output if hasattr(out, "pooler_output") else out

    def _encode_raw(self, texts: list[str]) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start : start + self.batch_size], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                out.append(self._pooled(self.model.get_text_features(**batch)).float().cpu().numpy())
        return np.concatenate(out)

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        """Images to vectors of this space (the same space as its texts)."""
        import torch

        if isinstance(images, (str, bytes, os.PathLike)) or not isinstance(images, Sequence) and not (
                isinstance(images, np.ndarray) and images.ndim in (3, 4)):
            raise InvalidInputError("encode_images takes a list of images (paths, PIL images or arrays).")
        items = list(images)
        if not items:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        out = []
        for start in range(0, len(items), self.batch_size):
            pil = [to_pil(x, start + j) for j, x in enumerate(items[start : start + self.batch_size])]
            pixels = self.image_processor(images=pil, return_tensors="pt")["pixel_values"].to(self.device)
            with torch.inference_mode():
                out.append(self._pooled(self.model.get_image_features(pixel_values=pixels)).float().cpu().numpy())
        return self._finish(np.concatenate(out), len(items))
