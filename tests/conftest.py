"""Shared fixtures: tiny models built once per session, stores, and a store snapshot helper."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import latentspace as ls

WORDS = (
    "the a of to and in is it for on with as be by this that from or are an at file data return read write open "
    "close list string number value object class function module error type name path line text socket time cat dog "
    "stock market fell rose sharply kitten sat mat python code"
).split()


def pytest_configure(config):
    """torch's thread count is a setting; the suite uses one thread (LATENTSPACE_TEST_THREADS to change):
    measured here, two threads on two cores ran ~8x slower than one whenever another process was busy."""
    import torch

    torch.set_num_threads(int(os.environ.get("LATENTSPACE_TEST_THREADS", "1")))


def build_tiny_bert(folder: Path, seed: int = 0, layers: int = 2) -> Path:
    """A 2-layer BERT with its own WordPiece vocabulary, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars, *("##" + c for c in chars)]
    vocab = list(dict.fromkeys(vocab))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    assert "[UNK]" not in tok.tokenize("the cat sat 42"), "the tiny tokenizer must know its words"
    tok.save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_st(bert: Path, folder: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sentence_transformers import SentenceTransformer, models

        tr = models.Transformer(str(bert))
        pool = models.Pooling(tr.get_embedding_dimension(), "mean")
        SentenceTransformer(modules=[tr, pool, models.Normalize()], device="cpu").save(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_bert_other(tmp_path_factory) -> Path:
    """Same architecture, other weights: another space."""
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", seed=1)


@pytest.fixture(scope="session")
def tiny_st(tiny_bert, tmp_path_factory) -> Path:
    return build_tiny_st(tiny_bert, tmp_path_factory.mktemp("models") / "tiny-st")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_st):
    return ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32")


@pytest.fixture(scope="session")
def default_enc():
    return ls.default_encoder()


@pytest.fixture(scope="session")
def real_docs(default_enc):
    """The committed test corpus (tests/corpus.py): 8,420 real docstring paragraphs with their
    MiniLM vectors, and 500 held-out queries (texts, vectors, query_texts, query_vectors);
    embedded once per machine, then cached on disk by the texts' sha256."""
    from latentspace.data.vectors import embed_cached

    from .corpus import split

    base, queries = split()
    texts = [r["text"] for r in base] + [r["text"] for r in queries]
    vecs = embed_cached(texts, default_enc)
    n = len(base)
    return texts[:n], vecs[:n], texts[n:], vecs[n:]


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 1,797 8x8 digit images as 64-d vectors in [0, 1], with labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(int)



@pytest.fixture
def store(tmp_path):
    s = ls.open_store(tmp_path / "store")
    yield s
    s.close()


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def snapshot(col) -> list[tuple]:
    """Everything a collection holds, for 'nothing changed' checks."""
    recs = col.get(include_vectors=True)
    return sorted((r.id, r.document, repr(sorted(r.metadata.items())), r.vector.tobytes()) for r in recs)


def slow_enabled() -> bool:
    return os.environ.get("LATENTSPACE_SLOW") == "1"


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory, digits):
    """A tiny CLIP trained for a few seconds on the digits of the train split (i % 4 != 0)."""
    from latentspace.data.tiny_clip import build_tiny_clip, train_tiny_clip

    x, y = digits
    train = np.arange(len(y)) % 4 != 0
    folder = build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")
    train_tiny_clip(folder, x[train].reshape(-1, 8, 8), y[train], steps=300)
    return folder
