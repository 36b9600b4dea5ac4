"""Hybrid search: which fusion, with which constant and weight, retrieves best? Measured.

    python bench/hybrid.py [--n 3000] [--json-out bench/hybrid-results.json]

Two real query -> document sets that nobody here wrote: the docstrings of the Python
standard library, and those of numpy, scipy, pandas and scikit-learn (the installed
versions are recorded). Each docstring with at least two sentences gives a pair: its first
sentence is the query, the rest of it the document to find (one relevant document per
query). Each set goes into a collection with the default model; every query is run once
through the vector side and once through BM25 (depth 100), and the fusions are computed
from those lists with the library's own functions: reciprocal rank fusion over a range
of constants and weights, and a convex combination of min-max scaled scores over a range
of weights. Reported: recall@10 (the document is in the top 10) and MRR@10 per set, and
the mean over the sets, which picks the default.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import sys
import tempfile
import time
from pathlib import Path

DEPTH = 100
RRF_KS = (1, 5, 10, 20, 40, 60, 100)
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(])")


def pairs_from(items, n: int) -> tuple[list[str], list[str]]:
    queries, docs, seen = [], [], set()
    for it in items:
        text = " ".join(it.text.split())
        parts = SENTENCE.split(text, maxsplit=1)
        if len(parts) < 2:
            continue
        q, rest = parts[0].strip(), parts[1].strip()
        if len(q) < 25 or len(rest) < 80 or q in seen:
            continue
        seen.add(q)
        queries.append(q)
        docs.append(rest[:1500])
    step = max(1, len(queries) // n)
    return queries[::step][:n], docs[::step][:n]


def package_items(packages: tuple[str, ...]):
    import sysconfig

    from latentspace.data.stdlib_docs import _dedupe

    root = Path(sysconfig.get_paths()["purelib"])
    items = []
    for p in packages:
        if (root / p).is_dir():
            items.extend(_docstrings_of(root, p))
    return _dedupe(items)


def _docstrings_of(root: Path, package: str):
    from latentspace.data import stdlib_docs

    # walk one package folder: its docstrings, module names relative to the site-packages root
    for it in stdlib_docs._docstrings(root / package, 40):
        yield stdlib_docs.Item(f"{package}.{it.id}", it.text, {**it.metadata, "package": package})


def metrics(ranked: list[list[int]], truth: list[int]) -> dict[str, float]:
    hit, rr = 0, 0.0
    for lst, t in zip(ranked, truth):
        top = lst[:10]
        if t in top:
            hit += 1
            rr += 1.0 / (top.index(t) + 1)
    return {"recall@10": round(hit / len(truth), 4), "mrr@10": round(rr / len(truth), 4)}


def run_set(name: str, queries: list[str], docs: list[str], enc, tmp: Path) -> dict:
    import latentspace as ls
    from latentspace.collections.fusion import fuse

    st = ls.open_store(tmp / name)
    col = st.create_collection("docs", encoder=enc)
    t0 = time.perf_counter()
    col.add([str(i) for i in range(len(docs))], documents=docs)
    embed_s = time.perf_counter() - t0
    vec = col.search_batch(queries, k=DEPTH, mode="vector")
    kw = [col.search(q, k=DEPTH, mode="keyword") for q in queries]
    truth = list(range(len(queries)))
    lists = [({"vector": [(int(h.id), h.score) for h in v], "keyword": [(int(h.id), h.score) for h in k]})
             for v, k in zip(vec, kw)]
    rows = {"vector only": metrics([[k for k, _ in s["vector"]] for s in lists], truth),
            "keyword only": metrics([[k for k, _ in s["keyword"]] for s in lists], truth)}
    for k0 in RRF_KS:
        for a in ALPHAS:
            rows[f"rrf k={k0} alpha={a}"] = metrics([[x for x, _, _ in fuse(s, a, "rrf", k0)] for s in lists], truth)
    for a in ALPHAS:
        rows[f"convex alpha={a}"] = metrics([[x for x, _, _ in fuse(s, a, "convex")] for s in lists], truth)
    st.close()
    return {"set": name, "queries": len(queries), "embed_seconds": round(embed_s, 1), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    import latentspace as ls
    from latentspace.data import docstring_items

    enc = ls.default_encoder()
    packages = ("numpy", "scipy", "pandas", "sklearn")
    versions = {}
    for p, dist in zip(packages, ("numpy", "scipy", "pandas", "scikit-learn")):
        try:
            versions[p] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    sets = {
        f"stdlib {sys.version.split()[0]}": pairs_from(docstring_items(), args.n),
        "numpy/scipy/pandas/sklearn": pairs_from(package_items(packages), args.n),
    }
    tmp = Path(tempfile.mkdtemp(prefix="ls-bench-hybrid-"))
    results = [run_set(name, q, d, enc, tmp) for name, (q, d) in sets.items()]
    names = list(results[0]["rows"])
    mean = {r: {m: round(sum(res["rows"][r][m] for res in results) / len(results), 4) for m in ("recall@10", "mrr@10")}
            for r in names}
    best = max((r for r in names if "only" not in r), key=lambda r: (mean[r]["mrr@10"], mean[r]["recall@10"]))
    out = {"sets": results, "mean": mean, "best": best, "versions": versions, "depth": DEPTH}
    width = max(len(r) for r in names)
    print(f"{'fusion':<{width}}  " + "  ".join(f"{res['set'][:26]:>26}" for res in results) + "  mean R@10 / MRR@10")
    for r in names:
        cells = "  ".join(f"{res['rows'][r]['recall@10']:>12.3f} / {res['rows'][r]['mrr@10']:.3f}" for res in results)
        print(f"{r:<{width}}  {cells}  {mean[r]['recall@10']:.3f} / {mean[r]['mrr@10']:.3f}")
    print(f"best by mean MRR@10: {best}")
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
