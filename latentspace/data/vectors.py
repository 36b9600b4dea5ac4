"""Real MiniLM vectors of docstring paragraphs, computed once and cached outside the repo.

Tests and benchmarks need tens of thousands of real embeddings; computing them takes
minutes, so they are cached (``.npy`` read with ``allow_pickle=False`` plus a JSON list of
texts) under ``$LATENTSPACE_CACHE`` or ``~/.cache/latentspace``, keyed by the encoder's
space fingerprint, the Python version and the count.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..core.io import atomic_write_bytes
from .stdlib_docs import package_docstring_items


def cache_dir() -> Path:
    return Path(os.environ.get("LATENTSPACE_CACHE", Path.home() / ".cache" / "latentspace"))


def docstring_paragraphs(n: int, min_chars: int = 40) -> list[str]:
    """``n`` distinct paragraphs from the docstrings of the stdlib and installed packages."""
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


def real_vectors(n: int, n_queries: int = 1000, encoder=None, progress: bool = False):
    """(texts, vectors, query_texts, query_vectors): ``n`` base and ``n_queries`` held-out paragraphs."""
    from ..embed import default_encoder

    enc = encoder or default_encoder()
    key = hashlib.sha256(
        f"{enc.spec.fingerprint}|{sys.version_info[:2]}|{n}|{n_queries}|v1".encode()
    ).hexdigest()[:16]
    d = cache_dir()
    vec_path, text_path = d / f"docvecs-{key}.npy", d / f"docvecs-{key}.json"
    if vec_path.exists() and text_path.exists():
        try:
            texts = json.loads(text_path.read_text())
            vecs = np.load(vec_path, allow_pickle=False)
            if vecs.shape == (n + n_queries, enc.spec.dim) and len(texts) == n + n_queries:
                return texts[:n], vecs[:n], texts[n:], vecs[n:]
        except (OSError, ValueError):
            pass
    texts = docstring_paragraphs(n + n_queries)
    # every (n / n_queries)-th paragraph is a held-out query, the rest is the base set
    q_idx = set(np.linspace(0, len(texts) - 1, n_queries).astype(int).tolist())
    base = [t for i, t in enumerate(texts) if i not in q_idx]
    queries = [t for i, t in enumerate(texts) if i in q_idx]
    ordered = base[:n] + queries
    chunks = []
    step = 2048
    for start in range(0, len(ordered), step):
        chunks.append(enc.encode_documents(ordered[start : start + step]))
        if progress:
            print(f"  embedded {min(start + step, len(ordered)):,}/{len(ordered):,}", file=sys.stderr, flush=True)
    vecs = np.concatenate(chunks)
    d.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    np.save(buf, vecs, allow_pickle=False)
    atomic_write_bytes(vec_path, buf.getvalue())
    atomic_write_bytes(text_path, json.dumps(ordered).encode())
    return ordered[:n], vecs[:n], ordered[n:], vecs[n:]
