"""Fine-tuning MiniLM on real pairs: held-out retrieval before and after, MNRL and Matryoshka,
on two pair sets; and SetFit-style pairs from labels, kNN and linear-probe accuracy.

    python bench/finetune.py [--pairs 2000] [--threads 2] [--only stdlib,scientific,labels]
                             [--losses mnrl,matryoshka] [--epochs 1] [--lr LR] [--batch-size 32] [--eval-against all]
                             [--label-loss triplet] [--label-epochs 1] [--label-lr 5e-5] [--per-text 1]
                             [--json-out bench/finetune-results.json]

Pair sets (first sentence of a docstring -> the rest of it, at least 20 / 60 chars, cut at 400):
``stdlib``: the Python standard library's docstrings; ``scientific``: the docstrings of the
installed numpy, scipy, pandas and scikit-learn (their versions are recorded). Each set: up
to ``--pairs`` pairs in a fixed even spread, 20% held out (seed 0); one epoch, batch 32, the
library's learning rate for the loss (1e-4), through ``latentspace.embed.finetune`` (sentence-transformers' trainer). Retrieval:
each held-out first sentence finds its docstring's rest among every rest of the set
(``--eval-against all``: 2,000 candidates, the training ones too) or among the held-out
rests only (``held_out``: 400). Labels: docstrings of seven standard-library packages (texts
cut at 300 chars), 100 per package to train and 80 per package to test; ``--label-loss
triplet``: the (text, package) rows with a batch triplet loss, batches grouped by
label (batch-hard soft-margin); ``cosine``: SetFit-style pairs (``--per-text`` same-label and other-label pairs per
text, CosineSimilarityLoss); kNN (k=10, cosine) and logistic-regression accuracy on the
test texts, before and after (``latentspace.embed.finetune.label_scores``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

SCIENTIFIC = ("numpy", "scipy", "pandas", "sklearn")
LABEL_PACKAGES = ("tkinter", "distutils", "asyncio", "email", "importlib", "xml", "logging")
_SENTENCE = re.compile(r"(.+?[.!?])(\s+|$)", re.DOTALL)


def split_docstring(text: str) -> tuple[str, str] | None:
    """(first sentence, the rest) of a docstring's summary, numpydoc sections left out."""
    body = re.split(r"\n\s*(Parameters|Returns|Examples|See Also|Notes|Attributes|Raises)\s*\n\s*-{3,}", text)[0]
    m = _SENTENCE.match(body.strip())
    if not m:
        return None
    first, rest = " ".join(m.group(1).split()), " ".join(body.strip()[m.end():].split())
    if len(first) < 20 or len(rest) < 60:
        return None
    return first, rest[:400]


def pair_set(items, limit: int) -> list[tuple[str, str]]:
    pairs, seen = [], set()
    for it in items:
        p = split_docstring(it.text)
        if p and p[0] not in seen and p[1] not in seen:
            seen.update(p)
            pairs.append(p)
    step = max(1, len(pairs) / limit)
    return [pairs[int(i * step)] for i in range(min(limit, len(pairs)))]


def scientific_items():
    import sysconfig

    from latentspace.data.stdlib_docs import _dedupe, _docstrings

    purelib = Path(sysconfig.get_paths()["purelib"])
    items = []
    for pkg in SCIENTIFIC:
        items.extend(_dedupe(_docstrings(purelib / pkg, 40)))
    return _dedupe(items)


