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
    found = _cached(d, enc.spec.fingerprint, n, n_queries)
    if found is not None:
        return found
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
    write_meta(vec_path, enc.spec.fingerprint, n, n_queries)
    return ordered[:n], vecs[:n], ordered[n:], vecs[n:]


def write_meta(vec_path: Path, fingerprint: str, n: int, n_queries: int) -> None:
    meta = {"fingerprint": fingerprint, "python": list(sys.version_info[:2]), "n": n, "n_queries": n_queries}
    atomic_write_bytes(vec_path.with_suffix(".meta.json"), json.dumps(meta).encode())


def _cached(d: Path, fingerprint: str, n: int, n_queries: int):
    """A cached set of at least n base and n_queries query vectors in this space, if any."""
    best = None
    for meta_path in sorted(d.glob("docvecs-*.meta.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if (meta.get("fingerprint") == fingerprint and meta.get("python") == list(sys.version_info[:2])
                and meta.get("n", 0) >= n and meta.get("n_queries", 0) >= n_queries):
            if best is None or meta["n"] < best[1]["n"]:
                best = (meta_path, meta)
    if best is None:
        return None
    stem = best[0].name.removesuffix(".meta.json")
    try:
        texts = json.loads((d / f"{stem}.json").read_text())
        vecs = np.load(d / f"{stem}.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None
    m, mq = best[1]["n"], best[1]["n_queries"]
    if vecs.shape[0] != m + mq or len(texts) != m + mq:
        return None
    return texts[:n], vecs[:n], texts[m : m + n_queries], vecs[m : m + n_queries]
