"""Applications on real data nobody here wrote; prints Markdown tables for bench/RESULTS.md.

    python bench/apps.py [--only retrieval,cluster,classify,zeroshot,dedup,matryoshka,scaling,clip,recommend]

- retrieval: standard-library docstrings with at least two sentences; the first sentence is
  the query, the rest of the docstring (stored alone) the one relevant record. Vector,
  keyword (BM25), hybrid (RRF) and RAG context (hybrid + MMR, 8 passages) compared.
- cluster: digits (64-d pixels) k-means and HDBSCAN, NMI/ARI against the true digit.
- classify: digits, fixed split (every 4th held out): kNN vote and logistic probe.
- zeroshot: docstrings of 12 packages, labelled by their package, against one-line descriptions.
- dedup: real MiniLM vectors with injected near-copies; pairs found vs an exact scan.
- matryoshka: recall@10 of truncated vectors and of the funnel against full-vector exact search.
- scaling: dedup, k-means, HDBSCAN (graph), kNN and LOF outliers at 10k / 30k / 100k records,
  with the fitted log-log exponent; LOF and dedup also timed against the exact references.
- clip: tiny CLIP trained here on digits: text -> image accuracy, image -> image P@10.
- recommend: digits, both strategies, precision@10 of the examples' label.
"""

from __future__ import annotations

import argparse
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np

import latentspace as ls
from latentspace.apps import clustering as C
from latentspace.apps import rag
from latentspace.apps.classify import LinearProbe, ZeroShotClassifier, knn_classify
from latentspace.apps.dedup import find_duplicates
from latentspace.apps.matryoshka import MatryoshkaFunnel
from latentspace.apps.outliers import outlier_scores
from latentspace.apps.recommendation import recommend

DIGITS = ls.SpaceSpec(model="sklearn/load_digits-pixels", dim=64, normalize=False, metric="l2", modality="vector")


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    print()


def store():
    return ls.open_store(Path(tempfile.mkdtemp()) / "s")


def digits_col(st):
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16).astype(np.float32), d.target
    col = st.create_collection("digits", space=DIGITS)
    col.add([f"d{i}" for i in range(len(x))], vectors=x,
            metadatas=[{"label": int(v), "split": "test" if i % 4 == 0 else "train"} for i, v in enumerate(y)])
    return col, x, y


# -- retrieval ---------------------------------------------------------------------------------
def retrieval(enc):
    from latentspace.data.stdlib_docs import docstring_items

    pairs = []
    for it in docstring_items():
        parts = re.split(r"(?<=[.!?])\s+", it.text.strip(), maxsplit=1)
        if len(parts) == 2 and len(parts[0]) >= 20 and len(parts[1]) >= 40:
            pairs.append((parts[0], parts[1]))
    st = store()
    col = st.create_collection("rest", encoder=enc)
    t = time.perf_counter()
    col.add([f"r{i}" for i in range(len(pairs))], documents=[p[1] for p in pairs])
    embed_s = time.perf_counter() - t
    queries = [p[0] for p in pairs]
    rng = np.random.default_rng(0)
    pick = rng.choice(len(pairs), min(1000, len(pairs)), replace=False)
    rows = []
    for mode in ("vector", "keyword", "hybrid"):
        hits = col.search_batch([queries[i] for i in pick], k=10, mode=mode)
        ranks = [next((j for j, h in enumerate(hs) if h.id == f"r{i}"), None) for hs, i in zip(hits, pick)]
        r1 = np.mean([r == 0 for r in ranks])
        r10 = np.mean([r is not None for r in ranks])
        mrr = np.mean([1 / (r + 1) if r is not None else 0 for r in ranks])
        rows.append((mode, f"{r1:.3f}", f"{r10:.3f}", f"{mrr:.3f}"))
    found, toks = 0, []
    for i in pick[:300]:
        ctx = rag.retrieve_context(col, queries[i], token_budget=800, k=8)
        found += any(s.id == f"r{i}" for s in ctx.sources)
        toks.append(ctx.tokens)
    print(f"{len(pairs):,} docstrings split into (first sentence -> rest); {len(pick)} queries; "
          f"embedding the {len(pairs):,} rests took {embed_s:.1f} s.\n")
    table(("mode", "recall@1", "recall@10", "MRR@10"), rows)
    print(f"RAG context (hybrid + MMR lambda 0.5, k=8, budget 800 tokens), 300 queries: the target is among the "
          f"cited passages for {found / 3:.1f}% of questions; mean context {np.mean(toks):.0f} tokens.\n")