def labelled(per_train: int = 100, per_test: int = 80):
    from latentspace.data.stdlib_docs import docstring_items

    by_pkg: dict[str, list[str]] = {p: [] for p in LABEL_PACKAGES}
    for it in docstring_items():
        pkg = it.metadata["package"]
        if pkg in by_pkg:
            by_pkg[pkg].append(" ".join(it.text.split())[:300])
    train, test = [], []
    for pkg, texts in by_pkg.items():
        step = max(1, len(texts) / (per_train + per_test))
        spread = [texts[int(i * step)] for i in range(min(per_train + per_test, len(texts)))]
        train += [(t, pkg) for t in spread[:per_train]]
        test += [(t, pkg) for t in spread[per_train:]]
    return train, test


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="stdlib,scientific,labels")
    ap.add_argument("--losses", default="mnrl,matryoshka")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=None, help="default: the library's for the loss")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-against", default="all", choices=("all", "held_out"))
    ap.add_argument("--label-loss", default="triplet", choices=("triplet", "cosine"))
    ap.add_argument("--label-epochs", type=int, default=1)
    ap.add_argument("--label-lr", type=float, default=5e-5)
    ap.add_argument("--per-text", type=int, default=1, help="labels, cosine: same- and other-label pairs per text")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    import latentspace as ls
    from latentspace.data.stdlib_docs import docstring_items
    from latentspace.embed.finetune import data_sha256, finetune, label_scores, pairs_from_labels

    base = ls.default_encoder(precision="fp32")
    work = Path(tempfile.mkdtemp(prefix="ls-bench-ft-"))
    parts = args.only.split(",")
    out: dict = {"python": sys.version.split()[0], "threads": args.threads, "epochs": args.epochs, "lr": args.lr,
                 "batch_size": args.batch_size,
                 "eval_against": args.eval_against,
                 "packages": {p: metadata.version(p if p != "sklearn" else "scikit-learn") for p in SCIENTIFIC},
                 "sentence_transformers": metadata.version("sentence-transformers"), "runs": {}}
    sets = {}
    if "stdlib" in parts:
        sets["stdlib"] = pair_set(docstring_items(), args.pairs)
    if "scientific" in parts:
        sets["scientific"] = pair_set(scientific_items(), args.pairs)
    for name, pairs in sets.items():
        for loss in args.losses.split(","):
            t0 = time.perf_counter()
            res = finetune(base, pairs, work / f"{name}-{loss}", loss=loss,
                           matryoshka_dims=[384, 256, 128, 64] if loss == "matryoshka" else None,
                           threads=args.threads, held_out=0.2, progress=False, epochs=args.epochs,
                           learning_rate=args.lr, eval_against=args.eval_against, batch_size=args.batch_size)
            run = {"pairs": len(pairs), "train": res.train_pairs, "held_out": res.held_out,
                   "data_sha256": data_sha256(pairs), "before": res.before, "after": res.after,
                   "seconds": time.perf_counter() - t0}
            out["runs"][f"{name}/{loss}"] = run
            print(json.dumps({f"{name}/{loss}": run}), flush=True)
    if "labels" in parts:
        train, test = labelled()
        t0 = time.perf_counter()
        if args.label_loss == "triplet":
            res = finetune(base, train, work / "labels", loss="triplet", held_out=test, threads=args.threads,
                           progress=False, epochs=args.label_epochs, learning_rate=args.label_lr)
            before, after, n_pairs = res.before, res.after, len(train)
        else:
            before = label_scores(base, train, test)
            pairs = pairs_from_labels([t for t, _ in train], [y for _, y in train], per_text=args.per_text, seed=0)
            res = finetune(base, pairs, work / "labels", loss="cosine", held_out=0.0, threads=args.threads,
                           progress=False, epochs=args.label_epochs, learning_rate=args.label_lr)
            after, n_pairs = label_scores(res.encoder, train, test), len(pairs)
        run = {"loss": args.label_loss, "epochs": args.label_epochs, "lr": args.label_lr, "train_texts": len(train),
               "test_texts": len(test), "pairs": n_pairs, "before": before, "after": after,
               "seconds": time.perf_counter() - t0}
        out["runs"][f"labels/{args.label_loss}"] = run
        print(json.dumps({"labels": run}), flush=True)
    print(f"\n{'run':<24} {'metric':<16} {'before':>8} {'after':>8}")
    for name, run in out["runs"].items():
        for key in run["before"]:
            print(f"{name:<24} {key:<16} {run['before'][key]:>8.3f} {run['after'][key]:>8.3f}")
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
