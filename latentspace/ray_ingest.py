"""Embedding on a Ray cluster: Ray Data streams the records through an actor pool (one
encoder per actor), the driver writes to the store in batches (one writer).

``ingest(collection, items, engine="ray")`` and ``latentspace ingest ... --engine ray``.
The actors build the collection's encoder from its stored config; every output batch
carries the fingerprint of the space its vectors were made in and the actor that made
them. The driver writes nothing until every actor of the pool has reported the
collection's fingerprint (or the stream ended), and stops the job with a
SpaceMismatchError at the first batch from another space: a worker with another model,
other weights or other settings never writes a vector. Records already stored with the
same content hash are skipped before anything is sent to the cluster, so re-running
resumes an interrupted job.

Resources: actors ask for fractional CPUs (whole-CPU actors on a 2-CPU machine hung for
minutes, DESIGN §12) and one GPU each where the cluster has GPUs; the encoder's batch size
follows the device (``pick_batch``). ``pip install 'latentspace[ray]'``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .core.errors import BackendUnavailableError, InvalidInputError, SpaceMismatchError, TruncationWarning
from .core.validation import check_int

CPU_BATCH, GPU_BATCH = 64, 512


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise BackendUnavailableError("Embedding on Ray needs Ray Data: pip install 'latentspace[ray]'") from None
    return ray


def pick_batch(num_gpus: float) -> int:
    """Texts per encoder call: larger on a GPU, where a call's fixed cost is high."""
    return GPU_BATCH if num_gpus > 0 else CPU_BATCH


class _Embedder:
    """One actor: the collection's encoder, built once from its config."""

    def __init__(self, config: dict, fingerprint: str, threads: int | None):
        import ray

        if threads:
            import torch

            torch.set_num_threads(threads)
        from .embed import encoder_from_config

        self.encoder = encoder_from_config(config)
        self.fingerprint = self.encoder.spec.fingerprint
        self.expected = fingerprint
        self.actor = ray.get_runtime_context().get_actor_id() or "driver"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        if self.fingerprint != self.expected:  # nothing embedded: the driver stops the job on this batch
            vectors = np.zeros((n, 1), dtype=np.float32)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TruncationWarning)
                vectors = np.asarray(self.encoder.encode_documents([str(t) for t in batch["text"]]), np.float32)
        return {"id": batch["id"], "vector": vectors, "fingerprint": np.array([self.fingerprint] * n),
                "actor": np.array([self.actor] * n)}


def embed_on_ray(collection, items: Sequence[Any], *, address: str | None = None, workers: int | None = None,
                 batch_size: int = 256, on_batch: Callable[[int], None] | None = None,
                 threads_per_worker: int | None = 1, encoder_config: dict | None = None):
    """Embed ``items`` (``ingest.Item``s) on Ray and upsert them into ``collection``; returns
    an :class:`ingest.IngestReport`. ``address``: a running cluster (``"auto"``, ``ray://...``)
    or None for a local one; ``workers``: actors in the pool (default: one per 2 CPUs, one per
    GPU). ``encoder_config`` replaces the collection's (tests use it to plant a wrong model)."""
    from .collections.chunks import record_of
    from .collections.collection import content_hash
    from .ingest import IngestReport

    ray = _ray()
    check_int(batch_size, "batch_size", "ingest", 1, 100_000)
    if workers is not None:
        check_int(workers, "workers", "ingest", 1, 10_000)
    config = encoder_config or collection.info().encoder
    if config is None:
        raise InvalidInputError(f"Collection {collection.name!r} has no encoder to run on the workers: --engine ray "
                                "embeds documents; store precomputed vectors with the local engine.")
    report = IngestReport()
    latest: dict[str, Any] = {}
    for it in items:
        if it.vector is not None:
            raise InvalidInputError("--engine ray embeds documents; records with vectors are stored by the local "
                                    "engine.")
        if not (it.text or "").strip():
            continue
        report.chunks += 1
        latest[it.id] = it
    records = {record_of(it.id, it.metadata) for it in latest.values()}
    report.records = len(records)
    report.split = sum(1 for it in latest.values() if record_of(it.id, it.metadata) != it.id)
    report.skipped = report.chunks - len(latest)
    todo = list(latest.values())
    stored = collection._storage.hashes([it.id for it in todo])
    hashes = {it.id: content_hash(it.text, it.metadata, None) for it in todo}
    unchanged = [it for it in todo if stored.get(it.id) == hashes[it.id]]
    report.skipped += len(unchanged)
    todo = [it for it in todo if stored.get(it.id) != hashes[it.id]]
    if on_batch and unchanged:
        on_batch(len(unchanged))
    if not todo:
        return report
    import logging

    for name in ("ray.data", "ray"):  # Ray Data's progress lines; the progress bar here is latentspace's
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 configure_logging=False)
    try:
        resources = ray.cluster_resources()
        gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
        n = workers or (max(1, int(gpus)) if gpus >= 1 else max(1, int(cpus // 2)))
        per_gpu = 1.0 if gpus >= n else (gpus / n if gpus else 0.0)
        per_cpu = max(0.1, min(1.0, (cpus - 1) / n))  # fractional, one CPU left for Ray Data's own tasks
        ds = ray.data.from_items([{"id": it.id, "text": it.text} for it in todo])
        out = ds.map_batches(
            _Embedder, fn_constructor_kwargs={"config": config, "fingerprint": collection.spec.fingerprint,
                                              "threads": threads_per_worker},
            batch_size=pick_batch(per_gpu), batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n), num_cpus=per_cpu, num_gpus=per_gpu or None)
        pending: list[dict[str, np.ndarray]] = []
        reported: set[str] = set()
        for batch in out.iter_batches(batch_size=batch_size, batch_format="numpy"):
            wrong = {str(f) for f in batch["fingerprint"]} - {collection.spec.fingerprint}
            if wrong:
                raise SpaceMismatchError(
                    f"A Ray worker's encoder makes vectors in space {sorted(wrong)[0]}, not the space of collection "
                    f"{collection.name!r} ({collection.spec.describe()} [{collection.spec.fingerprint}]): same model, "
                    "weights and settings on every worker. Nothing from that worker was written.")
            reported |= {str(a) for a in batch["actor"]}
            pending.append(batch)
            if len(reported) < n:
                continue  # not every worker has shown its space yet: write nothing
            for b in pending:
                _write(collection, b, latest, report, on_batch)
            pending.clear()
        for b in pending:  # the stream ended before every actor produced a batch: all seen were checked
            _write(collection, b, latest, report, on_batch)
    finally:
        if started:
            ray.shutdown()
    return report


def _write(collection, batch, latest, report, on_batch) -> None:
    ids = [str(i) for i in batch["id"]]
    # vectors made by the collection's own encoder (checked): hashed on content, as a local ingest hashes them
    res = collection._write(ids, [latest[i].text for i in ids], [latest[i].metadata for i in ids],
                            np.asarray(batch["vector"], dtype=np.float32), collection.spec, replace=True, derived=True)
    report.added += res.added
    report.replaced += res.replaced
    report.skipped += res.unchanged
    if on_batch:
        on_batch(len(ids))


__all__ = ["embed_on_ray", "pick_batch"]
