"""A million vectors on one box: latentspace embedded, raw hnswlib, Milvus Lite and chromadb.

    python bench/scale.py --vectors V.npy [--n 1000000] [--only latentspace,hnswlib,milvus,chromadb]
                          [--chroma-python /path/to/python] [--workdir DIR] [--json-out bench/scale-results.json]
                          [--no-rebuild]

``--n 100000,1000000`` runs each size in turn in one run (the 100k store is the real vectors
alone) and reports latentspace's QPS at the larger size over the smaller's, same run.

Data: ``V.npy`` holds real all-MiniLM-L6-v2 vectors (the 101,000 paragraph vectors of
``latentspace.data.vectors.real_vectors(100_000)``, 100,000 base + 1,000 held-out queries;
``--vectors`` reuses a cached copy, since the docstring corpus changes with the installed
packages). There is no more real text at hand, so the other 900,000 are *derived*: each is
``normalize(a + u * (b - a) + 0.25 * g / sqrt(384))`` for two random real vectors a, b, u
uniform in [0, 1] and g standard normal (points between real ones, a little off the
segment; seed 0). Queries: the 1,000 held-out real vectors; truth: exact top-10 by numpy.
Filter: metadata ``b`` uniform in [0, 100); ``b < 10`` keeps 10%.

Each system runs in its own process (peak RSS from ``getrusage``): ingest (batches of 10,000,
then whatever makes it durable and searchable: flush / index build), disk, single-query and
batch QPS (k=10) at the smallest ef reaching recall@10 >= 0.95, filtered single-query QPS.
latentspace: the ingest process is SIGKILLed after its last write (no flush, no close); a
new process then times the open and first query (recovery: loads the background-saved index
file and replays the tail of the change log), then the searches; a third process times a cold
open; "rebuild" times the same open with the index files deleted (what every open after a
killed writer cost before the background saves). Serving RSS is that of the process that
opened the store and searched (not the ingest).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COMMON = r"""
import json, os, resource, sys, time
import numpy as np
W = sys.argv[1]
base = np.load(W + "/base.npy", mmap_mode="r"); q = np.load(W + "/queries.npy"); truth = np.load(W + "/truth.npy")
b = np.load(W + "/b.npy"); ftruth = np.load(W + "/ftruth.npy")
def rss_mb():  # VmHWM: this process's peak (ru_maxrss would carry the parent's across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1]) / 1024
def recall(ids): return float(np.mean([len(set(r[:10]) & set(t)) / 10 for r, t in zip(ids, truth)]))
def frecall(ids): return float(np.mean([len(set(r[:10]) & set(t)) / 10 for r, t in zip(ids, ftruth)]))
def timed(fn, items, min_s=1.0):
    out, n, t0 = [], 0, time.perf_counter()
    while True:
        for v in items:
            out.append(fn(v)); n += 1
        if time.perf_counter() - t0 >= min_s: break
    return n / (time.perf_counter() - t0), out[: len(items)]
def sweep(single, batch, efs=(16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512), rec=recall):
    # the smallest ef whose recall@10 over all 1,000 queries reaches 0.95; then single queries timed at it
    for ef in efs:
        t0 = time.perf_counter(); bres = batch(q, ef); bqps = len(q) / (time.perf_counter() - t0)
        r = rec(bres)
        if r >= 0.95: break
    qps, res = timed(lambda v: single(v, ef), q[:300])
    return {"ef": ef, "single_qps": qps, "recall": r, "batch_qps": bqps, "single_recall_300": float(np.mean(
        [len(set(a[:10]) & set(t)) / 10 for a, t in zip(res, truth[:300])]))}
