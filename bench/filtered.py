"""Filtered search across selectivities: latentspace's planner against both plans run by hand.

    python bench/filtered.py [--n 100000] [--queries 200] [--json-out bench/filtered-results.json]

The 100k real MiniLM vectors of bench/search.py; each record gets ``b`` uniform in
[0, 1000) and the filter ``{"b": {"$lt": t}}`` selects t/1000 of them (0.1% to 90%). For
each selectivity, single-query QPS (k=10) of: latentspace (its planner choosing; recall
against exact), numpy scanning the matching rows by hand (recall 1.0), and hnswlib walking
the graph restricted to them by hand (the cheapest ef reaching recall@10 >= 0.95). The
planner's learned costs are printed too. Peers (chromadb, lancedb) are in bench/search.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SELECTIVITIES = (0.001, 0.01, 0.05, 0.1, 0.3, 0.9)
EFS = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def timed(fn, queries) -> tuple[float, list]:
    fn(queries[0])  # warm: caches filled outside the clock
    t0 = time.perf_counter()
    out = [fn(q) for q in queries]
    return len(queries) / (time.perf_counter() - t0), out


def recall(got: list, truth: list) -> float:
    return float(np.mean([len(set(g) & set(t)) / max(len(t), 1) for g, t in zip(got, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    import hnswlib

    import latentspace as ls
    from latentspace.data.vectors import real_vectors

    _, x, _, q = real_vectors(args.n, 1000, progress=True)
    x, q = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(q[: args.queries], np.float32)
    b = np.random.default_rng(0).integers(0, 1000, size=len(x))
    store = ls.open_store(Path(tempfile.mkdtemp(prefix="ls-bench-filtered-")) / "s")
    col = store.create_collection("v", space=ls.SpaceSpec(model="sentence-transformers/all-MiniLM-L6-v2", dim=384))
    for s in range(0, len(x), 20_000):
        col.add([str(i) for i in range(s, min(s + 20_000, len(x)))], vectors=x[s : s + 20_000],
                metadatas=[{"b": int(v)} for v in b[s : s + 20_000]])
    col.flush()
    index = hnswlib.Index(space="cosine", dim=384)
    index.init_index(max_elements=len(x), M=16, ef_construction=200, random_seed=100)
    index.add_items(x, np.arange(len(x)))
    rows = []
    for sel in SELECTIVITIES:
        t = int(round(sel * 1000))
        mask = b < t
        sub, sub_ids = x[mask], np.flatnonzero(mask)
        truth = [sub_ids[np.argsort(-(sub @ v))[:10]].tolist() for v in q]
        where = {"b": {"$lt": t}}
        ls_qps, ls_hits = timed(lambda v: col.search(vector=v, k=10, where=where), q)
        ls_recall = recall([[int(h.id) for h in hs] for hs in ls_hits], truth)

        def scan(v):
            return sub_ids[np.argpartition(-(sub @ v), 10)[:10]]

        np_qps, _ = timed(scan, q)
        allowed = set(sub_ids.tolist()).__contains__
        hn = None
        for ef in EFS:
            index.set_ef(ef)
            qps, res = timed(lambda v: index.knn_query(v, k=10, filter=allowed)[0][0], q)
            r = recall([r.tolist() for r in res], truth)
            if r >= 0.95:
                hn = {"ef": ef, "qps": qps, "recall": r}
                break
        best = max(np_qps, hn["qps"] if hn else 0.0)
        row = {"selectivity": sel, "matches": int(mask.sum()), "latentspace_qps": ls_qps, "latentspace_recall": ls_recall,
               "numpy_scan_qps": np_qps, "hnswlib_walk": hn, "ratio_to_better_plan": ls_qps / best}
        rows.append(row)
        print(json.dumps(row), flush=True)
    costs = col._storage._plan_costs
    out = {"n": len(x), "queries": len(q), "rows": rows,
           "learned": {"scan_ns_per_row": costs.scan_per_row * 1e9, "walk_us_at_full": costs.walk_at_full * 1e6}}
    print(f"{'selectivity':>11} {'matches':>8} {'latentspace':>12} {'recall':>7} {'numpy scan':>11} {'hnswlib walk':>13} "
          f"{'ef':>4} {'ratio to the better':>20}")
    for r in rows:
        hn = r["hnswlib_walk"] or {"qps": float("nan"), "ef": "-"}
        print(f"{r['selectivity']:>11.3f} {r['matches']:>8,} {r['latentspace_qps']:>12,.0f} {r['latentspace_recall']:>7.3f} "
              f"{r['numpy_scan_qps']:>11,.0f} {hn['qps']:>13,.0f} {hn['ef']:>4} {r['ratio_to_better_plan']:>20.2f}")
    print(f"learned: scan {out['learned']['scan_ns_per_row']:.1f} ns per row, walk {out['learned']['walk_us_at_full']:.1f} "
          "us per query at selectivity 1")
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=2) + "\n")
    store.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
