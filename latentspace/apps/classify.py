"""Classification in a collection's space: kNN vote, a linear probe, and zero-shot labels.

- :func:`knn_classify`: the labels of the ``k`` nearest labelled records, weighted by similarity.
- :class:`LinearProbe`: multinomial logistic regression (scikit-learn) on a collection's
  vectors and a metadata label; saved as ``config.json`` + ``probe.safetensors`` with the
  space it was trained in, and refusing vectors from any other space.
- :class:`ZeroShotClassifier`: each label's description embedded by the encoder, every
  text or record given the label whose description is nearest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..collections.graph import record_arrays, require_records, unit_rows, write_metadata
from ..core.errors import InvalidInputError, NotFittedError
from ..core.space import SpaceSpec
from ..core.validation import check_float, check_int, check_name, check_vectors

PROBE_FORMAT = 1


@dataclass(frozen=True)
class Prediction:
    label: Any
    confidence: float  # vote share (kNN), probability (probe), softmax share (zero-shot)
    scores: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": self.confidence, "scores": self.scores}


def _labelled(col, label_key: str, where: dict | None) -> dict:
    check_name(label_key, "metadata key")
    has = {label_key: {"$exists": True}}
    return has if where is None else {"$and": [has, where]}


# -- kNN ------------------------------------------------------------------------------
def _no_labels(col, label_key: str, where: dict | None, what: str) -> InvalidInputError:
    """No record carries the label key: say which keys the records do carry."""
    keys: dict[str, int] = {}
    for r in col.get(limit=2_000):
        for key in r.metadata:
            keys[key] = keys.get(key, 0) + 1
    present = ", ".join(k for k, _ in sorted(keys.items(), key=lambda kv: -kv[1])[:20]) or "none"
    return InvalidInputError(
        f"{what} found no records with metadata {label_key!r} in collection {col.name!r}"
        f"{' matching the filter' if where else ''}. Metadata keys present: {present}. Name the key that holds the "
        "labels with label_key= (CLI: --label-key), or label some records first."
    )


def knn_classify(
    col, label_key: str = "label", *, queries: Sequence[str] | None = None, vectors: Any = None,
    space: SpaceSpec | None = None, k: int = 10, where: dict | None = None,
) -> list[Prediction]:
    """Label each query (texts, or vectors named by their space) by a similarity-weighted
    vote of its ``k`` nearest records that carry ``metadata[label_key]`` (and match ``where``)."""
    k = check_int(k, "k", "knn_classify", 1, 1_000)
    filt = _labelled(col, label_key, where)
    if col.count(filt) == 0:
        raise _no_labels(col, label_key, where, "knn_classify")
    if queries is not None:
        results = col.search_batch(queries, k=k, where=filt)
    else:
        results = col.search_batch(vectors=vectors, space=space, k=k, where=filt)
    out = []
    for hits in results:
        votes: dict = {}
        for h in hits:
            # weight: similarity for cosine/dot (shifted to stay positive), 1/(1+d) for l2
            w = 1.0 / (1.0 + h.distance) if col.spec.metric == "l2" else max(h.score, 0.0) + 1e-6
            lab = h.metadata[label_key]
            votes[lab] = votes.get(lab, 0.0) + w
        total = sum(votes.values())
        best = max(votes, key=lambda v: (votes[v], str(v)))
        out.append(Prediction(best, votes[best] / total, {str(a): b / total for a, b in votes.items()}))
    return out


# -- linear probe -----------------------------------------------------------------------
class LinearProbe:
    """Logistic regression on a collection's vectors, bound to the collection's space.

    >>> probe = LinearProbe("label").fit(col, where={"split": "train"})   # doctest: +SKIP
    >>> probe.predict(vectors, space=col.spec)                           # doctest: +SKIP
    """

    def __init__(self, label_key: str = "label", *, C: float = 1.0, max_iter: int = 2_000):
        self.label_key = check_name(label_key, "metadata key")
        self.C = check_float(C, "C", "LinearProbe", 1e-6, 1e6)
        self.max_iter = check_int(max_iter, "max_iter", "LinearProbe", 10, 1_000_000)

    # fitted state: classes_, coef_ (n_classes, dim), intercept_ (n_classes,), space_
    def fit(self, col, where: dict | None = None) -> LinearProbe:
        from sklearn.linear_model import LogisticRegression

        rec = record_arrays(col, _labelled(col, self.label_key, where))
        if not len(rec):
            raise _no_labels(col, self.label_key, where, "LinearProbe.fit")
        require_records(rec, col, f"LinearProbe.fit (records with metadata {self.label_key!r})", at_least=2)
        y = [m[self.label_key] for m in rec.metadatas]
        kinds = {type(v) for v in y}
        if not kinds <= {int, str, bool} or len(kinds) > 1:
            raise InvalidInputError(
                f"LinearProbe labels (metadata {self.label_key!r}) must all be ints or all strings; got {sorted(map(str, kinds))}."
            )
        classes = sorted(set(y))
        if len(classes) < 2:
            raise InvalidInputError(f"LinearProbe needs at least 2 classes in {self.label_key!r}; found {classes}.")
        x = self._prep(rec.vectors, col.spec)
        lr = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(x, y)
        coef, intercept = lr.coef_, lr.intercept_
        if len(classes) == 2:  # scikit-learn's binary form: one row for class 1 -> two symmetric rows
            coef, intercept = np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        self.classes_ = [c.item() if hasattr(c, "item") else c for c in lr.classes_]
        self.coef_ = np.ascontiguousarray(coef, dtype=np.float32)
        self.intercept_ = np.ascontiguousarray(intercept, dtype=np.float32)
        self.space_ = col.spec
        return self

    @staticmethod
    def _prep(x: np.ndarray, spec: SpaceSpec) -> np.ndarray:
        return unit_rows(x) if spec.metric == "cosine" else x

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("This LinearProbe is not fitted yet: call fit(collection) or LinearProbe.load(folder).")

    def predict_proba(self, vectors: Any, *, space: SpaceSpec) -> np.ndarray:
        """Class probabilities (columns in ``classes_`` order) for vectors of the probe's space."""
        self._check_fitted()
        if not isinstance(space, SpaceSpec):
            raise InvalidInputError("predict needs space=: the SpaceSpec the vectors come from (for example col.spec).")
        self.space_.require_same(space, "Vectors passed to LinearProbe.predict")
        x = check_vectors(vectors, self.space_.dim, metric=self.space_.metric, normalized=False,
                          what="LinearProbe.predict vectors")
        logits = self._prep(x, self.space_) @ self.coef_.T + self.intercept_
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, vectors: Any, *, space: SpaceSpec) -> list[Prediction]:
        p = self.predict_proba(vectors, space=space)
        best = p.argmax(axis=1)
        return [Prediction(self.classes_[b], float(row[b]), {str(c): float(v) for c, v in zip(self.classes_, row)})
                for b, row in zip(best.tolist(), p)]

    def predict_collection(self, col, where: dict | None = None, write_to: str | None = None) -> dict[str, Prediction]:
        """Predictions for every record of ``col`` (which must be in the probe's space), by id;
        ``write_to`` stores each predicted label in that metadata key."""
        self._check_fitted()
        if write_to is not None:
            check_name(write_to, "metadata key")
        rec = record_arrays(col, where)
        if not len(rec):
            return {}
        preds = self.predict(rec.vectors, space=col.spec)
        if write_to is not None:
            write_metadata(col, rec, [p.label for p in preds], write_to)
        return dict(zip(rec.ids, preds))

    def score(self, col, where: dict | None = None) -> float:
        """Accuracy on the labelled records of ``col`` matching ``where``."""
        rec = record_arrays(col, _labelled(col, self.label_key, where))
        require_records(rec, col, "LinearProbe.score")
        preds = self.predict(rec.vectors, space=col.spec)
        return float(np.mean([p.label == m[self.label_key] for p, m in zip(preds, rec.metadatas)]))

    # -- persistence: JSON + safetensors, never pickle ------------------------------------
    def save(self, folder: str | Path) -> Path:
        from ..core.io import save_artifact

        self._check_fitted()
        return save_artifact(folder, "latentspace.LinearProbe", PROBE_FORMAT, {
            "label_key": self.label_key, "C": self.C, "max_iter": self.max_iter, "classes": self.classes_,
            "space": self.space_.to_dict(),
        }, {"coef": self.coef_, "intercept": self.intercept_}, "probe.safetensors")

    @classmethod
    def load(cls, folder: str | Path) -> LinearProbe:
        from ..core.io import load_artifact

        cfg, t = load_artifact(folder, "latentspace.LinearProbe", PROBE_FORMAT, "probe.safetensors")
        space = SpaceSpec.from_dict(cfg["space"])
        classes = cfg["classes"]
        want = (len(classes), space.dim)
        if t.get("coef") is None or t["coef"].shape != want or t.get("intercept") is None or t["intercept"].shape != want[:1]:
            raise InvalidInputError(
                f"{folder}: weights do not match the config ({len(classes)} classes x {space.dim} dims expected)."
            )
        probe = cls(cfg["label_key"], C=cfg["C"], max_iter=cfg["max_iter"])
        probe.classes_, probe.coef_, probe.intercept_, probe.space_ = classes, t["coef"], t["intercept"], space
        return probe


