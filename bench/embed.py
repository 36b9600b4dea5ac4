"""Embedding speed: the default encoder against sentence-transformers called directly in fp32.

    python bench/embed.py [--n 2000] [--batch-size 32]

Same texts (standard library docstrings, truncated by the model at 256 tokens), same
machine, one run. Reports texts/s for sentence-transformers fp32 (the baseline), for
latentspace's default encoder in the precision it picks on this machine, and for the
other candidate paths measured by hand (bf16 weights), with the minimum and mean cosine to
the fp32 vectors over every text.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    import latentspace as ls
    from latentspace.data import docstring_items
    from latentspace.embed.precision import cpu_has_native_bf16
    from latentspace.embed.sentence_transformers import default_model_path

    texts = [it.text for it in docstring_items(limit=args.n)]
    path = str(default_model_path())
    st = SentenceTransformer(path, device="cpu")
    st.encode(texts[:64], batch_size=args.batch_size)

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return out, len(texts) / (time.perf_counter() - t0)

    ref, base_rate = timed(lambda: st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True))
    enc = ls.default_encoder(batch_size=args.batch_size)
    enc.encode_documents(texts[:64])
    ours, our_rate = timed(lambda: enc.encode_documents(texts))
    rows = [("sentence-transformers fp32 (baseline)", base_rate, 1.0, 1.0)]
    cos = (ref * ours).sum(1)
    rows.append((f"latentspace default_encoder ({enc.precision})", our_rate, float(cos.min()), float(cos.mean())))

    st16 = SentenceTransformer(path, device="cpu", model_kwargs={"torch_dtype": torch.bfloat16})
    st16.encode(texts[:64], batch_size=args.batch_size)
    v16, r16 = timed(lambda: st16.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                                         convert_to_numpy=False, convert_to_tensor=True).float().numpy())
    c16 = (ref * (v16 / np.linalg.norm(v16, axis=1, keepdims=True))).sum(1)
    rows.append(("bf16 weights (not used: min cosine 0.996 on DESIGN §11 set)", r16, float(c16.min()), float(c16.mean())))

    print(f"Embedding {len(texts):,} standard-library docstrings with all-MiniLM-L6-v2, batch {args.batch_size}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}.\n")
    print("| path | texts/s | vs baseline | min cosine to fp32 | mean cosine |")
    print("|---|---|---|---|---|")
    for name, rate, cmin, cmean in rows:
        print(f"| {name} | {rate:,.1f} | {rate / base_rate:.2f}x | {cmin:.6f} | {cmean:.6f} |")
    print(f"\nTarget: >= 2x the baseline at min cosine >= 0.9999: "
          f"{'met' if our_rate / base_rate >= 2 and cos.min() >= 0.9999 else 'NOT met'} "
          f"({our_rate / base_rate:.2f}x, {cos.min():.6f}).")


if __name__ == "__main__":
    main()
