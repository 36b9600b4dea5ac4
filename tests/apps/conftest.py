"""Real collections for the application tests: docstrings (text) and digits (vectors)."""

from __future__ import annotations

import numpy as np
import pytest

import latentspace as ls

DIGITS_SPACE = ls.SpaceSpec(model="sklearn/load_digits-pixels", dim=64, normalize=False, metric="l2",
                            modality="vector")


def split_of(i: int) -> str:
    return "test" if i % 4 == 0 else "train"


@pytest.fixture
def digits_col(store, digits):
    x, y = digits
    col = store.create_collection("digits", space=DIGITS_SPACE)
    col.add(ids=[f"d{i}" for i in range(len(x))], vectors=x,
            metadatas=[{"label": int(v), "split": split_of(i)} for i, v in enumerate(y)])
    return col


@pytest.fixture(scope="module")
def docs_col(real_docs, default_enc, tmp_path_factory):
    """The 8,420 real docstring paragraphs of the test corpus in a collection with the default encoder."""
    texts, vecs, _, _ = real_docs
    st = ls.open_store(tmp_path_factory.mktemp("apps-docs") / "s")
    col = st.create_collection("docs", encoder=default_enc)
    col.add([f"p{i}" for i in range(len(texts))], documents=texts, vectors=vecs, space=default_enc.spec)
    yield col
    st.close()


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