def du(p): return sum(f.stat().st_size for f in __import__("pathlib").Path(p).rglob("*") if f.is_file())
def report(d): print("RESULT " + json.dumps(d), flush=True)
"""

LS_INGEST = COMMON + r"""
import signal
import latentspace as ls
st = ls.open_store(W + "/ls")
col = st.create_collection("v", space=ls.SpaceSpec(model="bench/minilm", dim=base.shape[1], modality="vector"))
t0 = time.perf_counter()
for s in range(0, len(base), 10_000):
    x = np.ascontiguousarray(base[s:s + 10_000])
    col.add([str(i) for i in range(s, s + len(x))], vectors=x, metadatas=[{"b": int(v)} for v in b[s:s + len(x)]])
ingest = time.perf_counter() - t0
storage = col._storage
report({"ingest_s": ingest, "ingest_rss_mb": rss_mb(), "last_seq": storage.last_seq(),
        "disk_seq_at_kill": storage._durable_seq(), "checkpointing": storage._checkpoint is not None})
os.kill(os.getpid(), signal.SIGKILL)
"""

LS_SERVE = COMMON + r"""
import latentspace as ls
mode = sys.argv[2]
if mode == "rebuild":
    for f in __import__("pathlib").Path(W + "/ls").glob("idx-*"): f.unlink()
t0 = time.perf_counter()
st = ls.open_store(W + "/ls")
col = st.get_collection("v")
col.search(vector=q[0], k=10)
opened = time.perf_counter() - t0
out = {"mode": mode, "open_first_query_s": opened, "messages": st.messages[-3:]}
if mode == "recover":
    t0 = time.perf_counter(); col.flush(); out["flush_s"] = time.perf_counter() - t0
    out.update(sweep(lambda v, ef: [int(h.id) for h in col.search(vector=v, k=10, ef=ef)],
                     lambda Q, ef: [[int(h.id) for h in hs] for hs in col.search_batch(vectors=Q, k=10, ef=ef)]))
    fq, fres = timed(lambda v: [int(h.id) for h in col.search(vector=v, k=10, where={"b": {"$lt": 10}})], q[:300])
    out.update({"filtered_qps": fq, "filtered_recall": frecall(fres), "disk_bytes": du(W + "/ls")})
out["rss_mb"] = rss_mb()
st.close()
report(out)
"""

HNSWLIB = COMMON + r"""
import hnswlib
t0 = time.perf_counter()
idx = hnswlib.Index(space="cosine", dim=base.shape[1]); idx.init_index(max_elements=len(base), M=16, ef_construction=200)
for s in range(0, len(base), 10_000):
    idx.add_items(np.ascontiguousarray(base[s:s + 10_000]), np.arange(s, min(s + 10_000, len(base))))
build = time.perf_counter() - t0
idx.save_index(W + "/raw.hnsw")
def single(v, ef): idx.set_ef(ef); return idx.knn_query(v, k=10, num_threads=1)[0][0].tolist()
def batch(Q, ef): idx.set_ef(ef); return idx.knn_query(Q, k=10)[0].tolist()
out = {"ingest_s": build, "disk_bytes": os.path.getsize(W + "/raw.hnsw")}
out.update(sweep(single, batch))
out["rss_mb"] = rss_mb()
del idx
t0 = time.perf_counter(); j = hnswlib.Index(space="cosine", dim=base.shape[1]); j.load_index(W + "/raw.hnsw")
out["open_first_query_s"] = time.perf_counter() - t0
report(out)
"""

MILVUS = COMMON + r"""
import logging; logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
from pymilvus import MilvusClient, DataType
os.makedirs(W + "/milvus", exist_ok=True)
c = MilvusClient(W + "/milvus/m.db")
s = c.create_schema(auto_id=False); s.add_field("id", DataType.INT64, is_primary=True)
s.add_field("vector", DataType.FLOAT_VECTOR, dim=base.shape[1]); s.add_field("b", DataType.INT64)
ip = c.prepare_index_params(); ip.add_index("vector", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 200})
c.create_collection("v", schema=s, index_params=ip, consistency_level="Strong")  # (Lite indexes a flushed segment itself)
t0 = time.perf_counter()
for st in range(0, len(base), 10_000):
    x = base[st:st + 10_000]
    c.insert("v", [{"id": st + i, "vector": x[i].tolist(), "b": int(b[st + i])} for i in range(len(x))])