# -- clustering --------------------------------------------------------------------------------
def clustering():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    col, x, y = digits_col(store())
    rows = []
    for label, method, kw, graph in [("k-means (k=10)", "kmeans", {"n_clusters": 10}, False),
                                     ("HDBSCAN (min size 15), features", "hdbscan", {"min_cluster_size": 15}, False),
                                     ("HDBSCAN (min size 15), kNN graph", "hdbscan", {"min_cluster_size": 15}, True),
                                     ("HDBSCAN (min size 15) after UMAP to 5-d", "hdbscan",
                                      {"min_cluster_size": 15, "reduce_dim": 5}, False)]:
        saved = C.GRAPH_ABOVE
        C.GRAPH_ABOVE = 100 if graph else saved
        t = time.perf_counter()
        res = C.cluster(col, method, **kw)
        s = time.perf_counter() - t
        C.GRAPH_ABOVE = saved
        truth = [int(i[1:]) for i in res.ids]
        keep = res.labels >= 0
        rows.append((label, len(res.clusters), f"{res.noise / len(res.ids):.1%}",
                     f"{normalized_mutual_info_score(y[truth], res.labels):.3f}",
                     f"{normalized_mutual_info_score(y[truth][keep], res.labels[keep]):.3f}",
                     f"{adjusted_rand_score(y[truth], res.labels):.3f}", f"{s:.2f}"))
    table(("digits (1,797 x 64)", "clusters", "noise", "NMI", "NMI (non-noise)", "ARI", "s"), rows)


# -- classification ----------------------------------------------------------------------------
def classification():
    col, x, y = digits_col(store())
    test = col.get(where={"split": "test"}, include_vectors=True)
    xt = np.stack([r.vector for r in test])
    rows = []
    for k in (1, 5, 10):
        p = knn_classify(col, vectors=xt, space=DIGITS, k=k, where={"split": "train"})
        rows.append((f"kNN vote, k={k}", f"{np.mean([a.label == r.metadata['label'] for a, r in zip(p, test)]):.3f}"))
    t = time.perf_counter()
    probe = LinearProbe("label").fit(col, where={"split": "train"})
    fit_s = time.perf_counter() - t
    rows.append((f"logistic probe (fit {fit_s:.2f} s)", f"{probe.score(col, where={'split': 'test'}):.3f}"))
    print("Digits, 1,347 train / 450 held out (every 4th record):\n")
    table(("classifier", "held-out accuracy"), rows)


def zeroshot(enc):
    from latentspace.data.topics import topic_texts

    texts, labels, desc = topic_texts(None)
    rows = []
    for name, labels_arg in [("descriptions", desc), ("package names only", list(desc))]:
        zs = ZeroShotClassifier(enc, labels_arg)
        pred = zs.predict(texts)
        rows.append((name, f"{np.mean([p.label == y for p, y in zip(pred, labels)]):.3f}"))
    st = store()
    col = st.create_collection("t", encoder=enc)
    col.add([f"t{i}" for i in range(len(texts))], documents=texts,
            metadatas=[{"package": p, "split": "test" if i % 4 == 0 else "train"} for i, p in enumerate(labels)])
    probe = LinearProbe("package").fit(col, where={"split": "train"})
    rows.append(("(supervised probe, 75% of the labels)", f"{probe.score(col, where={'split': 'test'}):.3f}"))
    counts = {p: labels.count(p) for p in desc}
    print(f"{len(texts):,} docstrings of {len(desc)} packages ({min(counts.values())}-{max(counts.values())} each; "
          f"chance {1 / len(desc):.3f}, majority {max(counts.values()) / len(texts):.3f}):\n")
    table(("zero-shot labels from", "accuracy"), rows)


# -- dedup -------------------------------------------------------------------------------------
def injected(n, vecs, n_dups=1000, noise=0.003, seed=0):
    rng = np.random.default_rng(seed)
    src = rng.choice(n, n_dups, replace=False)
    d = vecs[src] + rng.normal(0, noise, (n_dups, vecs.shape[1])).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return src, d


def dedup(real, sizes=(10_000, 30_000, 100_000)):
    texts, vecs, _, _ = real
    rows = []
    for n in sizes:
        st = store()
        col = st.create_collection("c", space=ls.default_encoder().spec)
        src, d = injected(n, vecs)
        col.add([f"p{i}" for i in range(n)], vectors=vecs[:n])
        col.add([f"dup{j}" for j in range(len(src))], vectors=d)
        col.flush()
        t = time.perf_counter()
        rep = find_duplicates(col, 0.97)
        s = time.perf_counter() - t
        where = {i: gi for gi, g in enumerate(rep.groups) for i in g.ids}
        rec = np.mean([where.get(f"dup{j}") is not None and where.get(f"dup{j}") == where.get(f"p{i}")
                       for j, i in enumerate(src)])
        ex_s, pair_recall = "-", "-"
        if n <= 30_000:
            t = time.perf_counter()
            ex = find_duplicates(col, 0.97, exact=True)
            ex_s = f"{time.perf_counter() - t:.1f}"
            pair_recall = f"{rep.pairs / ex.pairs:.4f}" if ex.pairs else "-"
        rows.append((f"{n + len(src):,}", f"{rec:.4f}", rep.pairs, pair_recall, f"{s:.1f}", ex_s))
        st.close()
    print("Real MiniLM vectors plus 1,000 injected near-copies (Gaussian noise 0.003 per value, cosine ~0.998), "
          "threshold 0.97:\n")
    table(("records", "injected copies found", "pairs >= 0.97", "pair recall vs exact scan", "ANN s",
           "exact scan s"), rows)


