"""Images in a collection: add them through a CLIP encoder, search them with text or an image.

The collection's encoder must embed images (``encode_images``, as :class:`CLIPEncoder`
does); texts and images then share its space, so one index answers both kinds of query.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..collections.collection import WriteResult
from ..storage.hits import Hit
from ..core.errors import InvalidInputError
from ..core.validation import check_ids


def _image_encoder(col):
    if col.spec.modality not in ("image", "text+image"):  # decided by the stored space: no model loaded
        raise InvalidInputError(
            f"Collection {col.name!r} holds {col.spec.modality} vectors ({col.spec.describe()}): it cannot embed or "
            "search images. Make an image collection with a CLIP encoder: `latentspace collection create STORE NAME "
            "--kind clip` (Python: store.create_collection(name, encoder=ls.CLIPEncoder(...)))."
        )
    enc = col.encoder
    if not hasattr(enc, "encode_images"):
        raise InvalidInputError(
            f"Collection {col.name!r} embeds with {type(enc).__name__}, which cannot embed images. "
            "Create the collection with an image-text encoder, for example encoder=ls.CLIPEncoder(...)."
        )
    return enc


def add_images(col, ids: Sequence[str], images: Sequence[Any], metadatas: Sequence[dict] | None = None) -> WriteResult:
    """Embed ``images`` (paths, PIL images or arrays) and upsert them; a path is kept in ``metadata["path"]``."""
    ids = check_ids(ids, "add_images")
    if isinstance(images, (str, bytes, os.PathLike)) or len(images) != len(ids):
        raise InvalidInputError(f"add_images needs one image per id: {len(ids)} ids, "
                                f"{len(images) if not isinstance(images, (str, bytes, os.PathLike)) else 1} image(s).")
    if metadatas is not None and len(metadatas) != len(ids):
        raise InvalidInputError(f"add_images: {len(metadatas)} metadatas for {len(ids)} ids.")
    enc = _image_encoder(col)
    vectors = enc.encode_images(images)
    metas = []
    for i, img in enumerate(images):
        m = dict(metadatas[i]) if metadatas is not None else {}
        if isinstance(img, (str, os.PathLike)):
            m.setdefault("path", str(Path(img).expanduser().resolve()))
        metas.append(m)
    return col.upsert(ids, None, metas, vectors=vectors, space=enc.spec)


def search_images(col, *, text: str | None = None, image: Any = None, k: int = 10, where: dict | None = None) -> list[Hit]:
    """Search by a text (embedded as a query) or by an image (embedded like the stored ones)."""
    if (text is None) == (image is None):
        raise InvalidInputError("search_images needs exactly one of text= or image=.")
    if text is not None:
        return col.search(text, k=k, where=where)
    enc = _image_encoder(col)
    return col.search(vector=enc.encode_images([image])[0], space=enc.spec, k=k, where=where)