c.flush("v"); c.load_collection("v")
ingest = time.perf_counter() - t0
def single(v, ef, flt=""):
    r = c.search("v", data=[v.tolist()], limit=10, filter=flt, search_params={"metric_type": "COSINE", "params": {"ef": max(ef, 10)}})
    return [h["id"] for h in r[0]]
def batch(Q, ef):
    out = []
    for s0 in range(0, len(Q), 100):
        out += [[h["id"] for h in r] for r in c.search("v", data=Q[s0:s0 + 100].tolist(), limit=10, search_params={"metric_type": "COSINE", "params": {"ef": max(ef, 10)}})]
    return out
out = {"ingest_s": ingest, "disk_bytes": du(W + "/milvus")}
out.update(sweep(single, batch))
fq, fres = timed(lambda v: single(v, out["ef"], "b < 10"), q[:300])
out.update({"filtered_qps": fq, "filtered_recall": frecall(fres), "rss_mb": rss_mb()})
c.close()
t0 = time.perf_counter(); c = MilvusClient(W + "/milvus/m.db"); c.load_collection("v"); single(q[0], 64)
out["open_first_query_s"] = time.perf_counter() - t0
report(out)
"""

CHROMA = COMMON + r"""
import chromadb
client = chromadb.PersistentClient(path=W + "/chroma")
col = client.create_collection("vectors", configuration={"hnsw": {"space": "cosine", "ef_construction": 200, "max_neighbors": 16, "ef_search": 64}})
step = min(client.get_max_batch_size(), 5000)
t0 = time.perf_counter()
for s in range(0, len(base), step):
    x = np.ascontiguousarray(base[s:s + step])
    col.add(ids=[str(i) for i in range(s, s + len(x))], embeddings=x, metadatas=[{"b": int(v)} for v in b[s:s + len(x)]])
ingest = time.perf_counter() - t0
def single(v, ef=64, where=None):
    return [int(i) for i in col.query(query_embeddings=v[None], n_results=10, where=where)["ids"][0]]
qps, res = timed(lambda v: single(v), q[:300])
t0 = time.perf_counter(); bres = col.query(query_embeddings=q, n_results=10)["ids"]; bq = len(q) / (time.perf_counter() - t0)
fq, fres = timed(lambda v: single(v, where={"b": {"$lt": 10}}), q[:300])
report({"ingest_s": ingest, "disk_bytes": du(W + "/chroma"), "ef": 64, "single_qps": qps, "recall": recall(res),
        "batch_qps": bq, "batch_recall": recall([[int(i) for i in r] for r in bres]), "filtered_qps": fq,
        "filtered_recall": frecall(fres), "rss_mb": rss_mb()})