# -- matryoshka ----------------------------------------------------------------------------------
def matryoshka(real, enc, n=100_000):
    texts, vecs, _, qvecs = real
    vecs, q = vecs[:n], qvecs[:1000]
    truth = np.empty((len(q), 10), dtype=np.int64)
    for s in range(0, len(q), 100):
        truth[s:s + 100] = np.argsort(-(q[s:s + 100] @ vecs.T), axis=1)[:, :10]
    st = store()
    full = st.create_collection("docs", encoder=enc)
    for s in range(0, n, 20_000):
        full.add([f"p{i}" for i in range(s, min(n, s + 20_000))], vectors=vecs[s:s + 20_000], space=enc.spec)
    rows = [("384 (full)", "1.000", "-", "-")]
    for dim in (256, 128, 64, 32):
        t = time.perf_counter()
        f = MatryoshkaFunnel.build(full, dim)
        f.coarse.flush()
        build_s = time.perf_counter() - t
        from latentspace.embed.truncated import truncate

        xd, qd = truncate(vecs, enc.spec, dim), truncate(q, enc.spec, dim)
        trunc = np.empty_like(truth)
        for s in range(0, len(q), 100):
            trunc[s:s + 100] = np.argsort(-(qd[s:s + 100] @ xd.T), axis=1)[:, :10]
        r_trunc = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(trunc, truth)])
        cells = [f"{r_trunc:.3f}"]
        for cand in (100, 300):
            t = time.perf_counter()
            res = [f.search(vector=v, space=enc.spec, k=10, candidates=cand) for v in q]
            qps = len(q) / (time.perf_counter() - t)
            r = np.mean([len({int(h.id[1:]) for h in hs} & set(b)) / 10 for hs, b in zip(res, truth)])
            cells.append(f"{r:.3f} ({qps:,.0f} q/s)")
        rows.append((str(dim), *cells))
        print(f"  built {dim}-d coarse collection in {build_s:.1f} s", flush=True)
    print(f"\nall-MiniLM-L6-v2 (not Matryoshka-trained), {n:,} real docstring paragraphs, 1,000 held-out queries; "
          "recall@10 against exact search with the full 384-d vectors:\n")
    table(("dims", "truncated only (exact)", "funnel, 100 candidates", "funnel, 300 candidates"), rows)


# -- scaling -----------------------------------------------------------------------------------
def scaling(real, sizes=(10_000, 30_000, 100_000)):
    texts, vecs, _, _ = real
    times: dict[str, list[float]] = {}
    rows = []
    for n in sizes:
        st = store()
        col = st.create_collection("c", space=ls.default_encoder().spec)
        for s in range(0, n, 20_000):
            col.add([f"p{i}" for i in range(s, min(n, s + 20_000))], vectors=vecs[s:min(n, s + 20_000)],
                    documents=texts[s:min(n, s + 20_000)])
        col.flush()
        col._storage.index()
        row = [f"{n:,}"]
        for name, fn in [("dedup (0.95)", lambda: find_duplicates(col, 0.95)),
                         ("k-means k=50", lambda: C.cluster(col, "kmeans", n_clusters=50, n_terms=0)),
                         ("HDBSCAN graph", lambda: C.cluster(col, "hdbscan", min_cluster_size=25, n_terms=0)),
                         ("outliers kNN", lambda: outlier_scores(col, "knn")),
                         ("outliers LOF", lambda: outlier_scores(col, "lof"))]:
            t = time.perf_counter()
            fn()
            s = time.perf_counter() - t
            times.setdefault(name, []).append(s)
            row.append(f"{s:.1f}")
        if n <= 30_000:
            from sklearn.neighbors import LocalOutlierFactor

            t = time.perf_counter()
            LocalOutlierFactor(n_neighbors=10, metric="cosine", algorithm="brute").fit(vecs[:n])
            row.append(f"{time.perf_counter() - t:.1f}")
        else:
            row.append("-")
        rows.append(row)
        st.close()
    slope = ["exponent (log-log, 10k -> 100k)"]
    for name in times:
        ts = times[name]
        slope.append(f"{np.polyfit(np.log(sizes), np.log(ts), 1)[0]:.2f}")
    slope.append("-")
    rows.append(slope)
    print("Seconds on real MiniLM vectors of docstring paragraphs (the collection's HNSW index already built):\n")
    table(("records", *times.keys(), "scikit-learn LOF, brute force"), rows)


