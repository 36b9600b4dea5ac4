"""Embedding on a Ray cluster: Ray Data reads the files and parses them into records (tasks),
an actor pool chunks and embeds them (one encoder per actor), and the driver writes to the
store in batches (one writer).

``ingest_files_on_ray(collection, path)`` (what ``latentspace ingest ... --engine ray``
runs) and ``ingest(collection, items, engine="ray")`` for records already in memory.
The actors build the collection's encoder from its stored config; every output batch
carries the fingerprint of the space its vectors were made in and the actor that made
them. The driver writes nothing until every actor of the pool has reported the
collection's fingerprint (or the stream ended), and stops the job with a
SpaceMismatchError at the first batch from another space: a worker with another model,
other weights or other settings never writes a vector. Records already stored with the
same content hash are not embedded again (the stored hashes go to the actors once, as
one object), so re-running resumes an interrupted job. Files are parsed exactly as the
local engine parses them (``core.records``, ``ingest.items_of_rows``) and chunked with the
collection's own tokenizer, so both engines store the same records under the same hashes.

Resources: actors ask for fractional CPUs (whole-CPU actors on a 2-CPU machine hung for
minutes, DESIGN §12) and one GPU each where the cluster has GPUs; the encoder's batch size
follows the device (``pick_batch``). ``pip install 'latentspace[ray]'``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .core.errors import (BackendUnavailableError, InvalidInputError, LatentSpaceError, NotFoundError,
                          SpaceMismatchError, TruncationWarning)
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
    """One actor: the collection's encoder, built once from its config. Takes records
    (id, text, metadata as JSON), chunks them when asked, leaves out chunks stored with the
    same content hash, and embeds the rest."""

    def __init__(self, config: dict, fingerprint: str, threads: int | None, chunk: tuple[int, int] | None = None,
                 stored=None):
        import ray

        if threads:
            import torch

            torch.set_num_threads(threads)
        from .embed import encoder_from_config

        self.encoder = encoder_from_config(config)
        self.fingerprint = self.encoder.spec.fingerprint
        self.expected = fingerprint
        self.actor = ray.get_runtime_context().get_actor_id() or "driver"
        self.chunk = chunk
        self.stored = (ray.get(stored) if isinstance(stored, ray.ObjectRef) else stored) or {}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = [str(e) for e in batch["error"] if e]
        try:
            if errors:
                raise _Failed(errors[0])
            return self._embed(batch)
        except _Failed as failed:
            error = failed.args[0]
        except LatentSpaceError as exc:
            error = _error(exc)
        return {"id": np.array([""], dtype=object), "text": np.array([""], dtype=object),
                "meta": np.array(["{}"], dtype=object), "vector": np.zeros((1, self.encoder.spec.dim), np.float32),
                "fresh": np.zeros(1, bool), "truncated": np.zeros(1, bool),
                "fingerprint": np.array([self.fingerprint], dtype=object), "actor": np.array([self.actor], dtype=object),
                "error": np.array([error], dtype=object)}

    def _embed(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .collections.collection import content_hash
        from .ingest import Item, chunk_items

        enc = self.encoder
        items = [Item(str(i), str(t), json.loads(str(m))) for i, t, m in zip(batch["id"], batch["text"], batch["meta"])]
        if self.chunk:
            items = list(chunk_items(items, *self.chunk, count_tokens=enc.count_tokens, max_tokens=enc.token_limit))
        items = [it for it in items if (it.text or "").strip()]
        n = len(items)
        if self.stored:
            fresh = np.array([self.stored.get(it.id) != content_hash(it.text, it.metadata, None) for it in items], bool)
        else:  # nothing stored to compare with (records sent already filtered): no hashing here
            fresh = np.ones(n, bool)
        truncated = np.zeros(n, bool)
        dim = enc.spec.dim
        vectors = np.zeros((n, dim), dtype=np.float32)
        todo = np.flatnonzero(fresh)
        if len(todo) and self.fingerprint == self.expected:  # another space: nothing embedded, the driver stops
            texts = [items[i].text for i in todo]
            limit = enc.token_limit
            if limit:
                long = [j for j, t in enumerate(texts) if len(t) > limit // 2]
                if long:
                    counts = enc.count_tokens([texts[j] for j in long])
                    truncated[todo[[j for j, c in zip(long, counts) if c > limit]]] = True
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TruncationWarning)
                vectors[todo] = np.asarray(enc.encode_documents(texts), np.float32)
        return {"id": np.array([it.id for it in items], dtype=object),
                "text": np.array([it.text for it in items], dtype=object),
                "meta": np.array([json.dumps(it.metadata) for it in items], dtype=object),
                "vector": vectors, "fresh": fresh, "truncated": truncated,
                "fingerprint": np.array([self.fingerprint] * n, dtype=object),
                "actor": np.array([self.actor] * n, dtype=object), "error": np.array([""] * n, dtype=object)}


class _Failed(Exception):
    """An error row passed on by the actor."""


def _parse_file(row: dict, base: str | None, options: dict) -> list[dict]:
    """One file read by Ray Data -> its records, parsed as the local engine parses them. A file
    that cannot be read becomes one error row (Ray's wrappers lose the exception's type): the
    driver raises it, typed, and nothing of that file is written."""
    from .core.records import rows_from_bytes
    from .ingest import items_of_rows

    path, data = str(row["path"]), bytes(row["bytes"])
    try:
        if base is not None:  # a folder of text files: one record per file, id = its path in the folder
            rel = Path(path).relative_to(base).as_posix()
            return [{"id": rel, "text": data.decode("utf-8", errors="replace"), "meta": json.dumps({"source": rel}),
                     "error": ""}]
        return [{"id": it.id, "text": it.text, "meta": _json(it.metadata, path, it.id), "error": ""}
                for it in items_of_rows(rows_from_bytes(data, path), path, **options) if it.text is not None]
    except LatentSpaceError as exc:
        return [{"id": "", "text": "", "meta": "{}", "error": _error(exc)}]
    except UnicodeDecodeError as exc:
        return [{"id": "", "text": "", "meta": "{}", "error": _error(InvalidInputError(
            f"{path} is not UTF-8 text ({exc})."))}]


def _error(exc: Exception) -> str:
    return json.dumps([type(exc).__name__, str(exc)])


def _raise(error: str):
    from .core import errors

    name, message = json.loads(error)
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, LatentSpaceError)):
        cls = LatentSpaceError
    raise cls(message)


def _json(meta: dict, path: str, rid: str) -> str:
    try:
        return json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{path}: record {rid!r} has metadata that is not JSON ({exc}).") from None


def _sources(path) -> tuple[list[str], str | None]:
    """The files Ray Data reads, and the folder text files' ids are relative to (None: data files)."""
    from .core.records import SUFFIXES
    from .ingest import TEXT_SUFFIXES

    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    if not paths:
        raise InvalidInputError("ingest: no files given.")
    for p in paths:
        if not p.exists():
            raise NotFoundError(f"No such file or folder: {p}")
    if len(paths) == 1 and paths[0].is_dir():
        base = paths[0].resolve()
        files = sorted(str(f) for f in base.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise InvalidInputError(f"Folder {paths[0]} has no {'/'.join(TEXT_SUFFIXES)} files.")
        return files, str(base)
    for p in paths:
        if p.is_dir() or p.suffix.lower() not in SUFFIXES:
            raise InvalidInputError(f"Cannot read {p.name} on Ray: give one folder of text files, or data files "
                                    f"({', '.join(SUFFIXES)}).")
    return [str(p.resolve()) for p in paths], None


def ingest_files_on_ray(collection, path, *, id_field: str | None = "id", text_field: str = "text",
                        metadata_fields: list[str] | None = None, template: str | None = None,
                        chunk_size: int = 1000, chunk_overlap: int = 100, address: str | None = None,
                        workers: int | None = None, batch_size: int = 256,
                        on_batch: Callable[[int], None] | None = None, threads_per_worker: int | None = 1,
                        encoder_config: dict | None = None):
    """Read, chunk, embed and store a file's records on Ray: Ray Data reads ``path`` (a JSONL,
    CSV/TSV or Parquet file, a list of them, or a folder of text files), tasks parse the
    records, the actor pool chunks them with the collection's tokenizer and embeds the chunks
    not stored with the same content hash, the driver writes. Returns an
    :class:`ingest.IngestReport` (the same counts as a local ingest of the same file)."""
    from .ingest import text_template

    check_int(chunk_size, "chunk_size", "ingest", 50, 1_000_000)
    check_int(chunk_overlap, "chunk_overlap", "ingest", 0, chunk_size // 2)
    if template is not None:
        text_template(template)
    files, base = _sources(path)
    options = {"id_field": id_field, "text_field": text_field, "metadata_fields": metadata_fields,
               "template": template}
    storage = collection._storage
    stored = storage.hashes(storage.ids()) if len(collection) else {}

    def dataset(ray):
        ds = ray.data.read_binary_files(files, include_paths=True)
        return ds.flat_map(_parse_file, fn_kwargs={"base": base, "options": options}, num_cpus=0.5)

    return _run(collection, dataset, chunk=(chunk_size, chunk_overlap), stored=stored, address=address,
                workers=workers, batch_size=batch_size, on_batch=on_batch, threads_per_worker=threads_per_worker,
                encoder_config=encoder_config)


def embed_on_ray(collection, items: Sequence[Any], *, address: str | None = None, workers: int | None = None,
                 batch_size: int = 256, on_batch: Callable[[int], None] | None = None,
                 threads_per_worker: int | None = 1, encoder_config: dict | None = None):
    """Embed ``items`` (``ingest.Item``s, already chunked) on Ray and upsert them into
    ``collection``; returns an :class:`ingest.IngestReport`. ``address``: a running cluster
    (``"auto"``, ``ray://...``) or None for a local one; ``workers``: actors in the pool
    (default: one per 2 CPUs, one per GPU). ``encoder_config`` replaces the collection's
    (tests use it to plant a wrong model)."""
    latest: dict[str, Any] = {}
    for it in items:
        if it.vector is not None:
            raise InvalidInputError("--engine ray embeds documents; records with vectors are stored by the local "
                                    "engine.")
        if (it.text or "").strip():
            latest[it.id] = it  # the last of duplicate ids wins
    from .collections.chunks import record_of
    from .collections.collection import content_hash

    stored = collection._storage.hashes(list(latest)) if latest else {}
    # stored unchanged: counted as skipped here, never sent to the cluster
    todo = [it for it in latest.values() if stored.get(it.id) != content_hash(it.text, it.metadata, None)]
    rows = [{"id": it.id, "text": it.text, "meta": _json(it.metadata, "ingest", it.id), "error": ""} for it in todo]
    texts = sum(1 for it in items if (it.text or "").strip())
    if on_batch and texts > len(todo):
        on_batch(texts - len(todo))
    report = _run(collection, lambda ray: ray.data.from_items(rows), chunk=None, stored={}, address=address,
                  workers=workers, batch_size=batch_size, on_batch=on_batch, threads_per_worker=threads_per_worker,
                  encoder_config=encoder_config, empty=not rows)
    report.chunks, report.skipped = texts, report.skipped + texts - len(todo)
    records = {it.id: record_of(it.id, it.metadata) for it in latest.values()}
    report.records = len(set(records.values()))
    report.split = len({r for i, r in records.items() if r != i})
    return report


def _run(collection, dataset, *, chunk, stored, address, workers, batch_size, on_batch, threads_per_worker,
         encoder_config, empty: bool = False):
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
    if empty:
        return report
    import logging

    for name in ("ray.data", "ray"):  # Ray Data's progress lines; the progress bar here is latentspace's
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ordered = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True  # file order: of two records with one id, the later one is kept
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 configure_logging=False)
    writer = _Writer(collection, report, on_batch)
    try:
        resources = ray.cluster_resources()
        gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
        n = workers or (max(1, int(gpus)) if gpus >= 1 else max(1, int(cpus // 2)))
        per_gpu = 1.0 if gpus >= n else (gpus / n if gpus else 0.0)
        per_cpu = max(0.1, min(1.0, (cpus - 1) / n))  # fractional, one CPU left for Ray Data's own tasks
        embed_batch = pick_batch(per_gpu)
        # blocks of at most one encoder batch: a large file read as one block still spreads over the pool
        out = dataset(ray).repartition(target_num_rows_per_block=embed_batch).map_batches(
            _Embedder, fn_constructor_kwargs={"config": config, "fingerprint": collection.spec.fingerprint,
                                              "threads": threads_per_worker, "chunk": chunk,
                                              "stored": ray.put(stored)},
            batch_size=embed_batch, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n), num_cpus=per_cpu, num_gpus=per_gpu or None)
        pending: list[dict[str, np.ndarray]] = []
        reported: set[str] = set()
        for batch in out.iter_batches(batch_size=batch_size, batch_format="numpy"):
            failed = [str(e) for e in batch["error"] if e]
            if failed:
                _raise(failed[0])
            wrong = {str(f) for f in batch["fingerprint"]} - {collection.spec.fingerprint}
            if wrong:
                raise SpaceMismatchError(
                    f"A Ray worker's encoder makes vectors in space {sorted(wrong)[0]}, not the space of "
                    f"collection {collection.name!r} ({collection.spec.describe()} "
                    f"[{collection.spec.fingerprint}]): same model, weights and settings on every worker. "
                    "Nothing from that worker was written.")
            reported |= {str(a) for a in batch["actor"]}
            pending.append(batch)
            if len(reported) < n:
                continue  # not every worker has shown its space yet: write nothing
            for b in pending:
                writer(b)
            pending.clear()
        for b in pending:  # the stream ended before every actor produced a batch: all seen were checked
            writer(b)
    finally:
        ctx.execution_options.preserve_order = ordered
        if started:
            ray.shutdown()
    writer.finish()
    return report


class _Writer:
    """The driver's side: the fresh chunks of each batch written in one call (the later of two
    with one id kept), the counts an IngestReport gives."""

    def __init__(self, collection, report, on_batch):
        self.collection, self.report, self.on_batch = collection, report, on_batch
        self.records: set[str] = set()
        self.split: set[str] = set()

    def __call__(self, batch: dict[str, np.ndarray]) -> None:
        from .collections.chunks import record_of

        report = self.report
        ids = [str(i) for i in batch["id"]]
        metas = [json.loads(str(m)) for m in batch["meta"]]
        for rid, meta in zip(ids, metas):
            record = record_of(rid, meta)
            self.records.add(record)
            if record != rid:
                self.split.add(record)
        report.chunks += len(ids)
        fresh = {ids[i]: i for i in np.flatnonzero(batch["fresh"])}  # the last of duplicate ids wins
        report.skipped += len(ids) - len(fresh)
        report.truncated += int(np.asarray(batch["truncated"], bool)[list(fresh.values())].sum()) if fresh else 0
        if fresh:
            rows = list(fresh.values())
            # vectors made by the collection's own encoder (checked): hashed on content, as a local ingest hashes them
            res = self.collection._write([ids[i] for i in rows], [str(batch["text"][i]) for i in rows],
                                         [metas[i] for i in rows], np.asarray(batch["vector"], np.float32)[rows],
                                         self.collection.spec, replace=True, derived=True)
            report.added += res.added
            report.replaced += res.replaced
            report.skipped += res.unchanged
        if self.on_batch:
            self.on_batch(len(ids))

    def finish(self) -> None:
        self.report.records = len(self.records)
        self.report.split = len(self.split)


__all__ = ["embed_on_ray", "ingest_files_on_ray", "pick_batch"]
