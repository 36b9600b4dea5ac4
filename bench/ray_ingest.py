"""Texts per second: ingest through Ray (an actor pool on a local cluster) against the
single-process ingest, on the same texts, same run, same store kind.

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
    from latentspace.ingest import Item, ingest

    cpus = os.cpu_count() or 1
    texts = [" ".join(it.text.split())[:1000] for it in docstring_items()][: args.texts]
    items = [Item(f"d{i}", t, {}) for i, t in enumerate(texts)]
    enc = ls.default_encoder(precision="fp32")
    enc.encode_documents(["warm up"])
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows = []
    for r in range(args.rounds):
        for engine in ("local", "ray"):
            with tempfile.TemporaryDirectory() as d:
                st = ls.open_store(d)
                col = st.create_collection("docs", encoder=enc)
                torch.set_num_threads(cpus)
                t0 = time.perf_counter()
                rep = ingest(col, items, engine=engine, workers=args.workers if engine == "ray" else None)
                sec = time.perf_counter() - t0
                assert rep.added == len(items), rep
                rows.append({"round": r, "engine": engine, "seconds": round(sec, 2), "texts_per_s": len(items) / sec})
                print(json.dumps(rows[-1]), flush=True)
                st.close()
    ray.shutdown()
    best = {e: max(x["texts_per_s"] for x in rows if x["engine"] == e) for e in ("local", "ray")}
    out = {"python": sys.version.split()[0], "cpus": cpus, "texts": len(items), "workers": args.workers,
           "ray": ray.__version__, "rows": rows, "best_texts_per_s": best, "ray_over_local": best["ray"] / best["local"]}
    print(f"\nbest texts/s: local {best['local']:.1f}, ray {best['ray']:.1f} ({out['ray_over_local']:.2f}x)")
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