# -- clip ----------------------------------------------------------------------------------------
def clip():
    from sklearn.datasets import load_digits

    from latentspace.apps.images import add_images, search_images
    from latentspace.data.tiny_clip import build_tiny_clip, caption, train_tiny_clip

    d = load_digits()
    x, y = d.images / 16.0, d.target
    tr = np.arange(len(y)) % 4 != 0
    folder = build_tiny_clip(Path(tempfile.mkdtemp()) / "clip")
    t = time.perf_counter()
    train_tiny_clip(folder, x[tr], y[tr], steps=600)
    train_s = time.perf_counter() - t
    enc = ls.CLIPEncoder(str(folder))
    st = store()
    col = st.create_collection("digits", encoder=enc)
    test = np.flatnonzero(~tr)
    add_images(col, [f"i{i}" for i in test], list(x[test]), metadatas=[{"label": int(y[i])} for i in test])
    tv = enc.encode_queries([caption(i) for i in range(10)])
    iv = enc.encode_images(list(x[test]))
    acc = np.mean((iv @ tv.T).argmax(1) == y[test])
    p_text = np.mean([np.mean([h.metadata["label"] == dgt for h in search_images(col, text=caption(dgt), k=10)])
                      for dgt in range(10)])
    p_img = np.mean([np.mean([h.metadata["label"] == y[i] for h in search_images(col, image=x[i], k=11)[1:]])
                     for i in test[:200]])
    print(f"Tiny CLIP (2+2 layers, 16-d space) trained here for 600 steps on the 1,347 training digits "
          f"({train_s:.1f} s); scored on the 450 held-out digits:\n")
    table(("task", "score"), [("zero-shot: image -> nearest of the 10 captions", f"{acc:.3f}"),
                              ("text -> images, precision@10", f"{p_text:.3f}"),
                              ("image -> other images, precision@10 (200 queries)", f"{p_img:.3f}")])


def recommendation():
    col, x, y = digits_col(store())
    rng = np.random.default_rng(0)
    rows = []
    for strategy in ("average", "best_score"):
        single, mixed = [], []
        for _ in range(100):
            dgt = int(rng.integers(10))
            pos = [f"d{i}" for i in rng.choice(np.flatnonzero(y == dgt), 3, replace=False)]
            hits = recommend(col, pos, k=10, strategy=strategy)
            single.append(np.mean([y[int(h.id[1:])] == dgt for h in hits]))
            a, b = rng.choice(10, 2, replace=False)
            pos = [f"d{i}" for i in (*rng.choice(np.flatnonzero(y == a), 2, replace=False),
                                          *rng.choice(np.flatnonzero(y == b), 2, replace=False))]
            hits = recommend(col, pos, k=10, strategy=strategy)
            labs = [y[int(h.id[1:])] for h in hits]
            mixed.append(min(labs.count(a), labs.count(b)) >= 3)
        rows.append((strategy, f"{np.mean(single):.3f}", f"{np.mean(mixed):.2f}"))
    table(("strategy", "precision@10, 3 examples of one digit", "share of 2-digit example sets with >= 3 of each"),
          rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="retrieval,cluster,classify,zeroshot,recommend,clip,dedup,matryoshka,scaling")
    args = ap.parse_args()
    only = set(args.only.split(","))
    import torch

    print(f"latentspace {ls.__version__}, torch {torch.__version__}, {platform.machine()}, "
          f"{torch.get_num_threads()} threads\n")
    enc = ls.default_encoder() if only & {"retrieval", "zeroshot", "dedup", "matryoshka", "scaling"} else None
    real = None
    if only & {"dedup", "matryoshka", "scaling"}:
        from latentspace.data.vectors import real_vectors

        real = real_vectors(100_000, 1000, encoder=enc, progress=True)
    for name, fn in [("retrieval", lambda: retrieval(enc)), ("cluster", clustering), ("classify", classification),
                     ("zeroshot", lambda: zeroshot(enc)), ("recommend", recommendation), ("clip", clip),
                     ("dedup", lambda: dedup(real)), ("matryoshka", lambda: matryoshka(real, enc)),
                     ("scaling", lambda: scaling(real))]:
        if name in only:
            print(f"### {name}\n", flush=True)
            t = time.perf_counter()
            fn()
            print(f"({name}: {time.perf_counter() - t:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
