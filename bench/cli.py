"""One-shot CLI calls, timed as a user runs them: a fresh process per call.

    python bench/cli.py [--n 2000] [--repeat 5] [--json-out bench/cli-results.json]

Builds a store of ``n`` standard-library docstrings with the default model, then times
``latentspace search`` in vector, hybrid and keyword mode (each a new process, wall time
from spawn to exit), the same text search done the way the CLI did before the ONNX query
path (sentence-transformers in torch), the first call on a machine that has no cached ONNX
export yet (it exports once), and ``import sentence_transformers`` alone for scale. It
also checks what the fast path is held to: the query vectors of the CLI path against
sentence-transformers fp32 on 500 real queries (min cosine, bar 0.9999).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], repeat: int, env: dict | None = None) -> dict:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
        runs.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{cmd} failed:\n{proc.stderr[-2000:]}")
    return {"median_s": round(statistics.median(runs), 3), "min_s": round(min(runs), 3), "runs": len(runs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    import numpy as np

    import latentspace as ls
    from latentspace.data import docstring_items

    tmp = Path(tempfile.mkdtemp(prefix="ls-bench-cli-"))
    store = tmp / "store"
    items = docstring_items(limit=args.n)
    with ls.open_store(store) as st:
        col = st.create_collection("docs", encoder=ls.default_encoder())
        col.add([it.id for it in items], documents=[it.text for it in items], metadatas=[it.metadata for it in items])
    cli = [sys.executable, "-m", "latentspace.cli.app"]
    query = "open a file compressed with gzip"
    # warm: the ONNX export and the precision calibration are made once per machine
    subprocess.run([*cli, "search", str(store), "docs", query], capture_output=True, check=True)
    torch_search = (
        "import sys, latentspace as ls\n"
        "st = ls.open_store(sys.argv[1], create=False)\n"
        "col = st.get_collection('docs')\n"  # the encoder rebuilt from its config: sentence-transformers, torch
        "print(len(col.search(sys.argv[2], k=10)))\n"
    )
    results = {
        "search_vector": timed([*cli, "search", str(store), "docs", query], args.repeat),
        "search_hybrid": timed([*cli, "search", str(store), "docs", query, "--mode", "hybrid"], args.repeat),
        "search_keyword": timed([*cli, "search", str(store), "docs", query, "--mode", "keyword"], args.repeat),
        "search_vector_torch_path": timed([sys.executable, "-c", torch_search, str(store), query], args.repeat),
        "import_sentence_transformers": timed([sys.executable, "-c", "import sentence_transformers"], args.repeat),
        "first_search_without_cached_export": timed(
            [*cli, "search", str(store), "docs", query], 1, env={"LATENTSPACE_CACHE": str(tmp / "fresh-cache")}),
    }
    # what the fast path is held to: its query vectors against sentence-transformers fp32
    from latentspace.embed import query_encoder_from_config

    queries = [it.text.split("\n\n")[0] for it in docstring_items(limit=500)]
    with ls.open_store(store) as st:
        fast = query_encoder_from_config(st.collection_info("docs").encoder)
    ref = ls.default_encoder(precision="fp32")
    cos = (fast.encode_queries(queries) * ref.encode_queries(queries)).sum(axis=1)
    results["query_agreement"] = {"runtime": fast.spec.metadata["runtime"], "texts": len(queries),
                                  "min_cosine": round(float(cos.min()), 7), "mean_cosine": round(float(cos.mean()), 7)}
    results["ratio_vector_to_keyword"] = round(results["search_vector"]["median_s"]
                                               / results["search_keyword"]["median_s"], 2)
    results["speedup_vs_torch_path"] = round(results["search_vector_torch_path"]["median_s"]
                                             / results["search_vector"]["median_s"], 1)
    results["machine"] = {"cpus": os.cpu_count(), "records": len(items)}
    print(json.dumps(results, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    assert np.isfinite(cos).all()


if __name__ == "__main__":
    main()
