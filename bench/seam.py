"""Search speed before and after a change, in one run: two checkouts timed in alternation.

    python bench/seam.py --before 75bc5b0 [--rounds 5] [--n 100000] [--json-out bench/seam-results.json]

Made for the storage seam (issue 14: "single and batch QPS within 3% of the figures before
the refactor, same run"). ``--before`` is checked out into a temporary git worktree; one
store of the bench's real MiniLM vectors is built once (by the current code) and copied for
each side. Then, round after round, a fresh process of each side opens its copy and times,
in alternation with raw hnswlib on a copy of the very same index file loaded beside it (twice:
as hnswlib comes, and given the huge pages latentspace asks for, see
latentspace/storage/hugepages.py): single queries (k=10, one at a time) and one batch of all
queries. On a shared VM the
machine's speed drifts between processes, so each side's figure is its ratio to raw hnswlib
timed in the same process; the verdict compares the medians of those ratios, and reports the
raw QPS too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time, glob, importlib.util
import numpy as np, hnswlib
import latentspace as ls
store_dir, qfile, reps, hp_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
q = np.load(qfile)
store = ls.open_store(store_dir)
col = store.get_collection("v")
col.search(vector=q[0], k=10)  # loads the index
try:  # the code before huge pages has none to wait for
    from latentspace.storage.hugepages import wait_collapsed
    wait_collapsed(300)
except ImportError:
    pass
spec = importlib.util.spec_from_file_location("bench_hugepages", hp_file)  # the current code's, for raw-huge
hp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hp)
index_file = sorted(glob.glob(store_dir + "/idx-*.hnsw"))[-1]
raw = hnswlib.Index(space="cosine", dim=q.shape[1])
raw.load_index(index_file)
raw.set_ef(64)
raw_huge = hnswlib.Index(space="cosine", dim=q.shape[1])  # raw hnswlib given the same huge pages
with hp.NewMemory() as new:
    raw_huge.load_index(index_file)
hp.advise(new.regions)
hp.wait_collapsed(300)
raw_huge.set_ef(64)
fns = {
    "single": {"ls": lambda: [col.search(vector=v, k=10) for v in q],
               "raw": lambda: [raw.knn_query(v, k=10, num_threads=1) for v in q],
               "raw_huge": lambda: [raw_huge.knn_query(v, k=10, num_threads=1) for v in q]},
    "batch": {"ls": lambda: col.search_batch(vectors=q, k=10), "raw": lambda: raw.knn_query(q, k=10),
              "raw_huge": lambda: raw_huge.knn_query(q, k=10)},
}
out = {}
for name, fns_of in fns.items():
    best = {key: float("inf") for key in fns_of}
    for key, fn in fns_of.items():
        fn()  # warm
    for _ in range(reps):
        for key, fn in fns_of.items():
            t0 = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - t0)
    out[name] = {"qps": len(q) / best["ls"], "raw_qps": len(q) / best["raw"], "ratio": best["raw"] / best["ls"],
                 "raw_huge_qps": len(q) / best["raw_huge"], "ratio_huge": best["raw_huge"] / best["ls"]}
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="git ref of the code before the change")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5, help="timed passes per process (best kept)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--vectors", type=Path, help="a .npy of base vectors to use instead of embedding docstrings")
    ap.add_argument("--query-vectors", type=Path, help="a .npy of query vectors (with --vectors)")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    import numpy as np

    import latentspace as ls
    from latentspace.data.vectors import real_vectors

    work = Path(tempfile.mkdtemp(prefix="ls-bench-seam-"))
    before_tree = work / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before_tree), args.before],
                   check=True, capture_output=True)
    try:
        if args.vectors:  # the installed packages' docstrings change with what is installed: reuse vectors
            x, q = np.load(args.vectors)[: args.n], np.load(args.query_vectors)
        else:
            _, x, _, q = real_vectors(args.n, args.queries, progress=True)
        q = np.ascontiguousarray(q[: args.queries], np.float32)
        np.save(work / "q.npy", q)
        built = work / "built"
        store = ls.open_store(built)
        col = store.create_collection("v", space=ls.SpaceSpec(model="sentence-transformers/all-MiniLM-L6-v2", dim=384))
        for s in range(0, len(x), 20_000):
            col.add([str(i) for i in range(s, min(s + 20_000, len(x)))], vectors=x[s : s + 20_000],
                    metadatas=[{"b": i % 1000} for i in range(s, min(s + 20_000, len(x)))])
        col.flush()
        store.close()
        sides = {"before": before_tree, "after": ROOT}
        results: dict[str, list[dict]] = {side: [] for side in sides}
        for side in sides:
            shutil.copytree(built, work / side / "store")
        for r in range(args.rounds):
            for side, tree in sides.items():
                env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                       "HOME": str(Path.home())}
                proc = subprocess.run([sys.executable, "-c", WORKER, str(work / side / "store"), str(work / "q.npy"),
                                       str(args.reps), str(ROOT / "latentspace" / "storage" / "hugepages.py")],
                                      env=env, capture_output=True, text=True, cwd=work)
                if proc.returncode:
                    raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
                results[side].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1} {side}: " + ", ".join(
                    f"{m} {results[side][-1][m]['qps']:,.0f} q/s ({results[side][-1][m]['ratio']:.3f}x raw, "
                    f"{results[side][-1][m]['ratio_huge']:.3f}x raw on huge pages)"
                    for m in ("single", "batch")), flush=True)
        summary = {}
        for m in ("single", "batch"):
            med = {side: statistics.median(x[m]["ratio"] for x in results[side]) for side in sides}
            huge = {side: statistics.median(x[m]["ratio_huge"] for x in results[side]) for side in sides}
            qps = {side: statistics.median(x[m]["qps"] for x in results[side]) for side in sides}
            summary[m] = {"ratio_before": med["before"], "ratio_after": med["after"],
                          "after_over_before": med["after"] / med["before"],
                          "ratio_huge_before": huge["before"], "ratio_huge_after": huge["after"],
                          "qps_before": qps["before"], "qps_after": qps["after"]}
        print("\n(raw: hnswlib as it comes, on 4 KiB pages; raw-huge: the same index given the huge pages\n"
              " latentspace asks for, so that the ratio to it is what the wrapper costs)")
        print(f"{'':>7} {'before / raw':>13} {'after / raw':>12} {'after / before':>15} {'before / raw-huge':>18} "
              f"{'after / raw-huge':>17} {'QPS before':>11} {'QPS after':>10}")
        for m, s in summary.items():
            print(f"{m:>7} {s['ratio_before']:>13.3f} {s['ratio_after']:>12.3f} {s['after_over_before']:>15.3f} "
                  f"{s['ratio_huge_before']:>18.3f} {s['ratio_huge_after']:>17.3f} "
                  f"{s['qps_before']:>11,.0f} {s['qps_after']:>10,.0f}")
        if args.json_out:
            args.json_out.write_text(json.dumps({"before": args.before, "n": args.n, "queries": len(q),
                                                 "rounds": results, "summary": summary,
                                                 "date": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before_tree)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
