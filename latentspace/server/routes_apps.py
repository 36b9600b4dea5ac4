"""REST routes beyond records and search: a collection's life (rename, history, rollback),
migration as a background job, the applications and the analysis the explorer draws.

Migration jobs run in a thread of the worker that started them; their state is written to
``jobs/<id>.json`` in an embedded store's folder (so any worker answers ``progress``), and
kept in memory for other stores. Projections are cached per (collection, space, change
sequence, method, seed, sample size): a write moves the sequence, and the next map is new.
"""

# no "from __future__ import annotations": FastAPI reads the routes' annotations at run time

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.errors import InvalidInputError, NotFoundError
from ..core.validation import check_name

#: projections kept per worker (each ~ max_points * 2 floats plus ids)
CACHE_ENTRIES = 16
#: points on a map by default: PCA draws 100,000 (the explorer's WebGL draws them all); UMAP
#: samples 20,000 (seeded UMAP runs on one thread: minutes beyond that)
MAP_POINTS = {"pca": 100_000, "umap": 20_000}


class Jobs:
    """Background jobs (migrations): id -> state, in a folder when there is one."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._mem: dict[str, dict] = {}
        self._lock = threading.Lock()

    def put(self, job: dict) -> None:
        with self._lock:
            self._mem[job["id"]] = dict(job)
            if self.folder is not None:
                self.folder.mkdir(exist_ok=True)
                tmp = self.folder / f".{job['id']}.tmp"
                tmp.write_text(json.dumps(job))
                os.replace(tmp, self.folder / f"{job['id']}.json")

    def get(self, jid: str) -> dict:
        if not (len(jid) == 32 and all(c in "0123456789abcdef" for c in jid)):
            raise NotFoundError(f"No job {jid!r}.")
        if self.folder is not None and (self.folder / f"{jid}.json").exists():
            return json.loads((self.folder / f"{jid}.json").read_text())
        if jid in self._mem:
            return dict(self._mem[jid])
        raise NotFoundError(f"No job {jid!r} on this server.")


def add_app_routes(app, store, caller, allow, settings, errors, collection) -> None:
    from fastapi import Depends
    from pydantic import BaseModel, ConfigDict, Field

    folder = Path(store.path) / "jobs" if isinstance(store.path, Path) else None
    jobs = Jobs(folder)
    projections: dict[tuple, Any] = {}
    proj_lock = threading.Lock()

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class RenameBody(Strict):
        new_name: str

    class UpdateBody(Strict):
        ids: list[str]
        documents: list[str | None] | None = None
        metadatas: list[dict] | None = None
        merge: bool = True

    class CountBody(Strict):
        where: dict | None = None

    class MigrateBody(Strict):
        encoder: dict = Field(description="The new model's encoder config (Encoder.config()).")
        switch: bool = Field(False, description="Switch the name over when done (else: POST .../migration/switch).")
        batch_size: int = Field(256, ge=1, le=10_000)
        queries: int = Field(100, ge=1, le=10_000)

    class SwitchBody(Strict):
        fingerprint: str = Field(pattern="^[0-9a-f]{8,64}$")

    class RecommendBody(Strict):
        positive: list[str]
        negative: list[str] = []
        k: int = Field(10, ge=1, le=1000)
        where: dict | None = None
        strategy: Literal["average", "best_score"] = "average"

    class ContextBody(Strict):
        question: str
        token_budget: int = Field(1000, ge=1, le=100_000)
        k: int = Field(8, ge=1, le=100)
        mode: Literal["vector", "keyword", "hybrid"] = "hybrid"
        mmr: bool = True
        where: dict | None = None

    class ClusterBody(Strict):
        method: Literal["kmeans", "hdbscan"] = "kmeans"
        n_clusters: int = Field(8, ge=2, le=1000)
        min_cluster_size: int = Field(10, ge=2, le=100_000)
        where: dict | None = None
        seed: int = Field(0, ge=0, le=2**31 - 1)

    class DuplicatesBody(Strict):
        threshold: float = Field(0.95, gt=0, le=1)
        where: dict | None = None

    class OutliersBody(Strict):
        method: Literal["knn", "lof"] = "knn"
        k: int = Field(10, ge=1, le=1000)
        top: int = Field(20, ge=1, le=10_000)
        where: dict | None = None

    class ClassifyBody(Strict):
        label_key: str = "label"
        queries: list[str] | None = None
        vectors: list[list[float]] | None = None
        space: dict | None = None
        k: int = Field(10, ge=1, le=1000)

    class DiagnoseBody(Strict):
        sample: int = Field(5000, ge=10, le=100_000)
        seed: int = Field(0, ge=0, le=2**31 - 1)

    class ProjectBody(Strict):
        method: Literal["pca", "umap"] = "pca"
        seed: int = Field(0, ge=0, le=2**31 - 1)
        max_points: int | None = Field(None, ge=3, le=200_000, description=f"default: {MAP_POINTS}")
        color_by: str | None = None
        documents: bool = Field(False, description="each point's document (its first 300 characters)")

    class PlaceBody(ProjectBody):
        query: str | None = None
        id: str | None = None
        k: int = Field(10, ge=1, le=100)

    class CompareBody(Strict):
        other: str
        k: int = Field(10, ge=1, le=100)
        max_points: int = Field(5000, ge=3, le=20_000)
        seed: int = Field(0, ge=0, le=2**31 - 1)

    # -- a collection's life ------------------------------------------------------------------------
    @app.post("/v1/collections/{name}/rename", tags=["collections"], responses=errors)
    def rename(name: str, body: RenameBody, entry=Depends(caller)) -> dict:
        allow(entry, "admin", check_name(name))
        allow(entry, "admin", check_name(body.new_name))
        store.rename_collection(name, body.new_name)
        return {"renamed": name, "to": body.new_name}

    @app.get("/v1/collections/{name}/history", tags=["migration"], responses=errors)
    def history(name: str, entry=Depends(caller)) -> list[dict]:
        allow(entry, "read", check_name(name))
        collection(name)
        return store.collection_history(name)

    @app.get("/v1/collections/{name}/spaces", tags=["migration"], responses=errors)
    def spaces(name: str, entry=Depends(caller)) -> list[dict]:
        """The collection's current space and the earlier ones it keeps (each readable, and
        comparable, under its store name ``~name~retired~...``), newest first."""
        allow(entry, "read", check_name(name))
        current = collection(name).info().to_dict()
        return [{**current, "current": True}] + [{**i.to_dict(), "current": False}
                                                 for i in reversed(store.retired_spaces(name))]

    @app.post("/v1/collections/{name}/rollback", tags=["migration"], responses=errors)
    def rollback(name: str, entry=Depends(caller)) -> dict:
        allow(entry, "admin", check_name(name))
        store.rollback_collection(name)
        return collection(name).info().to_dict()

    @app.post("/v1/collections/{name}/count", tags=["records"], responses=errors)
    def count(name: str, body: CountBody, entry=Depends(caller)) -> dict:
        allow(entry, "read", name)
        return {"count": collection(name).count(body.where)}

    @app.post("/v1/collections/{name}/update", tags=["records"], responses=errors)
    def update(name: str, body: UpdateBody, entry=Depends(caller)) -> dict:
        allow(entry, "write", name)
        if len(body.ids) > settings.max_batch:
            raise InvalidInputError(f"A write holds at most {settings.max_batch} records on this server.")
        res = collection(name, embeds=body.documents is not None).update(
            body.ids, documents=body.documents, metadatas=body.metadatas, merge=body.merge)
        return {"added": res.added, "replaced": res.replaced, "unchanged": res.unchanged, "truncated": res.truncated}

    # -- migration --------------------------------------------------------------------------------
    @app.post("/v1/collections/{name}/migration", tags=["migration"], responses=errors, status_code=202)
    def migrate(name: str, body: MigrateBody, entry=Depends(caller)) -> dict:
        allow(entry, "admin", name)
        col = collection(name)
        if body.encoder.get("trust_remote_code"):
            raise InvalidInputError("The server does not load models with trust_remote_code.")
        from ..embed import encoder_from_config

        encoder = encoder_from_config(body.encoder)
        job = {"id": uuid.uuid4().hex, "collection": name, "state": "running", "done": 0, "total": len(col),
               "started_at": time.time(), "report": None, "error": None, "new_fingerprint": encoder.spec.fingerprint}
        jobs.put(job)

        def run():
            last = [0.0]

            def progress(done, total):
                if time.monotonic() - last[0] > 0.5 or done >= total:
                    last[0] = time.monotonic()
                    jobs.put({**job, "done": done, "total": total})

            try:
                report = col.migrate(encoder, switch=body.switch, batch_size=body.batch_size, queries=body.queries,
                                     progress=progress)
                jobs.put({**job, "state": "done", "done": job["total"], "report": report.to_dict()})
            except Exception as exc:  # the job's outcome, read by progress (no trace: the type and message)
                jobs.put({**job, "state": "failed", "error": {"error": type(exc).__name__, "message": str(exc)}})

        threading.Thread(target=run, daemon=True, name=f"migrate-{name}").start()
        return job

    @app.get("/v1/jobs/{jid}", tags=["migration"], responses=errors)
    def progress(jid: str, entry=Depends(caller)) -> dict:
        job = jobs.get(jid)
        allow(entry, "read", job["collection"])
        return job

    @app.post("/v1/collections/{name}/migration/switch", tags=["migration"], responses=errors)
    def switch(name: str, body: SwitchBody, entry=Depends(caller)) -> dict:
        allow(entry, "admin", name)
        old = collection(name).spec.fingerprint
        shadow = f"~{name}~{body.fingerprint}"
        try:
            store.get_collection(shadow)
        except NotFoundError:
            raise NotFoundError(f"No finished migration of {name!r} to space {body.fingerprint}: start one with "
                                f"POST /v1/collections/{name}/migration.") from None
        store._swap(name, shadow, f"migrate {old} -> {body.fingerprint}")
        return collection(name).info().to_dict()

    # -- the applications ------------------------------------------------------------------------
    @app.post("/v1/collections/{name}/recommend", tags=["apps"], responses=errors)
    def recommend(name: str, body: RecommendBody, entry=Depends(caller)) -> list[dict]:
        allow(entry, "read", name)
        from ..apps.recommendation import recommend as run

        return [h.to_dict() for h in run(collection(name), body.positive, body.negative, k=body.k, where=body.where,
                                         strategy=body.strategy)]

    @app.post("/v1/collections/{name}/context", tags=["apps"], responses=errors)
    def context(name: str, body: ContextBody, entry=Depends(caller)) -> dict:
        allow(entry, "read", name)
        from ..apps.rag import retrieve_context

        col = collection(name, embeds=body.mode != "keyword")
        ctx = retrieve_context(col, body.question, token_budget=body.token_budget, k=body.k, mode=body.mode,
                               mmr=body.mmr, where=body.where)
        return {"question": ctx.question, "text": ctx.text, "tokens": ctx.tokens, "token_budget": ctx.token_budget,
                "skipped": ctx.skipped, "sources": [s.to_dict() for s in ctx.sources]}

    @app.post("/v1/collections/{name}/cluster", tags=["apps"], responses=errors)
    def cluster(name: str, body: ClusterBody, entry=Depends(caller)) -> dict:
        allow(entry, "read", name)
        from ..apps.clustering import cluster as run

        res = run(collection(name), body.method, n_clusters=body.n_clusters, min_cluster_size=body.min_cluster_size,
                  where=body.where, seed=body.seed)
        return {**res.to_dict(), "ids": res.ids, "labels": res.labels.tolist(), "notes": res.notes}

    @app.post("/v1/collections/{name}/duplicates", tags=["apps"], responses=errors)
    def duplicates(name: str, body: DuplicatesBody, entry=Depends(caller)) -> dict:
        allow(entry, "read", name)
        from ..apps.dedup import find_duplicates

        return find_duplicates(collection(name), body.threshold, where=body.where).to_dict()

    @app.post("/v1/collections/{name}/outliers", tags=["apps"], responses=errors)
    def outliers(name: str, body: OutliersBody, entry=Depends(caller)) -> dict:
        allow(entry, "read", name)
        from ..apps.outliers import outlier_scores

        rep = outlier_scores(collection(name), body.method, k=body.k, where=body.where)
        return {"method": rep.method, "k": rep.k, "records": len(rep.ids),
                "top": [{"id": i, "score": s, "document": d} for i, s, d in rep.top(body.top)]}

    @app.post("/v1/collections/{name}/classify", tags=["apps"], responses=errors)
    def classify(name: str, body: ClassifyBody, entry=Depends(caller)) -> list[dict]:
        allow(entry, "read", name)
        from ..apps.classify import knn_classify
        from ..core.space import SpaceSpec

        n = len(body.queries or body.vectors or [])
        if n > settings.max_queries:
            raise InvalidInputError(f"At most {settings.max_queries} queries per call on this server; got {n}.")
        if body.vectors is not None and body.space is None:
            raise InvalidInputError("Vectors sent to the server must name their space: add \"space\".")
        space = SpaceSpec.from_dict(body.space) if body.space is not None else None
        preds = knn_classify(collection(name, embeds=body.queries is not None), body.label_key, queries=body.queries,
                             vectors=body.vectors, space=space, k=body.k)
        return [p.to_dict() for p in preds]

    # -- analysis: what the explorer draws -----------------------------------------------------------
    @app.post("/v1/collections/{name}/diagnose", tags=["analysis"], responses=errors)
    def diagnose(name: str, body: DiagnoseBody, entry=Depends(caller)) -> dict:
        allow(entry, "read", name)
        from ..analysis.diagnostics import diagnose as run

        d = run(collection(name), sample=body.sample, seed=body.seed)
        return {**_finite(d.to_dict()), "findings": [{"metric": m, "text": t, "concern": c} for m, t, c in d.findings()]}

    def projection(name: str, body: ProjectBody) -> dict:
        """The cached map of ``name``: ids, 2-D points, the fitted model (to place queries)."""
        col = collection(name)
        seq = col._storage.change_seq()
        max_points = body.max_points or MAP_POINTS[body.method]
        key = (name, col.spec.fingerprint, seq, body.method, body.seed, max_points)
        with proj_lock:
            hit = projections.get(key) if seq is not None else None
        if hit is not None:
            return hit
        from ..analysis.vectors import collection_records

        recs, total = collection_records(col, max_points, body.seed)
        if len(recs) < 3:
            raise InvalidInputError(f"Collection {name!r} has {len(recs)} records; a map needs at least 3.")
        x = np.stack([r.vector for r in recs]).astype(np.float32)
        t0 = time.perf_counter()
        from ..analysis.projection import fit_projection

        model, coords = fit_projection(x, body.method, seed=body.seed)
        out = {"ids": [r.id for r in recs], "x": x, "coords": coords, "model": model, "total": total,
               "documents": [(r.document or "")[:300] for r in recs], "metadatas": [r.metadata for r in recs],
               "seconds": round(time.perf_counter() - t0, 3), "method": body.method, "seed": body.seed,
               "change_seq": seq, "fingerprint": col.spec.fingerprint}
        with proj_lock:
            if len(projections) >= CACHE_ENTRIES:
                projections.pop(next(iter(projections)))
            if seq is not None:
                projections[key] = out
        return out

    @app.post("/v1/collections/{name}/project", tags=["analysis"], responses=errors)
    def project(name: str, body: ProjectBody, entry=Depends(caller)) -> dict:
        allow(entry, "read", name)
        p = projection(name, body)
        labels = None
        if body.color_by:
            labels = [m.get(body.color_by) if isinstance(m.get(body.color_by), (str, int, float, bool)) else None
                      for m in p["metadatas"]]
        c = p["coords"]
        return {"ids": p["ids"], "x": c[:, 0].round(5).tolist(), "y": c[:, 1].round(5).tolist(),
                "documents": p["documents"] if body.documents else None, "labels": labels, "fields": _fields(p["metadatas"]),
                "total": p["total"], "sampled": p["total"] > len(p["ids"]), "method": p["method"], "seed": p["seed"],
                "change_seq": p["change_seq"], "fingerprint": p["fingerprint"], "seconds": p["seconds"]}

    @app.post("/v1/collections/{name}/place", tags=["analysis"], responses=errors)
    def place(name: str, body: PlaceBody, entry=Depends(caller)) -> dict:
        """A query (text) or a record (id) on the map, with its true top-k in the original space,
        and how far the map distorts them: the share of the true top-k among the k points
        nearest on the map (1 = the map keeps this neighbourhood)."""
        allow(entry, "read", name)
        if (body.query is None) == (body.id is None):
            raise InvalidInputError("place takes a query (text) or an id, one of them.")
        p = projection(name, ProjectBody(method=body.method, seed=body.seed, max_points=body.max_points))
        col = collection(name, embeds=body.query is not None)
        if body.query is not None:
            vec = col.encoder.encode_queries([body.query])[0]
            hits = col.search(vector=vec, space=col.spec, k=body.k)
        else:
            got = col.get(ids=[body.id], include_vectors=True)
            if not got:
                raise NotFoundError(f"No record {body.id!r} in collection {name!r}.")
            vec = got[0].vector
            hits = [h for h in col.search(vector=vec, space=col.spec, k=body.k + 1) if h.id != body.id][:body.k]
        xy = p["model"].transform(vec[None].astype(np.float32))[0]
        pos = {i: n for n, i in enumerate(p["ids"])}
        on_map = [pos[h.id] for h in hits if h.id in pos]
        d2 = np.linalg.norm(p["coords"] - xy, axis=1)
        if body.id is not None and body.id in pos:
            d2[pos[body.id]] = np.inf
        nearest_on_map = set(np.argsort(d2)[: len(on_map)].tolist()) if on_map else set()
        kept = len(nearest_on_map & set(on_map)) / len(on_map) if on_map else None
        return {"x": float(xy[0]), "y": float(xy[1]), "hits": [h.to_dict() for h in hits],
                "positions": [pos.get(h.id) for h in hits], "map_recall": kept}

    @app.post("/v1/collections/{name}/compare", tags=["analysis"], responses=errors)
    def compare(name: str, body: CompareBody, entry=Depends(caller)) -> dict:
        """How much each shared record's neighbourhood agrees between two collections (the
        share of its k nearest that are the same in both)."""
        allow(entry, "read", name)
        allow(entry, "read", body.other)
        a, b = collection(name), collection(body.other)
        from ..analysis.vectors import collection_records

        recs, _ = collection_records(a, body.max_points, body.seed)
        ids = [r.id for r in recs]
        got = {r.id: r.vector for r in b.get(ids=ids, include_vectors=True)}
        shared = [i for i in ids if i in got]
        if len(shared) <= body.k:
            raise InvalidInputError(f"{name!r} and {body.other!r} share {len(shared)} ids of the {len(ids)} compared; "
                                    f"comparing neighbourhoods of {body.k} needs more than {body.k}.")
        va = {r.id: r.vector for r in recs}
        xa = np.stack([va[i] for i in shared])
        xb = np.stack([got[i] for i in shared])
        from ..analysis.compare import knn_agreement

        # a collection's metric as the analysis names it (a dot space holds unit vectors)
        as_analysis = {"l2": "euclidean", "cosine": "cosine", "dot": "cosine"}
        agree = knn_agreement(xa, xb, body.k, as_analysis[a.spec.metric], as_analysis[b.spec.metric])
        return {"ids": shared, "agreement": agree.round(4).tolist(), "k": body.k, "mean": float(agree.mean())}


def _fields(metadatas: list) -> list[str]:
    """Metadata keys with scalar values (what a map can be coloured by), most common first."""
    from collections import Counter

    c = Counter(k for m in metadatas[:5000] for k, v in m.items() if isinstance(v, (str, int, float, bool)))
    return [k for k, _ in c.most_common(50)]


def _finite(value):
    """JSON-safe: NaN and infinities become None."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


__all__ = ["add_app_routes", "Jobs"]