# -- zero-shot --------------------------------------------------------------------------
class ZeroShotClassifier:
    """Labels from descriptions: ``{"json": "JSON encoding and decoding", ...}`` (or a list
    of labels used as their own descriptions), embedded as queries by ``encoder``."""

    def __init__(self, encoder, labels: Mapping[str, str] | Sequence[str], *, template: str = "{}",
                 temperature: float = 0.05):
        if isinstance(labels, Mapping):
            names, descs = list(labels.keys()), list(labels.values())
        elif isinstance(labels, Sequence) and not isinstance(labels, str):
            names, descs = list(labels), list(labels)
        else:
            raise InvalidInputError("labels must be a dict {label: description} or a list of labels.")
        if len(names) < 2:
            raise InvalidInputError(f"Zero-shot classification needs at least 2 labels; got {len(names)}.")
        if "{}" not in template:
            raise InvalidInputError(f"template must contain '{{}}' where the description goes; got {template!r}.")
        self.encoder = encoder
        self.labels = [str(n) for n in names]
        self.temperature = check_float(temperature, "temperature", "ZeroShotClassifier", 1e-4, 100.0)
        self.label_vectors_ = encoder.encode_queries([template.format(d) for d in descs])

    def _from_vectors(self, x: np.ndarray) -> list[Prediction]:
        sims = unit_rows(x) @ unit_rows(self.label_vectors_).T
        z = (sims - sims.max(axis=1, keepdims=True)) / self.temperature
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        best = sims.argmax(axis=1)
        return [Prediction(self.labels[b], float(p[i, b]), {lab: float(s) for lab, s in zip(self.labels, sims[i])})
                for i, b in enumerate(best.tolist())]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Label texts (embedded as documents). ``scores`` holds each label's cosine."""
        return self._from_vectors(self.encoder.encode_documents(texts))

    def predict_collection(self, col, where: dict | None = None, write_to: str | None = None) -> dict[str, Prediction]:
        """Label every record of ``col`` from its stored vector (``col`` must be in the encoder's space);
        ``write_to`` stores each label in that metadata key."""
        col.spec.require_same(self.encoder.spec, f"Zero-shot labels for collection {col.name!r}")
        if write_to is not None:
            check_name(write_to, "metadata key")
        rec = record_arrays(col, where)
        if not len(rec):
            return {}
        preds = self._from_vectors(rec.vectors)
        if write_to is not None:
            write_metadata(col, rec, [p.label for p in preds], write_to)
        return dict(zip(rec.ids, preds))
