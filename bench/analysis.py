"""Analysis benchmark: time and peak memory of each diagnostic at n = 10k, 50k, 100k (d = 384),
estimates compared with scikit-dimension where it installs, and alignment on real spaces.

    python bench/analysis.py [--sizes 10000,50000,100000]

Data: the cached real MiniLM vectors of docstring paragraphs (bench/search.py's set).
No function builds an n x n matrix: kNN runs in 256-row blocks up to 20,000 points and
through hnswlib above; distance concentration uses 1,000 sampled queries in 256-row
blocks; RBF CKA samples 5,000 points (a 5,000 x 5,000 Gram, 200 MB, is the largest matrix).
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def measure(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, secs, peak


def main() -> None:
    from search import load

    from latentspace.analysis import (
        Aligner,
        distance_concentration,
        hubness,
        isotropy,
        knn,
        linear_cka,
        mle_dimension,
        norm_stats,
        retrieval_precision,
        twonn_dimension,
    )

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,50000,100000")
    args = ap.parse_args()
    x_all, _ = load(100_000, 1000)
    x_all = x_all.astype(np.float64)
    print("| n | kNN k=20 s | concentration s | hubness s | isotropy s | TwoNN s | MLE s | norms s | peak MB (max) |"
          " TwoNN | MLE | hubness skew |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in [int(s) for s in args.sizes.split(",")]:
        x = x_all[:n]
        nb, t_knn, m_knn = measure(lambda: knn(x, 20))
        conc, t_c, m_c = measure(lambda: distance_concentration(x))
        hub, t_h, m_h = measure(lambda: hubness(x, 10, neighbors=nb))
        iso, t_i, m_i = measure(lambda: isotropy(x))
        two, t_t, m_t = measure(lambda: twonn_dimension(x, neighbors=(nb[0][:, :2], nb[1][:, :2])))
        mle, t_m, m_m = measure(lambda: mle_dimension(x, 20, neighbors=nb))
        _, t_n, m_n = measure(lambda: norm_stats(x))
        peak = max(m_knn, m_c, m_h, m_i, m_t, m_m, m_n)
        print(f"| {n:,} | {t_knn:.1f} | {t_c:.1f} | {t_h:.2f} | {t_i:.1f} | {t_t:.2f} | {t_m:.2f} | {t_n:.2f} | "
              f"{peak:,.0f} | {two:.1f} | {mle:.1f} | {hub['k_occurrence_skewness']:.2f} |", flush=True)

    # estimates against scikit-dimension's implementations on the same 10,000 points
    try:
        import skdim

        x = x_all[:10_000]
        ours_two = twonn_dimension(x)
        ours_mle = mle_dimension(x, 20)
        theirs_two = skdim.id.TwoNN().fit(x).dimension_
        theirs_mle = skdim.id.MLE(K=20).fit(x).dimension_
        print(f"\nscikit-dimension {skdim.__version__ if hasattr(skdim, '__version__') else ''} on 10,000 points: "
              f"TwoNN ours {ours_two:.2f} vs skdim {theirs_two:.2f}; MLE(k=20) ours {ours_mle:.2f} vs skdim {theirs_mle:.2f}")
    except Exception as exc:  # not installable here: say so
        print(f"\nscikit-dimension comparison skipped: {type(exc).__name__}: {exc}")

    # alignment on real data: MiniLM (mean pooling) vs the same network with CLS pooling, a different space
    from latentspace.data import docstring_items
    from latentspace.embed import default_encoder
    from latentspace.embed.transformers import TransformersEncoder
    from latentspace.embed.sentence_transformers import default_model_path

    texts = [it.text for it in docstring_items(limit=4000)]
    a = default_encoder().encode_documents(texts)
    b = TransformersEncoder(str(default_model_path()), pooling="cls").encode_documents(texts)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    tr, te = order[:3000], order[3000:]
    q, _ = np.linalg.qr(rng.normal(size=(384, 384)))
    rot = a @ q + 0.02 * rng.normal(size=a.shape)
    print("\n| source -> target | anchors | held-out | P@1 NN before | P@1 NN after | P@1 CSLS after | linear CKA |")
    print("|---|---|---|---|---|---|---|")
    for name, src, tgt in (("MiniLM mean -> rotated + noised copy", a, rot), ("MiniLM CLS -> MiniLM mean", b, a)):
        before = retrieval_precision(src[te], tgt[te])
        for method in ("procrustes", "lstsq"):
            after = Aligner(method).fit(src[tr], tgt[tr]).evaluate(src[te], tgt[te])
            print(f"| {name} ({method}) | {len(tr):,} | {len(te):,} | {before['p_at_1_nn']:.3f} | "
                  f"{after['p_at_1_nn']:.3f} | {after['p_at_1_csls']:.3f} | {linear_cka(src, tgt):.3f} |", flush=True)


if __name__ == "__main__":
    main()
