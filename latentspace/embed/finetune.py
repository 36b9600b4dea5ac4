"""Contrastive fine-tuning of a sentence-transformers encoder on your own pairs: a new space.

``finetune(encoder, pairs, "model_dir")`` trains a copy of the encoder's model with
sentence-transformers' ``SentenceTransformerTrainer``: MultipleNegativesRankingLoss (each
query against its passage and every other passage of the batch, which a no-duplicates
sampler keeps distinct; a third column of hard negatives is used when given), or that loss
inside MatryoshkaLoss so that truncated vectors stay good. A held-out split is scored
before and after (recall@10, nDCG@10, MRR@10 with sentence-transformers' retrieval
evaluator; at every Matryoshka dimension too). The result is saved as safetensors and
loaded as a new encoder: new weights, so a new SpaceSpec, whose metadata records the base
model, the base weights and the training data's sha256 (``latentspace_training.json`` in
the folder). Collections move to it by migration (``col.migrate(result.encoder)``).

From labels: ``finetune(encoder, [(text, label), ...], loss="triplet")`` trains with the
batch-hard soft-margin triplet loss over batches grouped by label (each text against its
farthest same-label text and its nearest other-label text in the batch; measured best of
the batch triplet losses in bench/finetune.py) and scores the held-out texts by
kNN and linear-probe accuracy (``label_scores``) before and after; ``pairs_from_labels``
makes SetFit-style pairs (same label: 1.0, other label: 0.0) for ``loss="cosine"``.
``pip install 'latentspace[train]'``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..core.errors import BackendUnavailableError, InvalidInputError
from ..core.validation import check_choice, check_float, check_int

Loss = Literal["mnrl", "matryoshka", "cosine", "triplet"]
LOSSES = ("mnrl", "matryoshka", "cosine", "triplet")
PROVENANCE = "latentspace_training.json"
#: learning rates by loss, measured with MiniLM in bench/finetune.py (bench/RESULTS.md): for
#: MNRL 1e-4 beat sentence-transformers' 2e-5 (held-out recall@10 0.877 against 0.865 on
#: stdlib pairs); for the batch-hard triplet loss 5e-5 (kNN accuracy 0.796) beat 2e-5 (0.777)
#: in one epoch; SetFit-style cosine pairs gained nothing at either, 2e-5 kept
LEARNING_RATES = {"mnrl": 1e-4, "matryoshka": 1e-4, "triplet": 5e-5, "cosine": 2e-5}
K = 10


def _st():
    try:
        import datasets  # noqa: F401
        import sentence_transformers
    except ImportError as exc:
        raise BackendUnavailableError(f"Fine-tuning needs sentence-transformers, datasets and accelerate ({exc}): "
                                      "pip install 'latentspace[train]'") from None
    return sentence_transformers


@dataclass
class FinetuneResult:
    """What fine-tuning made: the new encoder (a new space), where it is saved, and the
    held-out scores before and after (``recall@10``, ``ndcg@10``, ``mrr@10``; with
    Matryoshka also ``recall@10@64`` etc.)."""

    encoder: Any
    path: Path
    before: dict[str, float]
    after: dict[str, float]
    train_pairs: int
    held_out: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self) | {"path": str(self.path), "fingerprint": self.encoder.spec.fingerprint}
        out.pop("encoder")
        return out


# -- pairs ---------------------------------------------------------------------------------
def read_pairs(source: Any, *, query_field: str = "query", passage_field: str = "passage",
               negative_field: str = "negative") -> list[tuple[str, ...]]:
    """(query, passage[, negative]) tuples from a list of tuples or dicts, or a JSONL, CSV
    or Parquet file with those fields."""
    if isinstance(source, (str, Path)):
        from ..core.records import read_rows

        source = list(read_rows(source))
    if isinstance(source, (str, bytes, Mapping)) or not isinstance(source, Sequence):
        raise InvalidInputError("Pairs are (query, passage[, negative]) tuples, dicts, or a JSONL/CSV/Parquet file.")
    out = []
    for n, row in enumerate(source):
        if isinstance(row, Mapping):
            if query_field not in row or passage_field not in row:
                raise InvalidInputError(f"pair {n} lacks {query_field!r} or {passage_field!r} (fields: "
                                        f"{sorted(row)[:10]}); name them with query_field= / passage_field=.")
            row = (row[query_field], row[passage_field]) + ((row[negative_field],) if row.get(negative_field) else ())
        out.append(tuple(row) if isinstance(row, (tuple, list)) else row)
    return out


def pairs_from_collection(col, query_field: str) -> list[tuple[str, str]]:
    """(query, document) pairs from a collection whose records hold their query in
    ``metadata[query_field]`` (records without one are skipped)."""
    pairs = [(r.metadata[query_field], r.document) for r in col.get()
             if isinstance(r.metadata.get(query_field), str) and r.document]
    if not pairs:
        raise InvalidInputError(f"No record of collection {col.name!r} has both a document and a string "
                                f"metadata[{query_field!r}].")
    return pairs


def labelled_from_collection(col, label_key: str) -> list[tuple[str, Any]]:
    """(document, label) rows from a collection whose records hold a string or integer label
    in ``metadata[label_key]`` (records without one are skipped); for ``loss="triplet"``."""
    rows = [(r.document, r.metadata[label_key]) for r in col.get()
            if r.document and isinstance(r.metadata.get(label_key), (str, int))
            and not isinstance(r.metadata.get(label_key), bool)]
    if not rows:
        keys = sorted({k for r in col.get(limit=1000) for k in r.metadata})
        raise InvalidInputError(f"No record of collection {col.name!r} has both a document and a label in "
                                f"metadata[{label_key!r}] (metadata keys present: {keys[:20]}).")
    return rows


def pairs_from_labels(texts: Sequence[str], labels: Sequence[Any], *, per_text: int = 2,
                      seed: int = 0) -> list[tuple[str, str, float]]:
    """SetFit-style pairs: for each text, ``per_text`` others with its label (1.0) and as
    many with another label (0.0); for ``loss="cosine"``."""
    check_int(per_text, "per_text", "pairs_from_labels", 1, 1000)
    if len(texts) != len(labels):
        raise InvalidInputError(f"{len(texts)} texts but {len(labels)} labels.")
    by_label: dict[Any, list[int]] = {}
    for i, y in enumerate(labels):
        by_label.setdefault(y, []).append(i)
    if len(by_label) < 2:
        raise InvalidInputError("Labelled pairs need at least two labels.")
    rng = random.Random(seed)
    others = {y: [j for j in range(len(texts)) if labels[j] != y] for y in by_label}
    out: dict[tuple, None] = {}  # ordered, and each pair once
    for i, y in enumerate(labels):
        for pool, sim in ((by_label[y], 1.0), (others[y], 0.0)):
            picked = [j for j in rng.sample(pool, min(per_text + 1, len(pool))) if texts[j] != texts[i]]
            for j in picked[:per_text]:
                out.setdefault((texts[i], texts[j], sim), None)
    return list(out)


def _check_pairs(pairs: list, loss: str) -> list[tuple]:
    checked, seen, dups = [], set(), []
    if loss == "triplet":
        for n, p in enumerate(pairs):
            if not isinstance(p, tuple) or len(p) != 2 or not isinstance(p[0], str) or not p[0].strip():
                raise InvalidInputError(f"row {n}: loss='triplet' takes (text, label) with a non-empty text, got {p!r}.")
            if isinstance(p[1], bool) or not isinstance(p[1], (str, int)):
                raise InvalidInputError(f"row {n}: a label is a string or an integer, got {p[1]!r}.")
            if p in seen:
                dups.append(n)
            seen.add(p)
            checked.append(p)
        if dups:
            raise InvalidInputError(f"{len(dups)} duplicate row(s), e.g. row {dups[0]}: {checked[dups[0]]!r}.")
        if len({p[1] for p in checked}) < 2:
            raise InvalidInputError("loss='triplet' needs at least two labels (a label's negatives are the others).")
        return checked
    for n, p in enumerate(pairs):
        if not isinstance(p, tuple) or len(p) not in (2, 3):
            raise InvalidInputError(f"pair {n}: expected (query, passage) or (query, passage, negative), got {p!r}.")
        texts = p if loss != "cosine" else p[:2]
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise InvalidInputError(f"pair {n} has an empty or non-text member: {p!r}.")
        if loss == "cosine":
            if len(p) != 3 or isinstance(p[2], bool) or not isinstance(p[2], (int, float)) or not 0 <= p[2] <= 1:
                raise InvalidInputError(f"pair {n}: loss='cosine' takes (text, text, similarity in [0, 1]), got {p!r}.")
        if p in seen:
            dups.append(n)
        seen.add(p)
        checked.append(p)
    if dups:
        raise InvalidInputError(f"{len(dups)} duplicate pair(s), e.g. pair {dups[0]}: {checked[dups[0]]!r}. Remove "
                                "them: a repeated pair weighs twice and, in one batch, is its own false negative.")
    if loss != "cosine" and len({len(p) for p in checked}) > 1:
        raise InvalidInputError("Give every pair a hard negative or none.")
    return checked


def data_sha256(pairs: Sequence[tuple]) -> str:
    """sha256 of the training pairs, as recorded in the new space's metadata."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps(list(p), ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


