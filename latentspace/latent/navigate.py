"""Moving around any LatentModel's space: paths, arithmetic, attribute directions, traversals,
samplers and anomaly scores. Everything takes and returns numpy; decoding goes through the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..core.errors import InvalidInputError, NotFittedError
from ..core.validation import check_int


def _vec(z: Any, dim: int, what: str) -> np.ndarray:
    a = np.asarray(z, dtype=np.float64)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1 or a.shape[0] != dim:
        raise InvalidInputError(f"{what} must be one latent of {dim} dimensions; got shape {a.shape}.")
    if not np.isfinite(a).all():
        raise InvalidInputError(f"{what} contains NaN or inf.")
    return a


def lerp(a: Any, b: Any, steps: int = 8) -> np.ndarray:
    """Straight line from latent a to latent b, ``steps`` points including both ends."""
    check_int(steps, "steps", "lerp", 2, 1000)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InvalidInputError(f"lerp needs two latents of one shape; got {a.shape} and {b.shape}.")
    t = np.linspace(0.0, 1.0, steps)[:, None]
    return ((1 - t) * a + t * b).astype(np.float32)


def slerp(a: Any, b: Any, steps: int = 8) -> np.ndarray:
    """Spherical interpolation (Shoemake 1985): constant angular speed, norms interpolated linearly.

    Under a Gaussian prior, lerp's midpoints have smaller norms than typical samples; slerp
    keeps the path on the shell where the prior's mass is.
    """
    check_int(steps, "steps", "slerp", 2, 1000)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InvalidInputError(f"slerp needs two latents of one shape; got {a.shape} and {b.shape}.")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return lerp(a, b, steps)
    ua, ub = a / na, b / nb
    omega = np.arccos(np.clip(ua @ ub, -1.0, 1.0))
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if omega < 1e-6:
        return lerp(a, b, steps)
    dirs = (np.sin((1 - t) * omega) * ua + np.sin(t * omega) * ub) / np.sin(omega)
    return (dirs * ((1 - t) * na + t * nb)).astype(np.float32)


def interpolate(model, x_a: Any, x_b: Any, steps: int = 8, method: Literal["lerp", "slerp"] = "slerp") -> np.ndarray:
    """Decoded path between two inputs (through their posterior means)."""
    if method not in ("lerp", "slerp"):
        raise InvalidInputError(f"method must be 'lerp' or 'slerp'; got {method!r}.")
    za = model.latents(np.asarray(x_a)[None])[0]
    zb = model.latents(np.asarray(x_b)[None])[0]
    path = (slerp if method == "slerp" else lerp)(za, zb, steps)
    return model.decode(path).cpu().numpy()


def arithmetic(model, a: Any, b: Any, c: Any) -> np.ndarray:
    """Decode ``z(a) - z(b) + z(c)`` ("a is to b as ? is to c")."""
    z = model.latents(np.stack([np.asarray(a), np.asarray(b), np.asarray(c)]))
    return model.decode(z[0] - z[1] + z[2]).cpu().numpy()[0]


def attribute_direction(latents: Any, labels: Any, positive: Any, *, method: Literal["means", "probe"] = "means",
                        seed: int = 0) -> np.ndarray:
    """A unit direction in latent space that moves toward items labelled ``positive``.

    ``means``: difference of the class means (positive minus the rest); ``probe``: the normal
    of a logistic-regression boundary between them.
    """
    z = np.asarray(latents, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or len(y) != z.shape[0]:
        raise InvalidInputError(f"attribute_direction needs (n, d) latents and n labels; got {z.shape} and {len(y)}.")
    mask = y == positive
    if mask.all() or not mask.any():
        raise InvalidInputError(f"attribute_direction needs items with and without label {positive!r}.")
    if method == "means":
        d = z[mask].mean(0) - z[~mask].mean(0)
    elif method == "probe":
        from sklearn.linear_model import LogisticRegression

        d = LogisticRegression(max_iter=2000, random_state=seed).fit(z, mask).coef_[0]
    else:
        raise InvalidInputError(f"method must be 'means' or 'probe'; got {method!r}.")
    norm = np.linalg.norm(d)
    if norm == 0:
        raise InvalidInputError("The two groups have the same mean: no direction separates them.")
    return (d / norm).astype(np.float32)


def traverse(model, z: Any, direction: Any, *, span: float = 3.0, steps: int = 9) -> np.ndarray:
    """Decode ``z + t * direction`` for t in [-span, span]."""
    dim = model.config.latent_dim
    z = _vec(z, dim, "z")
    d = _vec(direction, dim, "direction")
    t = np.linspace(-span, span, check_int(steps, "steps", "traverse", 2, 1000))[:, None]
    return model.decode((z + t * d).astype(np.float32)).cpu().numpy()


def traverse_dimensions(model, z: Any, *, span: float = 3.0, steps: int = 7, dims: Any = None) -> np.ndarray:
    """Per-dimension traversals: an array (len(dims), steps, *input_shape).

    ``dims``: which latent dimensions (a list), the first n (an int), or all (None).
    """
    dim = model.config.latent_dim
    z = _vec(z, dim, "z")
    if dims is None:
        which = list(range(dim))
    elif isinstance(dims, int) and not isinstance(dims, bool):
        which = list(range(check_int(dims, "dims", "traverse_dimensions", 1, dim)))
    else:
        which = [check_int(d, "dims[i]", "traverse_dimensions", 0, dim - 1) for d in dims]
        if not which:
            raise InvalidInputError("traverse_dimensions: dims is empty.")
    eye = np.eye(dim)
    return np.stack([traverse(model, z, eye[i], span=span, steps=steps) for i in which])


@dataclass
class GaussianMixtureSampler:
    """A Gaussian mixture fitted on the aggregate posterior (the latents of real data).

    Decoding its samples stays where the data is, unlike the prior N(0, I) whose mass can
    fall in holes the encoder never used.
    """

    n_components: int = 10
    seed: int = 0

    def fit(self, latents: Any) -> GaussianMixtureSampler:
        from sklearn.mixture import GaussianMixture

        z = np.asarray(latents, dtype=np.float64)
        if z.ndim != 2 or z.shape[0] < self.n_components:
            raise InvalidInputError(
                f"GaussianMixtureSampler needs (n, d) latents with n >= n_components ({self.n_components}); got {z.shape}."
            )
        self.gmm_ = GaussianMixture(self.n_components, covariance_type="full", random_state=self.seed).fit(z)
        return self

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        if not hasattr(self, "gmm_"):
            raise NotFittedError("Fit the sampler on latents first: GaussianMixtureSampler().fit(model.latents(x)).")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        counts = rng.multinomial(n, self.gmm_.weights_)
        out = [rng.multivariate_normal(self.gmm_.means_[k], self.gmm_.covariances_[k], size=c)
               for k, c in enumerate(counts) if c]
        z = np.concatenate(out)
        return z[rng.permutation(len(z))].astype(np.float32)


@dataclass
class ClassConditionalSampler:
    """One Gaussian per label fitted on labelled latents: class-conditioned samples from any
    latent model. For a VAE, the latents of real items with their labels; for a GAN (no
    encoder), latents drawn from the prior and labelled by a classifier of their images."""

    reg: float = 1e-4

    def fit(self, latents: Any, labels: Any) -> ClassConditionalSampler:
        z = np.asarray(latents, dtype=np.float64)
        y = np.asarray(labels)
        if z.ndim != 2 or len(y) != len(z):
            raise InvalidInputError(f"ClassConditionalSampler needs (n, d) latents and n labels; got {z.shape} and "
                                    f"{y.shape}.")
        self.classes_ = sorted(set(y.tolist()))
        self.params_ = {}
        for c in self.classes_:
            zc = z[y == c]
            if len(zc) < 2:
                raise InvalidInputError(f"ClassConditionalSampler: label {c!r} has {len(zc)} latent(s); needs 2 or more.")
            cov = np.cov(zc, rowvar=False) + self.reg * np.eye(z.shape[1])
            self.params_[c] = (zc.mean(0), cov)
        return self

    def sample(self, n: int, label: Any, seed: int | None = None) -> np.ndarray:
        if not hasattr(self, "params_"):
            raise NotFittedError("Fit the sampler first: ClassConditionalSampler().fit(latents, labels).")
        if label not in self.params_:
            raise InvalidInputError(f"Unknown label {label!r}; the sampler knows {self.classes_}.")
        check_int(n, "n", "sample", 1, 10_000_000)
        mean, cov = self.params_[label]
        return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n).astype(np.float32)


@torch.no_grad()
def anomaly_scores(model, x: Any, *, kind: Literal["reconstruction", "elbo"] = "reconstruction",
                   batch_size: int = 1024) -> np.ndarray:
    """Per-item anomaly score, higher = more anomalous: reconstruction NLL, or negative ELBO (VAEs)."""
    if kind not in ("reconstruction", "elbo"):
        raise InvalidInputError(f"kind must be 'reconstruction' or 'elbo'; got {kind!r}.")
    if kind == "elbo" and not model.config.variational:
        raise InvalidInputError("ELBO scores need a VAE; this model is a deterministic autoencoder.")
    model.eval()
    data = model._as_input(x)
    scores = []
    for s in range(0, data.shape[0], batch_size):
        xb = data[s : s + batch_size]
        post = model.encode(xb)
        rec = model.nll(xb, model.decode_logits(post.mode()))
        scores.append((rec + post.kl() if kind == "elbo" else rec).cpu().numpy())
    return np.concatenate(scores)


def image_grid(images: Any, path, *, rows: int | None = None, scale: int = 4, titles: list[str] | None = None):
    """Save images (n, [c,] h, w) or (rows, cols, [c,] h, w) in [0, 1] as one PNG grid."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    a = np.asarray(images, dtype=np.float32)
    if a.ndim >= 4 and a.shape[-3] in (1, 3) and a.ndim in (4, 5):
        a = np.moveaxis(a, -3, -1)  # channels last
        if a.shape[-1] == 1:
            a = a[..., 0]
    if a.ndim in (3,) or (a.ndim == 4 and a.shape[-1] == 3):
        cols = int(np.ceil(len(a) / (rows or 1))) if rows else len(a)
        rows = rows or 1
        a = np.concatenate([a, np.zeros((rows * cols - len(a), *a.shape[1:]), a.dtype)]).reshape(rows, cols, *a.shape[1:])
    r, c = a.shape[:2]
    h, w = a.shape[2:4]
    fig, axes = plt.subplots(r, c, figsize=(c * w * scale / 40, r * h * scale / 40 + (0.3 if titles else 0)),
                             dpi=80, squeeze=False)
    for i in range(r):
        for j in range(c):
            ax = axes[i][j]
            ax.imshow(np.clip(a[i, j], 0, 1), cmap="gray_r" if a.ndim == 4 else None, vmin=0, vmax=1)
            ax.axis("off")
        if titles and i < len(titles):
            axes[i][0].set_title(titles[i], fontsize=8, loc="left")
    fig.tight_layout(pad=0.2)
    fig.savefig(path)
    plt.close(fig)
    return path
