"""Moving a collection to a new model's space without ever mixing the two (DESIGN §5).

The new space is built as a shadow collection from the stored documents (resumable: an
interrupted migration re-run skips what is done, without embedding it again), the two
spaces' neighbourhoods are compared on a sample of queries, and the name switches to the
new collection in one transaction. The old space stays (retired) until dropped, so
``store.rollback_collection(name)`` undoes the switch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..core.errors import InvalidInputError
from ..core.validation import check_int


@dataclass
class MigrationReport:
    collection: str
    old_fingerprint: str
    new_fingerprint: str
    records: int
    embedded: int
    reused: int
    estimated_tokens: int
    estimated_seconds: float
    seconds: float
    queries: int
    overlap_at_10: float
    rank_correlation: float
    switched: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _spearman(a: list[str], b: list[str]) -> float | None:
    shared = [x for x in a if x in b]
    if len(shared) < 2:
        return None
    ra = np.array([a.index(x) for x in shared], dtype=float)
    rb = np.array([b.index(x) for x in shared], dtype=float)
    ra, rb = np.argsort(np.argsort(ra)), np.argsort(np.argsort(rb))
    if ra.std() == 0 or rb.std() == 0:
        return 1.0
    return float(np.corrcoef(ra, rb)[0, 1])


def migrate(col, new_encoder, *, batch_size: int = 256, queries: int = 100, switch: bool = True, seed: int = 0,
            progress: Callable[[int, int], None] | None = None) -> MigrationReport:
    """Build ``col``'s documents in ``new_encoder``'s space, compare, and switch the name over."""
    check_int(batch_size, "batch_size", "migrate", 1, 100_000)
    check_int(queries, "queries", "migrate", 1, 10_000)
    store, name = col.store, col.name
    old_spec = col.spec
    new_spec = new_encoder.spec
    if new_spec.fingerprint == old_spec.fingerprint:
        raise InvalidInputError(
            f"Collection {name!r} is already in the space of {new_encoder!r} ({new_spec.fingerprint}); nothing to migrate."
        )
    n = len(col)
    missing_docs = n - col._storage.count_with_documents()
    if missing_docs:
        raise InvalidInputError(
            f"Collection {name!r} has {missing_docs} record(s) without a stored document: a new model cannot re-embed "
            "them. Add their documents (upsert) or re-ingest from the source, then migrate."
        )
    shadow_name = f"~{name}~{new_spec.fingerprint}"
    shadow = store.get_or_create_collection(
        shadow_name, encoder=new_encoder, metric=old_spec.metric, hnsw=col.info().hnsw, metadata=col.metadata
    )
    # an up-front estimate: tokens from a sample, time at the rate of the first batch
    sample = col.get(limit=min(200, n))
    toks = new_encoder.count_tokens([r.document for r in sample]) if sample else []
    est_tokens = int(np.mean(toks) * n) if toks else 0
    t0 = time.perf_counter()
    embedded = reused = 0
    est_seconds = 0.0
    for offset in range(0, n, batch_size):
        recs = col.get(limit=batch_size, offset=offset)
        if not recs:
            break
        t_batch = time.perf_counter()
        res = shadow.upsert([r.id for r in recs], documents=[r.document for r in recs],
                            metadatas=[r.metadata for r in recs])
        embedded += res.added + res.replaced
        reused += res.unchanged
        if offset == 0 and res.added + res.replaced:
            est_seconds = (time.perf_counter() - t_batch) / (res.added + res.replaced) * n
        if progress:
            progress(min(offset + batch_size, n), n)
    # records deleted from the source meanwhile must not survive in the new space
    all_recs = col.get()
    source_ids = {r.id for r in all_recs}
    stale = [r.id for r in shadow.get() if r.id not in source_ids]
    if stale:
        shadow.delete(ids=stale)
    # agreement between the two spaces on a seeded sample of the documents as queries
    m = len(all_recs)
    picks = np.random.default_rng(seed).choice(m, min(queries, m), replace=False) if m else []
    overlaps, rhos = [], []
    for i in picks:
        q = all_recs[int(i)].document[:300]
        a = [h.id for h in col.search(q, k=10)]
        b = [h.id for h in shadow.search(q, k=10)]
        overlaps.append(len(set(a) & set(b)) / max(len(a), 1))
        rho = _spearman(a, b)
        if rho is not None:
            rhos.append(rho)
    shadow.flush()
    report = MigrationReport(
        collection=name, old_fingerprint=old_spec.fingerprint, new_fingerprint=new_spec.fingerprint, records=n,
        embedded=embedded, reused=reused, estimated_tokens=est_tokens, estimated_seconds=round(est_seconds, 2),
        seconds=round(time.perf_counter() - t0, 2), queries=len(picks),
        overlap_at_10=float(np.mean(overlaps)) if overlaps else 0.0,
        rank_correlation=float(np.mean(rhos)) if rhos else 0.0, switched=False,
    )
    if switch:
        store._swap(name, shadow_name, f"migrate {old_spec.fingerprint} -> {new_spec.fingerprint}")
        report.switched = True
    return report
