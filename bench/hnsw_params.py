"""How HNSW build settings trade build time against query speed at recall@10 >= 0.95.

    python bench/hnsw_params.py

On the same real MiniLM vectors as bench/search.py (raw hnswlib, cosine, one thread per
query): for each (M, ef_construction), the build time and the cheapest ef_search reaching
the recall bar, with the single-query QPS there. This chose latentspace's defaults.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from search import RECALL_BAR, SWEEP, load, recall, timed_single, truth  # noqa: E402


def main() -> None:
    import hnswlib

    x, q = load(100_000, 1000)
    gt = truth(x, q, 10)
    print("| M | ef_construction | build s | ef_search at recall >= 0.95 | recall | single QPS | index MB |")
    print("|---|---|---|---|---|---|---|")
    for m, efc in ((16, 100), (16, 200), (24, 200), (32, 100), (32, 200), (48, 200)):
        t0 = time.perf_counter()
        idx = hnswlib.Index(space="cosine", dim=x.shape[1])
        idx.init_index(max_elements=len(x), M=m, ef_construction=efc, random_seed=100)
        idx.add_items(x, np.arange(len(x)))
        build = time.perf_counter() - t0
        for ef in SWEEP:
            idx.set_ef(ef)
            r = recall(idx.knn_query(q, k=10)[0], gt)
            if r >= RECALL_BAR:
                break
        qps, _ = timed_single(lambda qi: idx.knn_query(qi, k=10, num_threads=1), q)
        print(f"| {m} | {efc} | {build:.1f} | {ef} | {r:.3f} | {qps:,.0f} | {idx.index_file_size() / 2**20:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
