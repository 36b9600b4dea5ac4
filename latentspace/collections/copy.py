"""Copy a collection between stores (embedded, memory, Milvus): vectors, documents,
metadata and content hashes as stored, nothing re-embedded.

The destination gets the source's space (SpaceSpec), encoder config, HNSW settings and
metadata. If it exists already it must be in the same space (SpaceMismatchError naming the
differing fields otherwise): then the copy resumes, skipping records stored there with the
same content hash, so an interrupted copy is finished by running it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..core.errors import InvalidInputError, NotFoundError
from ..core.validation import check_int, check_name


@dataclass
class CopyReport:
    """What a copy did: ``copied`` records written, ``unchanged`` already there."""

    source: str
    destination: str
    records: int
    copied: int
    unchanged: int
    created: bool
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def copy_collection(src, name: str, dst, new_name: str | None = None, *, batch_size: int = 1_000,
                    progress: Callable[[int, int], None] | None = None) -> CopyReport:
    """Copy collection ``name`` of store ``src`` into store ``dst`` (as ``new_name``, by
    default the same name); see the module docstring."""
    check_name(name)
    new_name = name if new_name is None else check_name(new_name)
    check_int(batch_size, "batch_size", "copy_collection", 1, 100_000)
    if src is dst and new_name == name:
        raise InvalidInputError(f"Copying {name!r} onto itself: name another destination or another name.")
    t0 = time.perf_counter()
    info, source = src._backend.open_collection(name)
    created = False
    try:
        dinfo, target = dst._backend.open_collection(new_name)
    except NotFoundError:
        dst._backend.create_collection(new_name, info.spec, info.encoder, info.hnsw, info.metadata)
        dinfo, target = dst._backend.open_collection(new_name)
        created = True
    dinfo.spec.require_same(info.spec, f"Copying {name!r} into the existing collection {new_name!r}")
    ids = source.ids()
    total = len(ids)
    copied = unchanged = done = 0
    for start in range(0, total, batch_size):
        rows = source.rows(ids[start: start + batch_size], None, None, 0, True)  # a record deleted meanwhile: gone
        there = target.hashes([r.id for r in rows])
        todo = [r for r in rows if there.get(r.id) != r.content_hash]
        unchanged += len(rows) - len(todo)
        if todo:
            vectors = np.stack([np.asarray(r.vector, dtype=np.float32) for r in todo])
            if vectors.shape[1] != info.spec.dim or not np.isfinite(vectors).all():
                raise InvalidInputError(f"Collection {name!r} holds vectors that are not {info.spec.dim}-dimensional "
                                        "finite numbers; nothing more was copied.")
            target.write([r.id for r in todo], vectors, [r.document for r in todo], [r.metadata for r in todo],
                         [r.content_hash for r in todo], replace=True)
            copied += len(todo)
        done = min(start + batch_size, total)
        if progress:
            progress(min(done, total), total)
    target.flush()
    return CopyReport(f"{src.path}::{name}", f"{dst.path}::{new_name}", total, copied, unchanged, created,
                      round(time.perf_counter() - t0, 2))


__all__ = ["CopyReport", "copy_collection"]
