"""Real MiniLM vectors of docstring paragraphs, computed once and cached outside the repo.

Tests and benchmarks need thousands of real embeddings; computing them takes minutes, so
they are cached (``.npy`` read with ``allow_pickle=False``) under ``$LATENTSPACE_CACHE`` or
``~/.cache/latentspace``, keyed by the space's fingerprint and the sha256 of the exact
texts embedded: a cache entry can only ever be the vectors of those texts in that space.
"""

from __future__ import annotations

import hashlib
import io
import sys

import numpy as np

from ..core.io import atomic_write_bytes, cache_dir
from .stdlib_docs import package_docstring_items


def docstring_paragraphs(n: int, min_chars: int = 40) -> list[str]:
    """``n`` distinct paragraphs from the docstrings of the stdlib and installed packages.

    For benchmarks: the result depends on what is installed. Tests use the committed
    corpus in ``tests/data`` instead."""
    out: list[str] = []
    seen: set[str] = set()
    for item in package_docstring_items(min_chars=min_chars):
        for para in item.text.split("\n\n"):
            para = " ".join(para.split())
            if len(para) < min_chars or para in seen:
                continue
            seen.add(para)
            out.append(para[:1500])
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} docstring paragraphs on this machine; asked for {n}")
    step = len(out) / n
    return [out[int(i * step)] for i in range(n)]


def default_fingerprint() -> str:
    """The default model's space fingerprint, without loading the model."""
    from ..core.space import SpaceSpec
    from ..embed.sentence_transformers import DEFAULT_MODEL, DEFAULT_SHA256

    return SpaceSpec(model=DEFAULT_MODEL, dim=384, weights_sha256=DEFAULT_SHA256, pooling="mean").fingerprint


def texts_sha256(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()


def embed_cached(texts: list[str], encoder=None, *, progress: bool = False) -> np.ndarray:
    """Document vectors of ``texts`` (the default encoder's unless one is given), from the
    cache when this exact list was embedded in this space before; the model is loaded only
    when it was not."""
    fingerprint = encoder.spec.fingerprint if encoder is not None else default_fingerprint()
    path = cache_dir() / f"vecs-{fingerprint}-{texts_sha256(texts)[:24]}.npy"
    try:
        vecs = np.load(path, allow_pickle=False)
        if vecs.shape[0] == len(texts) and vecs.dtype == np.float32:
            return vecs
    except (OSError, ValueError):
        pass
    if encoder is None:
        from ..embed import default_encoder

        encoder = default_encoder()
    chunks = []
    step = 2048
    for start in range(0, len(texts), step):
        chunks.append(encoder.encode_documents(texts[start : start + step]))
        if progress:
            print(f"  embedded {min(start + step, len(texts)):,}/{len(texts):,}", file=sys.stderr, flush=True)
    vecs = np.concatenate(chunks) if chunks else np.zeros((0, encoder.spec.dim), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, vecs, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
    return vecs


def real_vectors(n: int, n_queries: int = 1000, encoder=None, progress: bool = False):
    """(texts, vectors, query_texts, query_vectors): ``n`` base and ``n_queries`` held-out
    paragraphs of installed docstrings (for benchmarks)."""
    texts = docstring_paragraphs(n + n_queries)
    # every (n / n_queries)-th paragraph is a held-out query, the rest is the base set
    q_idx = set(np.linspace(0, len(texts) - 1, n_queries).astype(int).tolist())
    base = [t for i, t in enumerate(texts) if i not in q_idx]
    queries = [t for i, t in enumerate(texts) if i in q_idx]
    ordered = base[:n] + queries
    vecs = embed_cached(ordered, encoder, progress=progress)
    return ordered[:n], vecs[:n], ordered[n:], vecs[n:]
