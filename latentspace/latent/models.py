"""Autoencoders and VAEs (MLP and convolutional) behind one LatentModel interface."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.errors import InvalidInputError
from ..core.space import SpaceSpec
from .config import LatentConfig


@dataclass
class Posterior:
    """q(z | x): a diagonal Gaussian (a deterministic AE has log-variance -inf: a point)."""

    mean: torch.Tensor
    logvar: torch.Tensor | None = None

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.logvar is None:
            return self.mean
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + torch.exp(0.5 * self.logvar) * eps

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per item, in nats."""
        if self.logvar is None:
            return torch.zeros(self.mean.shape[0], device=self.mean.device)
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=1)


def seeded(seed: int | None):
    """A context in which new modules' initial weights follow ``seed`` (torch's global
    generator is left as it was); None: no change."""
    import contextlib

    if seed is None:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def ctx():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    return ctx()


def as_latents(z: Any, dim: int, name: str, device) -> torch.Tensor:
    """Latents as a float32 (n, dim) tensor on ``device``: one latent (dim,) or image-shaped
    latents (n, c, h, w) are accepted; another size, NaN or inf is an InvalidInputError."""
    z = torch.as_tensor(np.asarray(z, dtype=np.float32) if not isinstance(z, torch.Tensor) else z,
                        dtype=torch.float32, device=device)
    if z.ndim == 1:
        z = z[None]
    if z.ndim == 4:
        z = z.flatten(1)
    if z.ndim != 2 or z.shape[1] != dim:
        raise InvalidInputError(f"{name}: a latent must have {dim} dimensions; got shape {tuple(z.shape)}.")
    if not torch.isfinite(z).all():
        raise InvalidInputError(f"{name}: latent contains NaN or inf.")
    return z