"""


def prepare(vectors: Path, n: int, work: Path) -> dict:
    v = np.load(vectors).astype(np.float32)
    real, queries = v[:-1000], v[-1000:]
    rng = np.random.default_rng(0)
    extra = n - len(real)
    parts = [real]
    for s in range(0, max(extra, 0), 100_000):
        m = min(100_000, extra - s)
        a, bb = real[rng.integers(0, len(real), m)], real[rng.integers(0, len(real), m)]
        x = a + rng.random((m, 1), dtype=np.float32) * (bb - a) + 0.25 * rng.standard_normal((m, v.shape[1]),
                                                                                           dtype=np.float32) / np.sqrt(v.shape[1])
        parts.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    base = np.concatenate(parts)[:n].astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    bucket = rng.integers(0, 100, len(base))
    keep = np.flatnonzero(bucket < 10)
    cand = []
    for s in range(0, len(base), 200_000):  # exact top-10: the top 10 of each chunk, then of those
        sims = queries @ base[s:s + 200_000].T
        cand.append(np.argpartition(-sims, 10, axis=1)[:, :10] + s)
    cand = np.concatenate(cand, axis=1)
    csims = np.einsum("qd,qkd->qk", queries, base[cand])
    truth = np.take_along_axis(cand, np.argsort(-csims, axis=1)[:, :10], axis=1)
    fs = queries @ base[keep].T
    ftruth = keep[np.argsort(-fs, axis=1)[:, :10]]
    np.save(work / "base.npy", base)
    np.save(work / "queries.npy", queries)
    np.save(work / "truth.npy", truth)
    np.save(work / "ftruth.npy", ftruth)
    np.save(work / "b.npy", bucket)
    return {"n": len(base), "real": len(real), "derived": max(extra, 0), "queries": len(queries),
            "raw_vectors_mb": base.nbytes / 2**20}


def run(script: str, args: list[str], python: str = sys.executable, expect_kill: bool = False) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([python, "-c", script, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines or (proc.returncode != 0 and not (expect_kill and proc.returncode == -9)):
        print(f"worker failed ({proc.returncode}): {proc.stderr[-3000:]}", flush=True)
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    out = json.loads(lines[-1][7:])
    out["process_wall_s"] = round(wall, 1)
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", type=Path, required=True)
    ap.add_argument("--n", default="1000000", help="vectors; several sizes comma-separated")
    ap.add_argument("--no-rebuild", action="store_true", help="skip the timed rebuild of latentspace's index")
    ap.add_argument("--only", default="latentspace,hnswlib,milvus,chromadb")
    ap.add_argument("--chroma-python", default=sys.executable)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    sizes = [int(x) for x in str(args.n).split(",")]
    results: dict = {"cpus": os.cpu_count(), "sizes": {}}
    for n in sizes:
        work = (args.workdir / str(n)) if args.workdir and len(sizes) > 1 else args.workdir
        work = work or Path(tempfile.mkdtemp(prefix="ls-scale-"))
        results["sizes"][n] = one_size(args, n, work)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if len(sizes) > 1 and "latentspace" in args.only:
        qps = {n: results["sizes"][n]["systems"]["latentspace"]["recover"] for n in sizes}
        lo, hi = min(sizes), max(sizes)
        results["latentspace_qps_ratio"] = {
            f"{key}_{hi}_over_{lo}": qps[hi][f"{key}_qps"] / qps[lo][f"{key}_qps"] for key in ("single", "batch", "filtered")}
        print(json.dumps(results["latentspace_qps_ratio"]), flush=True)
    if len(sizes) == 1:  # the layout of a one-size run, as before
        results = {**results["sizes"][sizes[0]], "cpus": results["cpus"]}
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")


def one_size(args, n: int, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = prepare(args.vectors, n, work)
    print(json.dumps({"data": data, "prepare_s": round(time.perf_counter() - t0, 1)}), flush=True)
    results: dict = {"data": data, "cpus": os.cpu_count(), "systems": {}}
    parts = args.only.split(",")
    if "latentspace" in parts:
        ing = run(LS_INGEST, [str(work)], expect_kill=True)
        rec = run(LS_SERVE, [str(work), "recover"])
        cold = run(LS_SERVE, [str(work), "cold"])
        results["systems"]["latentspace"] = {"ingest": ing, "recover": rec, "cold": cold}
        if not args.no_rebuild:
            results["systems"]["latentspace"]["rebuild"] = run(LS_SERVE, [str(work), "rebuild"])
    if "hnswlib" in parts:
        results["systems"]["hnswlib"] = run(HNSWLIB, [str(work)])
    if "milvus" in parts:
        results["systems"]["milvus_lite"] = run(MILVUS, [str(work)])
    if "chromadb" in parts:
        results["systems"]["chromadb"] = run(CHROMA, [str(work)], python=args.chroma_python)
    return results


if __name__ == "__main__":
    main()