# -- evaluation ------------------------------------------------------------------------------
def retrieval_scores(model, pairs: Sequence[tuple], dims: Sequence[int | None] = (None,),
                     batch_size: int = 64, distractors: Sequence[str] = ()) -> dict[str, float]:
    """recall@10, nDCG@10 and MRR@10 of each query finding its passage among all held-out
    passages and ``distractors`` (sentence-transformers' InformationRetrievalEvaluator); per
    truncation in ``dims``."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    corpus: dict[str, str] = {}
    pid: dict[str, str] = {}
    for text in [p[1] for p in pairs] + list(distractors):
        if text not in pid:
            pid[text] = f"d{len(pid)}"
            corpus[pid[text]] = text
    queries = {f"q{n}": p[0] for n, p in enumerate(pairs)}
    relevant = {f"q{n}": {pid[p[1]]} for n, p in enumerate(pairs)}
    out: dict[str, float] = {}
    for dim in dims:
        ev = InformationRetrievalEvaluator(queries, corpus, relevant, mrr_at_k=[K], ndcg_at_k=[K], accuracy_at_k=[K],
                                           precision_recall_at_k=[K], map_at_k=[K], batch_size=batch_size,
                                           write_csv=False, truncate_dim=dim, name="")
        raw = ev(model)  # {"cosine_recall@10": ..., ...}
        suffix = "" if dim is None else f"@{dim}"
        for metric in ("recall", "ndcg", "mrr"):
            value = next(v for key, v in raw.items() if key.endswith(f"cosine_{metric}@{K}"))
            out[f"{metric}@{K}{suffix}"] = float(value)
    return out


def label_scores(model, train: Sequence[tuple], test: Sequence[tuple], k: int = 10) -> dict[str, float]:
    """kNN (``k`` nearest training texts by cosine, majority label) and linear-probe
    (logistic regression on the training vectors) accuracy on the ``test`` (text, label)
    rows; ``model`` is a latentspace encoder or a SentenceTransformer."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    def embed(texts):
        if hasattr(model, "encode_documents"):
            x = np.asarray(model.encode_documents(texts), dtype=np.float32)
        else:
            x = np.asarray(model.encode(texts, batch_size=64, convert_to_numpy=True), dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    xt, xe = embed([t for t, _ in train]), embed([t for t, _ in test])
    yt, ye = np.array([str(y) for _, y in train]), np.array([str(y) for _, y in test])
    top = np.argsort(-(xe @ xt.T), axis=1)[:, : min(k, len(train))]
    knn = []
    for row in top:
        labels, counts = np.unique(yt[row], return_counts=True)
        knn.append(labels[np.argmax(counts)])
    probe = LogisticRegression(max_iter=2000, C=10.0).fit(xt, yt)
    return {"knn_accuracy": float(np.mean(np.array(knn) == ye)), "probe_accuracy": float(probe.score(xe, ye))}


# -- training --------------------------------------------------------------------------------
def _base_model_path(encoder) -> str:
    from .sentence_transformers import SentenceTransformerEncoder

    if isinstance(encoder, (str, Path)):
        folder = Path(encoder).expanduser()
        if folder.exists() and not (folder / "modules.json").is_file():
            raise InvalidInputError(f"{folder} is not a sentence-transformers model (no modules.json): fine-tuning "
                                    "starts from a SentenceTransformer (a bare transformers checkpoint has no "
                                    "pooling to train).")
        return str(folder) if folder.exists() else str(encoder)
    if not isinstance(encoder, SentenceTransformerEncoder):
        raise InvalidInputError("Fine-tuning starts from a sentence-transformers encoder; got "
                                f"{type(encoder).__name__} "
                                f"({getattr(encoder, 'spec', None) and encoder.spec.model}).")
    if encoder.spec.truncate_dim is not None:
        raise InvalidInputError("Fine-tune the full model, not a truncated view of it (use loss='matryoshka' to make "
                                "truncation work better).")
    return str(encoder._load["model"])


def finetune(
    encoder: Any,
    pairs: Any,
    output: str | Path,
    *,
    loss: Loss = "mnrl",
    matryoshka_dims: Sequence[int] | None = None,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float | None = None,
    warmup_ratio: float = 0.1,
    held_out: float | Sequence[tuple] = 0.15,
    eval_against: Literal["all", "held_out"] = "all",
    seed: int = 0,
    threads: int | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    evaluate: bool = True,
) -> FinetuneResult:
    """Fine-tune ``encoder`` (a SentenceTransformerEncoder or a sentence-transformers model
    path) on ``pairs`` and save the result in ``output`` (a new, empty folder); see the
    module docstring. ``learning_rate``: by default the one measured best for the loss
    (``LEARNING_RATES``). ``held_out``: a fraction of the pairs kept out for scoring (split by
    ``seed``) or the held-out pairs themselves. ``eval_against``: each held-out query looks
    for its passage among every passage (``"all"``, the training passages too, as in the
    collection the model will serve) or among the held-out passages only. Everything is
    checked before training."""
    check_choice(loss, "loss", "finetune", LOSSES)
    check_choice(eval_against, "eval_against", "finetune", ("all", "held_out"))
    check_int(epochs, "epochs", "finetune", 1, 1000)
    check_int(batch_size, "batch_size", "finetune", 2, 65536)
    check_int(seed, "seed", "finetune", 0, 2**31 - 1)
    if threads is not None:
        check_int(threads, "threads", "finetune", 1, 1024)
    if max_steps is not None:
        check_int(max_steps, "max_steps", "finetune", 1, 10**9)
    if learning_rate is None:
        learning_rate = LEARNING_RATES[loss]
    learning_rate = check_float(learning_rate, "learning_rate", "finetune", 0.0, 1.0)
    warmup_ratio = check_float(warmup_ratio, "warmup_ratio", "finetune", 0.0, 1.0)
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InvalidInputError(f"{output} exists and is not an empty folder: fine-tuning writes a new model.")
    base = _base_model_path(encoder)
    all_pairs = _check_pairs(read_pairs(pairs), loss)
    if isinstance(held_out, (int, float)) and not isinstance(held_out, bool):
        if not 0 <= held_out < 1:
            raise InvalidInputError(f"held_out must be a fraction in [0, 1) or a list of pairs, got {held_out!r}.")
        order = list(range(len(all_pairs)))
        random.Random(seed).shuffle(order)
        n_eval = int(round(held_out * len(all_pairs)))
        eval_pairs = [all_pairs[i] for i in sorted(order[:n_eval])]
        train_pairs = [all_pairs[i] for i in sorted(order[n_eval:])]
    else:
        eval_pairs, train_pairs = _check_pairs(read_pairs(held_out), loss), all_pairs
    if len(train_pairs) < batch_size:
        raise InvalidInputError(f"{len(train_pairs)} training pair(s) is fewer than one batch ({batch_size}): add "
                                "pairs or lower batch_size (in-batch negatives need a full batch).")
    if loss == "cosine":
        eval_pairs = [p for p in eval_pairs if p[2] >= 0.5]  # retrieval is scored on the positive pairs
    if loss == "triplet" and len({p[1] for p in train_pairs}) < 2:
        raise InvalidInputError("The training rows hold a single label: loss='triplet' needs two or more.")
    st = _st()
    import torch
    from datasets import Dataset
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    from . import _loading

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        with _loading.quiet_loading():
            model = st.SentenceTransformer(base, device=_loading.pick_device(None))
        native = (model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
                  else model.get_sentence_embedding_dimension())
        dims: list[int | None] = [None]
        if loss == "matryoshka":
            mdims = sorted({int(d) for d in (matryoshka_dims or [d for d in (768, 512, 384, 256, 128, 64)
                                                                 if d <= native])}, reverse=True)
            if not mdims or any(d < 1 or d > native for d in mdims):
                raise InvalidInputError(f"matryoshka_dims must lie in [1, {native}], got {matryoshka_dims!r}.")
            dims += [d for d in mdims if d != native]
        elif matryoshka_dims is not None:
            raise InvalidInputError("matryoshka_dims goes with loss='matryoshka'.")
        distractors = ([p[1] for p in train_pairs if loss != "cosine" or p[2] >= 0.5]
                       if eval_against == "all" and loss != "triplet" else [])

        def scores() -> dict[str, float]:
            if not (evaluate and eval_pairs):
                return {}
            if loss == "triplet":
                return label_scores(model, train_pairs, eval_pairs)
            return retrieval_scores(model, eval_pairs, dims, distractors=distractors)

        before = scores()
        if loss == "triplet":
            label_ids = {y: i for i, y in enumerate(sorted({str(p[1]) for p in train_pairs}))}
            data = Dataset.from_dict({"sentence": [p[0] for p in train_pairs],
                                      "label": [label_ids[str(p[1])] for p in train_pairs]})
        else:
            cols = ["anchor", "positive", "negative"] if loss != "cosine" else ["sentence1", "sentence2", "score"]
            data = Dataset.from_dict({c: [p[i] for p in train_pairs]
                                      for i, c in enumerate(cols[: len(train_pairs[0])])})
        if loss == "triplet":
            train_loss = losses.BatchHardSoftMarginTripletLoss(model)
        elif loss == "cosine":
            train_loss = losses.CosineSimilarityLoss(model)
        else:
            train_loss = losses.MultipleNegativesRankingLoss(model)
            if loss == "matryoshka":
                train_loss = losses.MatryoshkaLoss(model, train_loss, matryoshka_dims=[native] + [d for d in dims if d])
        with tempfile.TemporaryDirectory(prefix="ls-finetune-") as work:
            args = SentenceTransformerTrainingArguments(
                output_dir=work, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
                learning_rate=learning_rate, warmup_steps=float(warmup_ratio), seed=seed, data_seed=seed,
                batch_sampler={"cosine": BatchSamplers.BATCH_SAMPLER, "triplet": BatchSamplers.GROUP_BY_LABEL}.get(
                    loss, BatchSamplers.NO_DUPLICATES),
                save_strategy="no", report_to="none", logging_strategy="no", disable_tqdm=not progress,
                dataloader_num_workers=0, use_cpu=str(model.device) == "cpu", max_steps=max_steps or -1,
            )
            quiet = contextlib.ExitStack()
            if not progress:  # the trainer's log lines and its model card's bar ("Computing widget examples")
                quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
                quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
            with _loading.quiet_loading(), quiet:
                trainer = st.SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=train_loss)
                trainer.train()
        after = scores()
        output.mkdir(parents=True, exist_ok=True)
        with _loading.quiet_loading():
            model.save(str(output), safe_serialization=True)
    finally:
        torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - t0
    base_spec = getattr(encoder, "spec", None)
    settings = {"loss": loss, "matryoshka_dims": [d for d in dims if d] or None, "epochs": epochs,
                "batch_size": batch_size, "learning_rate": learning_rate, "warmup_ratio": warmup_ratio, "seed": seed,
                "eval_against": eval_against,
                "max_steps": max_steps}
    provenance = {"base_model": base_spec.model if base_spec else base,
                  "base_weights_sha256": base_spec.weights_sha256 if base_spec else None,
                  "base_fingerprint": base_spec.fingerprint if base_spec else None,
                  "training_data_sha256": data_sha256(train_pairs), "train_pairs": len(train_pairs),
                  "held_out_pairs": len(eval_pairs), "settings": settings, "before": before, "after": after,
                  "library": f"sentence-transformers {st.__version__}"}
    (output / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
    from .sentence_transformers import SentenceTransformerEncoder

    opts = getattr(encoder, "_options", {}) if base_spec else {}
    new = SentenceTransformerEncoder(str(output), normalize=base_spec.normalize if base_spec else True,
                                     query_prefix=opts.get("query_prefix", ""),
                                     document_prefix=opts.get("document_prefix", ""),
                                     precision=opts.get("precision", "auto"))
    return FinetuneResult(new, output, before, after, len(train_pairs), len(eval_pairs), round(seconds, 2), settings)
