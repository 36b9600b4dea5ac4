"""A pretrained image VAE (diffusers ``AutoencoderKL``) behind the LatentModel interface.

Images in [0, 1], shape (n, 3, H, W); latents are the scaled posterior
(``scaling_factor`` applied), shape (latent_channels, H/f, W/f) with f the downsampling
factor (8 for Stable Diffusion's VAE), flattened to vectors for navigation and
collections. Loaded from a local folder (safetensors only) or a hub id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import InvalidInputError, ModelLoadError
from ..core.space import SpaceSpec
from ..embed import _loading
from .models import Posterior, as_latents, draw_latents


@dataclass(frozen=True)
class DiffusersVAEConfig:
    name: str
    input_shape: tuple[int, int, int]
    latent_shape: tuple[int, int, int]
    scaling_factor: float
    kind: str = "vae"
    arch: str = "autoencoder_kl"
    likelihood: str = "gaussian"
    beta: float = 1.0

    @property
    def variational(self) -> bool:
        return True

    @property
    def latent_dim(self) -> int:
        return math.prod(self.latent_shape)


class DiffusersVAE:
    """``AutoencoderKL`` with encode -> Posterior, decode, reconstruct, sample, latents and spec."""

    def __init__(self, model: str, *, image_size: int = 64, device: str | None = None, revision: str | None = None):
        diffusers = _loading.require("diffusers", "latent")
        local = _loading.is_local(model)
        if local:
            folder = Path(model).expanduser()
            _loading.local_weights(folder)
            self._sha = _loading.weights_fingerprint(folder)
        try:
            self.vae = diffusers.AutoencoderKL.from_pretrained(str(model), revision=revision, use_safetensors=True)
        except Exception as exc:
            raise ModelLoadError(f"Could not load AutoencoderKL {model!r}: {exc}") from exc
        if not local:
            self._sha = _loading.hub_weights_sha256(str(model), revision) or f"revision:{revision or 'main'}"
        self.vae.eval().to(device or "cpu")
        cfg = self.vae.config
        factor = 2 ** (len(cfg.block_out_channels) - 1)
        if image_size % factor:
            raise InvalidInputError(f"image_size must be a multiple of {factor} for this VAE; got {image_size}.")
        self.config = DiffusersVAEConfig(
            name=Path(model).name if local else str(model),
            input_shape=(cfg.in_channels, image_size, image_size),
            latent_shape=(cfg.latent_channels, image_size // factor, image_size // factor),
            scaling_factor=float(cfg.scaling_factor),
        )

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    def weights_sha256(self) -> str:
        return self._sha

    def _as_input(self, x: Any) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x,
                            dtype=torch.float32)
        if tuple(t.shape[1:]) != self.config.input_shape:
            raise InvalidInputError(
                f"{self.config.name}: images must have shape (n, {', '.join(map(str, self.config.input_shape))}); "
                f"got {tuple(t.shape)}."
            )
        if not torch.isfinite(t).all():
            raise InvalidInputError(f"{self.config.name}: input contains NaN or inf.")
        return t.to(self.device)

    def check_range(self, x: torch.Tensor) -> None:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidInputError(f"{self.config.name} takes images in [0, 1]; the data spans [{lo:.3g}, {hi:.3g}].")

    @torch.no_grad()
    def encode(self, x: Any) -> Posterior:
        t = self._as_input(x)
        self.check_range(t)
        dist = self.vae.encode(t * 2.0 - 1.0).latent_dist
        s = self.config.scaling_factor
        # scaling z by s scales its log-variance by 2 log s
        return Posterior((dist.mean * s).flatten(1), (dist.logvar + 2 * math.log(s)).flatten(1))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        z = z.view(z.shape[0], *self.config.latent_shape) / self.config.scaling_factor
        return (self.vae.decode(z).sample + 1.0) / 2.0

    @torch.no_grad()
    def decode(self, z: Any) -> torch.Tensor:
        z = as_latents(z, self.config.latent_dim, f"{self.config.name} (latents {'x'.join(map(str, self.config.latent_shape))})",
                       self.device)
        return self.decode_logits(z).clamp(0.0, 1.0)

    def reconstruct(self, x: Any) -> torch.Tensor:
        return self.decode(self.encode(x).mode())

    def sample(self, n: int, *, seed: int | None = None, sampler=None) -> torch.Tensor:
        return self.decode(draw_latents(n, self.config.latent_dim, seed, sampler))

    @torch.no_grad()
    def latents(self, x: Any, batch_size: int = 16) -> np.ndarray:
        x = np.asarray(x)
        return np.concatenate([self.encode(x[s : s + batch_size]).mode().cpu().numpy()
                               for s in range(0, len(x), batch_size)]).astype(np.float32)

    def loss_terms(self, x: torch.Tensor, generator=None) -> dict[str, torch.Tensor]:
        post = self.encode(x)
        return {"reconstruction": self.nll(x, self.decode_logits(post.mode())), "kl": post.kl()}

    def nll(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """Squared reconstruction error / 2 per image (a unit-variance Gaussian, up to a constant)."""
        return 0.5 * ((decoded - x) ** 2).flatten(1).sum(1)

    def eval(self) -> DiffusersVAE:
        self.vae.eval()
        return self

    @property
    def spec(self) -> SpaceSpec:
        return SpaceSpec(
            model=f"latent:{self.config.name}", dim=self.config.latent_dim, normalize=False, metric="l2",
            weights_sha256=self._sha if len(self._sha) == 64 else None,
            revision=None if len(self._sha) == 64 else self._sha, modality="latent",
            metadata={"kind": "autoencoder_kl", "latent_shape": list(self.config.latent_shape),
                      "scaling_factor": self.config.scaling_factor},
        )
