"""Server benchmark: `latentspace serve` against Chroma's server, same data, same run.

    python bench/server.py [--duration 10] [--concurrency 1,8,32] [--workers 1,2] [--json-out FILE]

Data: the test corpus (tests/corpus.py: 8,920 paragraphs of the standard library's
docstrings, sha256-checked) as all-MiniLM-L6-v2 vectors with their documents and a metadata
field; queries are the 500 held-out paragraphs' vectors. Both servers run on loopback in
their own processes (``latentspace serve STORE --workers W``; ``chroma run --path DIR``);
the load comes from another process: one asyncio client holding C connections, each sending
a k=10 vector search (documents, metadata and distances in the answer) as soon as its last
one returned, for ``--duration`` seconds after a warm-up. Each answer is checked (10 hits)
and recall@10 against exact search is measured on the answers. Reported: requests/s and
p50 / p99 latency at each concurrency, and the ratios to Chroma; systems alternate within
each concurrency so that the machine's drift hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMA_PATH = "/api/v2/tenants/default_tenant/databases/default_database/collections"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def data():
    from latentspace.data.vectors import embed_cached
    from tests.corpus import split

    base, queries = split()
    texts = [r["text"] for r in base]
    vecs = embed_cached(texts)
    qvecs = embed_cached([r["text"] for r in queries])
    metas = [{"package": r["package"]} for r in base]
    return texts, vecs, metas, qvecs


def build(folder: Path, texts, vecs, metas) -> None:
    import chromadb

    import latentspace as ls

    ids = [f"p{i}" for i in range(len(texts))]
    enc = ls.default_encoder()
    st = ls.open_store(folder / "ls")
    col = st.create_collection("docs", encoder=enc)
    for s in range(0, len(ids), 1000):
        col.add(ids[s:s + 1000], documents=texts[s:s + 1000], metadatas=metas[s:s + 1000], vectors=vecs[s:s + 1000],
                space=enc.spec)
    st.close()
    client = chromadb.PersistentClient(path=str(folder / "chroma"))
    c = client.create_collection("docs", metadata={"hnsw:space": "cosine"})
    for s in range(0, len(ids), 1000):
        c.add(ids=ids[s:s + 1000], documents=texts[s:s + 1000], metadatas=metas[s:s + 1000],
              embeddings=vecs[s:s + 1000].tolist())
    del client


# -- the load, in its own process --------------------------------------------------------------
async def read_response(reader) -> tuple[int, bytes]:
    """One HTTP/1.1 response: (status, body), Content-Length or chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    body = b""
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, body
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def load(url: str, system: str, conc: int, duration: float, warmup: float, qfile: str, extra: str) -> dict:
    """C connections, each sending its next request when the last answer is in. The requests
    are encoded before the clock starts and answers are parsed only for the recall sample,
    so that this process takes as little of the machine as it can (a pure-Python HTTP client
    was the bottleneck at 8 connections)."""
    host, port = url.split("//")[1].split(":")
    q = np.load(qfile).tolist()
    if system == "chroma":
        path = f"{CHROMA_PATH}/{extra}/query"
        bodies = [json.dumps({"query_embeddings": [v], "n_results": 10,
                              "include": ["documents", "metadatas", "distances"]}) for v in q]

        def ids_of(js):
            return js["ids"][0]
    else:
        path = "/v1/collections/docs/search"
        space = json.loads(extra)
        bodies = [json.dumps({"vector": v, "space": space, "k": 10}) for v in q]

        def ids_of(js):
            return [h["id"] for h in js]

    requests = [(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(b)}\r\n\r\n{b}").encode() for b in bodies]
    lat: list[float] = []
    answers: dict[int, list[str]] = {}
    errors = 0
    t = time.perf_counter()
    warm_until, stop_at = t + warmup, t + warmup + duration

    async def worker(n: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        i = n
        while time.perf_counter() < stop_at:
            qi = i % len(requests)
            t0 = time.perf_counter()
            writer.write(requests[qi])
            status, body = await read_response(reader)
            t1 = time.perf_counter()
            if status != 200:
                errors += 1
            elif t0 >= warm_until:
                lat.append(t1 - t0)
                if qi not in answers:
                    got = ids_of(json.loads(body))
                    answers[qi] = got
                    errors += len(got) != 10
            i += conc
        writer.close()

    await asyncio.gather(*(worker(n) for n in range(conc)))
    a = np.array(lat)
    return {"requests": len(a), "rps": len(a) / duration, "p50_ms": float(np.percentile(a, 50) * 1000),
            "p99_ms": float(np.percentile(a, 99) * 1000), "errors": errors,
            "answers": {str(k): v for k, v in answers.items()}}


def run_load(url, system, conc, duration, warmup, qfile, extra) -> dict:
    out = subprocess.run([sys.executable, __file__, "--load", url, system, str(conc), str(duration), str(warmup),
                          qfile, extra], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--json-out")
    ap.add_argument("--load", nargs=7)
    args = ap.parse_args()
    if args.load:
        url, system, conc, duration, warmup, qfile, extra = args.load
        print(json.dumps(asyncio.run(load(url, system, int(conc), float(duration), float(warmup), qfile, extra))))
        return

    import latentspace as ls
    from latentspace.storage.index import exact_topk

    texts, vecs, metas, qvecs = data()
    folder = Path(tempfile.mkdtemp(prefix="bench-server-"))
    qfile = str(folder / "q.npy")
    np.save(qfile, qvecs.astype(np.float32))
    build(folder, texts, vecs, metas)
    labels, _ = exact_topk(vecs, np.arange(len(vecs)), qvecs, 10, "cosine", unit=True)
    truth = {i: {f"p{j}" for j in row} for i, row in enumerate(labels.tolist())}
    spec = json.dumps(ls.default_encoder().spec.to_dict())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    servers: dict[str, tuple] = {}
    procs = []
    try:
        for w in [int(x) for x in args.workers.split(",")]:
            port = free_port()
            p = subprocess.Popen([sys.executable, "-m", "latentspace.cli.app", "serve", str(folder / "ls"), "--port",
                                  str(port), "--workers", str(w)], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_port(port, p)
            servers[f"latentspace (workers {w})"] = (f"http://127.0.0.1:{port}", "latentspace", spec)
        port = free_port()
        chroma = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
        p = subprocess.Popen([chroma, "run", "--path", str(folder / "chroma"), "--port", str(port)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        wait_port(port, p)
        import httpx

        cid = httpx.get(f"http://127.0.0.1:{port}{CHROMA_PATH}/docs").json()["id"]
        servers["chromadb"] = (f"http://127.0.0.1:{port}", "chroma", cid)
        results: dict[str, dict] = {}
        for conc in [int(x) for x in args.concurrency.split(",")]:
            for name, (url, system, extra) in servers.items():
                r = run_load(url, system, conc, args.duration, args.warmup, qfile, extra)
                got = r.pop("answers")
                r["recall_at_10"] = float(np.mean([len(set(v) & truth[int(k)]) / 10 for k, v in got.items()]))
                results.setdefault(name, {})[conc] = r
                print(f"{name:24s} c={conc:<3d} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                      f"p99 {r['p99_ms']:7.2f} ms  recall {r['recall_at_10']:.3f}  errors {r['errors']}", flush=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    base = results["chromadb"]
    print("\n| system | clients | req/s | p50 ms | p99 ms | recall@10 | req/s vs chroma | p99 vs chroma |")
    print("|---|---|---|---|---|---|---|---|")
    for name, by in results.items():
        for conc, r in by.items():
            print(f"| {name} | {conc} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['recall_at_10']:.3f} | {r['rps'] / base[conc]['rps']:.2f}x | "
                  f"{r['p99_ms'] / base[conc]['p99_ms']:.2f}x |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
