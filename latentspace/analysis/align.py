"""Aligning one space to another from paired anchors (scikit-learn style).

``Aligner(method="procrustes")`` fits an orthogonal map (Schönemann 1966) and
``method="lstsq"`` a least-squares linear map, from source vectors ``X`` to target
vectors ``Y`` of the same items. Held-out evaluation reports precision@1 of retrieving
each item's target vector with plain nearest neighbours and with CSLS (Conneau et al.
2018). Aligned vectors belong to the target space only through :meth:`Aligner.to_target`,
which returns them with the target's SpaceSpec: that is how they may enter a collection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.errors import InvalidInputError, NotFittedError
from ..core.space import SpaceSpec
from ..core.validation import check_choice
from ._checks import paired, points


@dataclass(frozen=True)
class AlignedVectors:
    """Vectors carried into the target space, named by the target's spec."""

    vectors: np.ndarray
    space: SpaceSpec


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)


class Aligner:
    """Constructors store; ``fit`` works; fitted state ends in ``_``."""

    def __init__(self, method: Literal["procrustes", "lstsq"] = "procrustes", *, center: bool = False,
                 normalize: bool = True, target_space: SpaceSpec | None = None):
        self.method = method
        self.center = center
        self.normalize = normalize
        self.target_space = target_space

    def fit(self, x: Any, y: Any) -> Aligner:
        check_choice(self.method, "method", "Aligner", ("procrustes", "lstsq"))
        if self.target_space is not None and not isinstance(self.target_space, SpaceSpec):
            raise InvalidInputError("Aligner(target_space=...) must be a SpaceSpec.")
        x, y = paired(x, y, "Aligner.fit", min_rows=2)
        if self.target_space is not None and y.shape[1] != self.target_space.dim:
            raise InvalidInputError(
                f"Aligner.fit: Y is {y.shape[1]}-d but target_space is {self.target_space.dim}-d."
            )
        if self.normalize:
            x, y = _unit(x), _unit(y)
        self.mean_x_ = x.mean(0) if self.center else np.zeros(x.shape[1])
        self.mean_y_ = y.mean(0) if self.center else np.zeros(y.shape[1])
        xc, yc = x - self.mean_x_, y - self.mean_y_
        if self.method == "procrustes":
            u, _, vt = np.linalg.svd(xc.T @ yc, full_matrices=False)
            self.W_ = u @ vt
        else:
            if x.shape[0] < x.shape[1]:
                raise InvalidInputError(
                    f"Aligner.fit: least squares needs at least as many anchor pairs as source dimensions "
                    f"({x.shape[0]} < {x.shape[1]}); use method='procrustes' or add anchors."
                )
            self.W_, *_ = np.linalg.lstsq(xc, yc, rcond=None)
        self.n_features_in_ = x.shape[1]
        self.n_features_out_ = y.shape[1]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "W_"):
            raise NotFittedError("This Aligner is not fitted yet: call fit(X_source, Y_target) with anchor pairs.")

    def transform(self, x: Any) -> np.ndarray:
        """Map source vectors into the target's coordinates (float32)."""
        self._check_fitted()
        x = points(x, "X", 1, "Aligner.transform")
        if x.shape[1] != self.n_features_in_:
            raise InvalidInputError(
                f"Aligner.transform: X has {x.shape[1]} features, but the aligner was fitted on {self.n_features_in_}."
            )
        if self.normalize:
            x = _unit(x)
        out = (x - self.mean_x_) @ self.W_ + self.mean_y_
        if self.normalize or (self.target_space is not None and self.target_space.normalize):
            out = _unit(out)
        return out.astype(np.float32)

    def to_target(self, x: Any) -> AlignedVectors:
        """Transformed vectors named by the target space, ready for ``col.add(..., space=...)``."""
        if self.target_space is None:
            raise InvalidInputError(
                "Aligner.to_target needs the target's SpaceSpec: build the aligner with target_space=collection.spec."
            )
        return AlignedVectors(self.transform(x), self.target_space)

    def save(self, folder: str | Path) -> Path:
        """Save as ``config.json`` + ``aligner.safetensors`` (never pickle)."""
        from ..core.io import save_artifact

        self._check_fitted()
        return save_artifact(folder, "latentspace.Aligner", 1, {
            "method": self.method, "center": self.center, "normalize": self.normalize,
            "n_features_in": self.n_features_in_, "n_features_out": self.n_features_out_,
            "target_space": self.target_space.to_dict() if self.target_space is not None else None,
        }, {"W": self.W_, "mean_x": self.mean_x_, "mean_y": self.mean_y_}, "aligner.safetensors")

    @classmethod
    def load(cls, folder: str | Path) -> Aligner:
        """Load a saved aligner, checking its config against its tensors."""
        from ..core.io import load_artifact

        cfg, tensors = load_artifact(folder, "latentspace.Aligner", 1, "aligner.safetensors")
        w = tensors.get("W")
        if w is None or w.shape != (cfg["n_features_in"], cfg["n_features_out"]):
            raise InvalidInputError(
                f"{folder}: W has shape {None if w is None else w.shape}, the config says "
                f"({cfg['n_features_in']}, {cfg['n_features_out']})."
            )
        target = SpaceSpec.from_dict(cfg["target_space"]) if cfg.get("target_space") else None
        al = cls(cfg["method"], center=cfg["center"], normalize=cfg["normalize"], target_space=target)
        al.W_, al.mean_x_, al.mean_y_ = w, tensors["mean_x"], tensors["mean_y"]
        al.n_features_in_, al.n_features_out_ = cfg["n_features_in"], cfg["n_features_out"]
        return al

    def evaluate(self, x: Any, y: Any, k_csls: int = 10) -> dict[str, float]:
        """Held-out precision@1 of finding each item's own target vector: NN and CSLS."""
        self._check_fitted()
        x, y = paired(x, y, "Aligner.evaluate", min_rows=2)
        return retrieval_precision(self.transform(x), y, k_csls)


def retrieval_precision(mapped: Any, y: Any, k_csls: int = 10) -> dict[str, float]:
    """P@1 of row i of ``mapped`` retrieving row i of ``y`` among all rows of ``y`` (cosine), NN and CSLS."""
    a, b = paired(mapped, y, "retrieval_precision", min_rows=2)
    a, b = _unit(a), _unit(b)
    n = a.shape[0]
    k = min(k_csls, n - 1)
    truth = np.arange(n)
    nn_hits = 0
    csls_hits = 0
    # mean similarity of each target to its k nearest mapped sources (r_S), in blocks
    r_t = np.empty(n)
    for s in range(0, n, 512):
        sims = b[s : s + 512] @ a.T
        r_t[s : s + 512] = np.sort(sims, axis=1)[:, -k:].mean(1)
    for s in range(0, n, 512):
        sims = a[s : s + 512] @ b.T
        r_s = np.sort(sims, axis=1)[:, -k:].mean(1)
        nn_hits += int((sims.argmax(1) == truth[s : s + 512]).sum())
        csls = 2 * sims - r_s[:, None] - r_t[None, :]
        csls_hits += int((csls.argmax(1) == truth[s : s + 512]).sum())
    return {"p_at_1_nn": nn_hits / n, "p_at_1_csls": csls_hits / n, "pairs": n}
