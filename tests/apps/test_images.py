"""Cross-modal search with a tiny CLIP trained here on digits: text finds images, images find images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import latentspace as ls
from latentspace.apps.images import add_images, search_images
from latentspace.data.tiny_clip import caption


@pytest.fixture(scope="module")
def clip_enc(tiny_clip):
    return ls.CLIPEncoder(str(tiny_clip))


@pytest.fixture
def image_col(store, clip_enc, digits):
    x, y = digits
    test = np.flatnonzero(np.arange(len(y)) % 4 == 0)  # held out from the CLIP's training
    col = store.create_collection("digits", encoder=clip_enc)
    add_images(col, [f"img{i}" for i in test], list(x[test].reshape(-1, 8, 8)),
               metadatas=[{"label": int(y[i])} for i in test])
    return col


def test_clip_space_records_both_modalities(clip_enc, tiny_clip):
    spec = clip_enc.spec
    assert spec.modality == "text+image" and spec.dim == 16 and spec.weights_sha256
    t = clip_enc.encode_queries(["a photo of the digit one"])
    i = clip_enc.encode_images([np.zeros((8, 8))])
    assert t.shape == i.shape == (1, 16) and t.dtype == i.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(np.vstack([t, i]), axis=1), 1, atol=1e-5)
    assert ls.encoder_from_config(clip_enc.config()).spec.fingerprint == spec.fingerprint


def test_text_finds_the_images_of_its_digit(image_col):
    precision = []
    for d in range(10):
        hits = search_images(image_col, text=caption(d), k=10)
        precision.append(np.mean([h.metadata["label"] == d for h in hits]))
    assert np.mean(precision) >= 0.7, precision  # chance is 0.1


def test_an_image_finds_itself_and_its_kind(image_col, digits, tmp_path):
    x, y = digits
    img = (x[4].reshape(8, 8) * 255).astype(np.uint8)
    path = tmp_path / "four.png"
    Image.fromarray(img).save(path)
    by_array = search_images(image_col, image=x[4].reshape(8, 8), k=5)
    by_path = search_images(image_col, image=str(path), k=5)
    assert by_array[0].id == "img4" and by_path[0].id == "img4"
    assert sum(h.metadata["label"] == y[4] for h in by_array) >= 3
    add_images(image_col, ["file"], [path])
    assert image_col.get(ids=["file"])[0].metadata["path"] == str(path.resolve())


def test_a_text_only_collection_cannot_take_images(store, tiny_encoder, monkeypatch):
    store.create_collection("t", encoder=tiny_encoder)
    col = store.get_collection("t")  # its encoder is not loaded yet, and must not be: the space decides
    import latentspace.embed as E

    monkeypatch.setattr(E, "encoder_from_config", lambda *a, **kw: pytest.fail("a model was loaded"))
    for call in (lambda: add_images(col, ["a"], [np.zeros((8, 8))]),
                 lambda: search_images(col, image=np.zeros((8, 8)))):
        with pytest.raises(ls.InvalidInputError, match=r"cannot embed or search images.*--kind clip"):
            call()


def test_bad_images(image_col, tmp_path):
    n = len(image_col)
    (tmp_path / "not.png").write_text("hello")
    for bad, match in [(np.full((8, 8), 2.0), r"\[0, 1\]"), (np.full((8, 8), np.nan), "NaN"),
                       (np.zeros((8, 8, 5)), "shape"), (str(tmp_path / "missing.png"), "no image file"),
                       (str(tmp_path / "not.png"), "not a readable image"), ({"a": 1}, "file path")]:
        with pytest.raises((ls.InvalidInputError, ls.NotFoundError), match=match):
            add_images(image_col, ["bad"], [bad])
    with pytest.raises(ls.InvalidInputError, match="one image per id"):
        add_images(image_col, ["a", "b"], [np.zeros((8, 8))])
    with pytest.raises(ls.InvalidInputError, match="exactly one"):
        search_images(image_col, text="one", image=np.zeros((8, 8)))
    assert len(image_col) == n