def draw_latents(n: int, dim: int, seed: int | None = None, sampler=None) -> torch.Tensor:
    """``n`` latents from the prior N(0, I), or from ``sampler.sample(n, seed=...)`` (e.g. a fitted GMM)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidInputError(f"sample: n must be a positive int; got {n!r}.")
    if sampler is not None:
        return torch.as_tensor(np.asarray(sampler.sample(n, seed=seed), dtype=np.float32))
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.randn(n, dim, generator=g)


class _MLPEncoder(nn.Module):
    def __init__(self, cfg: LatentConfig):
        super().__init__()
        d = math.prod(cfg.input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        for h in cfg.hidden:
            layers += [nn.Linear(d, h), nn.SiLU()]
            d = h
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(d, cfg.latent_dim * (2 if cfg.variational else 1))

    def forward(self, x):
        return self.out(self.body(x))


class _MLPDecoder(nn.Module):
    def __init__(self, cfg: LatentConfig):
        super().__init__()
        d = cfg.latent_dim
        layers: list[nn.Module] = []
        for h in reversed(cfg.hidden):
            layers += [nn.Linear(d, h), nn.SiLU()]
            d = h
        layers.append(nn.Linear(d, math.prod(cfg.input_shape)))
        self.body = nn.Sequential(*layers)
        self.shape = cfg.input_shape

    def forward(self, z):
        return self.body(z).view(z.shape[0], *self.shape)


class _ConvEncoder(nn.Module):
    def __init__(self, cfg: LatentConfig):
        super().__init__()
        c, h, w = cfg.input_shape
        if h % 4 or w % 4:
            raise InvalidInputError(f"A conv model needs height and width divisible by 4; got {h}x{w}.")
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(), nn.Flatten(),
        )
        flat = 64 * (h // 4) * (w // 4)
        self.fc = nn.Sequential(nn.Linear(flat, cfg.hidden[0]), nn.SiLU(),
                                nn.Linear(cfg.hidden[0], cfg.latent_dim * (2 if cfg.variational else 1)))

    def forward(self, x):
        return self.fc(self.conv(x))


class _ConvDecoder(nn.Module):
    def __init__(self, cfg: LatentConfig):
        super().__init__()
        c, h, w = cfg.input_shape
        self.grid = (64, h // 4, w // 4)
        self.fc = nn.Sequential(nn.Linear(cfg.latent_dim, cfg.hidden[0]), nn.SiLU(),
                                nn.Linear(cfg.hidden[0], math.prod(self.grid)), nn.SiLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(32, c, 4, stride=2, padding=1),
        )

    def forward(self, z):
        return self.deconv(self.fc(z).view(z.shape[0], *self.grid))


class LatentModel(nn.Module):
    """encode(x) -> Posterior, decode(z) -> x (in data range), reconstruct, sample, spec."""

    def __init__(self, config: LatentConfig, *, seed: int | None = None):
        """``seed``: the initial weights (None: torch's global generator, as any module)."""
        super().__init__()
        self.config = config
        conv = config.arch == "conv"
        with seeded(seed):
            self.encoder = _ConvEncoder(config) if conv else _MLPEncoder(config)
            self.decoder = _ConvDecoder(config) if conv else _MLPDecoder(config)
        self._weights_sha256: str | None = None

    # -- shapes and checks ---------------------------------------------------------------
    def _as_input(self, x: Any) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x,
                            dtype=torch.float32)
        shape = self.config.input_shape
        if tuple(t.shape[1:]) != shape:
            if len(shape) == 3 and t.ndim == 2 and t.shape[1] == math.prod(shape):
                t = t.view(t.shape[0], *shape)  # flat images are accepted
            elif len(shape) == 1 and t.ndim == 4 and math.prod(t.shape[1:]) == shape[0]:
                t = t.reshape(t.shape[0], -1)
            else:
                raise InvalidInputError(
                    f"{self.config.name}: input has shape {tuple(t.shape)}; expected (n, {', '.join(map(str, shape))})."
                )
        if not torch.isfinite(t).all():
            raise InvalidInputError(f"{self.config.name}: input contains NaN or inf.")
        return t.to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_range(self, x: torch.Tensor) -> None:
        if self.config.likelihood == "bernoulli":
            lo, hi = float(x.min()), float(x.max())
            if lo < 0.0 or hi > 1.0:
                raise InvalidInputError(
                    f"{self.config.name} uses a Bernoulli likelihood, which needs data in [0, 1]; the data spans "
                    f"[{lo:.3g}, {hi:.3g}]. Scale it (e.g. divide 0-16 pixel values by 16) or use likelihood='gaussian'."
                )

    # -- the interface -------------------------------------------------------------------
    def encode(self, x: Any) -> Posterior:
        h = self.encoder(self._as_input(x))
        if self.config.variational:
            mean, logvar = h.chunk(2, dim=1)
            return Posterior(mean, logvar.clamp(-30.0, 20.0))
        return Posterior(h)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @torch.no_grad()
    def decode(self, z: Any) -> torch.Tensor:
        out = self.decoder(as_latents(z, self.config.latent_dim, self.config.name, self.device))
        return torch.sigmoid(out) if self.config.likelihood == "bernoulli" else out

    @torch.no_grad()
    def reconstruct(self, x: Any) -> torch.Tensor:
        return self.decode(self.encode(x).mode())

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None, sampler=None) -> torch.Tensor:
        """Decode ``n`` latents from the prior N(0, I), or from ``sampler.sample(n)`` (e.g. a fitted GMM)."""
        return self.decode(draw_latents(n, self.config.latent_dim, seed, sampler))

    def loss_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-item reconstruction negative log-likelihood (nats) and KL."""
        post = self.encode(x)
        z = post.sample(generator) if self.config.variational else post.mode()
        return {"reconstruction": self.nll(x, self.decode_logits(z)), "kl": post.kl()}

    def nll(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Per-item negative log-likelihood of x under the decoder output, in nats."""
        flat_x, flat_l = x.reshape(x.shape[0], -1), logits.reshape(x.shape[0], -1)
        if self.config.likelihood == "bernoulli":
            return nn.functional.binary_cross_entropy_with_logits(flat_l, flat_x, reduction="none").sum(1)
        # unit-variance Gaussian
        return 0.5 * ((flat_l - flat_x) ** 2).sum(1) + 0.5 * flat_x.shape[1] * math.log(2 * math.pi)

    @property
    def spec(self) -> SpaceSpec:
        """The latent space as a SpaceSpec: vectors here are the posterior means."""
        return SpaceSpec(
            model=f"latent:{self.config.name}",
            dim=self.config.latent_dim,
            normalize=False,
            metric="l2",
            weights_sha256=self.weights_sha256(),
            modality="latent",
            metadata={"kind": self.config.kind, "arch": self.config.arch, "likelihood": self.config.likelihood},
        )

    def weights_sha256(self) -> str:
        """sha256 of the weights as saved (recomputed after training changes them)."""
        import hashlib

        h = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    @torch.no_grad()
    def latents(self, x: Any, batch_size: int = 1024) -> np.ndarray:
        """Posterior means of ``x`` as float32 (n, latent_dim): vectors of :attr:`spec`."""
        self.eval()
        out = [self.encode(np.asarray(x)[s : s + batch_size]).mode().cpu().numpy()
               for s in range(0, len(x), batch_size)]
        return np.concatenate(out).astype(np.float32)
