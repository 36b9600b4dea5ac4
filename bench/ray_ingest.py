"""Texts per second: ingest through Ray (an actor pool on a local cluster) against the
single-process ingest, on the same texts, same run, same store kind.

Three engines, rounds alternating: ``local`` (what ``latentspace ingest FILE`` runs: read the
JSONL file, chunk, embed, write in this process), ``ray-files`` (what ``--engine ray`` runs:
Ray Data reads and parses the file, the actor pool chunks and embeds, the driver writes) and
``ray-items`` (records already in memory handed to ``ingest(..., engine="ray")``).

    python bench/ray_ingest.py [--texts 2000] [--workers 2] [--rounds 2] [--json-out bench/ray-ingest-results.json]

Texts: the first ``--texts`` standard-library docstrings (cut at 1,000 chars), all-MiniLM-L6-v2
(fp32). Local: one process, torch threads = the machine's CPUs. Ray: a local cluster
(``ray.init(num_cpus=<CPUs>)``), ``--workers`` actors with one torch thread each; the time
includes starting the actors (each loads the model) but not ``ray.init``. Rounds alternate
local and Ray; each writes into a fresh store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    import ray
    import torch

    import latentspace as ls
    from latentspace.data.stdlib_docs import docstring_items
    from latentspace.ingest import chunk_items, ingest, read_items
    from latentspace.ray_ingest import ingest_files_on_ray

    cpus = os.cpu_count() or 1
    texts = [" ".join(it.text.split())[:1000] for it in docstring_items()][: args.texts]
    work = Path(tempfile.mkdtemp())
    data = work / "docs.jsonl"
    data.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    enc = ls.default_encoder(precision="fp32")
    enc.encode_documents(["warm up"])
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows = []
    for r in range(args.rounds):
        for engine in ("local", "ray-files", "ray-items"):
            with tempfile.TemporaryDirectory() as d:
                st = ls.open_store(d)
                col = st.create_collection("docs", encoder=enc)
                torch.set_num_threads(cpus)
                t0 = time.perf_counter()
                if engine == "ray-files":
                    rep = ingest_files_on_ray(col, data, workers=args.workers)
                else:
                    items = list(chunk_items(read_items(data), 1000, 100, count_tokens=enc.count_tokens,
                                             max_tokens=enc.token_limit))
                    rep = ingest(col, items, engine="ray" if engine == "ray-items" else "local",
                                 workers=args.workers if engine == "ray-items" else None)
                sec = time.perf_counter() - t0
                assert rep.added == rep.chunks >= len(texts), rep
                rows.append({"round": r, "engine": engine, "seconds": round(sec, 2), "chunks": rep.chunks,
                             "texts_per_s": len(texts) / sec})
                print(json.dumps(rows[-1]), flush=True)
                st.close()
    ray.shutdown()
    engines = ("local", "ray-files", "ray-items")
    best = {e: max(x["texts_per_s"] for x in rows if x["engine"] == e) for e in engines}
    out = {"python": sys.version.split()[0], "cpus": cpus, "texts": len(texts), "workers": args.workers,
           "ray": ray.__version__, "rows": rows, "best_texts_per_s": best,
           "over_local": {e: best[e] / best["local"] for e in engines[1:]}}
    print("\nbest texts/s: " + ", ".join(f"{e} {best[e]:.1f} ({best[e] / best['local']:.2f}x)" for e in engines))
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
