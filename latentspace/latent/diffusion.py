"""Latent diffusion: text in, image out, through two spaces.

A denoiser learns to remove noise from a trained autoencoder's latents (a latentspace VAE,
or a diffusers ``AutoencoderKL``), conditioned on class labels or on text embeddings from
any latentspace Encoder; diffusers' schedulers add the noise in training (DDPM) and take it
away in sampling (DDPM or DDIM), with classifier-free guidance. Generating is then: embed
the prompt (the encoder's space), denoise from Gaussian noise (the VAE's latent space),
decode (pixels).

Two denoisers behind one interface: a residual MLP for flat latents (an MLP VAE's) and
diffusers' ``UNet2DConditionModel`` for image-shaped latents (an AutoencoderKL's), the
condition entering it by cross-attention.

A model is a folder: ``config.json`` (this config, both spaces as SpaceSpecs with their
fingerprints, the latent normalisation, what it was trained on) + ``model.safetensors``.
Loading refuses a VAE or a text encoder whose space differs from the ones it was trained in.

Beware (DESIGN §12): diffusers' DDPM/DDIM schedulers default to ``clip_sample=True``, which
destroys guidance on small latents; every scheduler here is built with it off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from ..core.errors import InvalidInputError, ModelLoadError, TrainingDivergedError
from ..core.io import write_json
from ..core.space import SpaceSpec
from ..core.validation import check_float, check_int

Cond = Literal["text", "class"]
Arch = Literal["mlp", "unet"]
Sampler = Literal["ddim", "ddpm"]
FORMAT = 1
KIND = "latentspace.LatentDiffusion"


@dataclass(frozen=True)
class DiffusionConfig:
    """What a latent diffusion model is.

    ``latent_shape``: ``(d,)`` for a flat latent (an MLP VAE's), ``(c, h, w)`` for an image
    latent (an AutoencoderKL's; ``arch="unet"``). ``cond``: ``"text"`` (``cond_dim``: the
    text encoder's dimension) or ``"class"`` (``num_classes``). ``uncond_prob``: the share
    of training steps without the condition, which classifier-free guidance needs.
    ``cond_noise``: in training, each text embedding is moved by Gaussian noise of this
    share of its norm (then rescaled to its norm): the model learns to answer a neighbourhood of each
    caption, which carries it to wordings it never saw (conditioning augmentation)."""

    latent_shape: tuple[int, ...]
    cond: Cond = "text"
    arch: Arch = "mlp"
    cond_dim: int = 0
    num_classes: int = 0
    hidden: int = 512
    blocks: int = 4
    channels: tuple[int, ...] = (64, 128)
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    uncond_prob: float = 0.15
    cond_noise: float = 0.0
    name: str = "latent-diffusion"

    def __post_init__(self) -> None:
        object.__setattr__(self, "latent_shape", tuple(self.latent_shape))
        object.__setattr__(self, "channels", tuple(self.channels))
        for fname, allowed in (("cond", Cond), ("arch", Arch)):
            if getattr(self, fname) not in get_args(allowed):
                raise InvalidInputError(f"DiffusionConfig.{fname} must be one of {list(get_args(allowed))}; "
                                        f"got {getattr(self, fname)!r}.")
        if not self.latent_shape or any(not isinstance(s, int) or isinstance(s, bool) or s < 1
                                        for s in self.latent_shape):
            raise InvalidInputError(f"DiffusionConfig.latent_shape must be positive ints; got {self.latent_shape!r}.")
        if self.arch == "unet" and len(self.latent_shape) != 3:
            raise InvalidInputError(f"A UNet denoiser needs an image latent (c, h, w); got {self.latent_shape!r}. "
                                    "Use arch='mlp' for a flat latent.")
        if self.cond == "text":
            check_int(self.cond_dim, "cond_dim", "DiffusionConfig", 1, 65536)
        else:
            check_int(self.num_classes, "num_classes", "DiffusionConfig", 2, 100_000)
        check_int(self.hidden, "hidden", "DiffusionConfig", 8, 16384)
        check_int(self.blocks, "blocks", "DiffusionConfig", 1, 64)
        check_int(self.train_timesteps, "train_timesteps", "DiffusionConfig", 10, 100_000)
        check_float(self.uncond_prob, "uncond_prob", "DiffusionConfig", 0.0, 0.9)
        check_float(self.cond_noise, "cond_noise", "DiffusionConfig", 0.0, 10.0)
        if self.beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise InvalidInputError("DiffusionConfig.beta_schedule must be 'linear', 'scaled_linear' or "
                                    f"'squaredcos_cap_v2'; got {self.beta_schedule!r}.")

    @property
    def latent_dim(self) -> int:
        return math.prod(self.latent_shape)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["latent_shape"], d["channels"] = list(self.latent_shape), list(self.channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffusionConfig:
        from .config import config_from_dict

        return config_from_dict(cls, data, required=("latent_shape",))


# -- networks ---------------------------------------------------------------------------
def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (integer) timesteps, as in the DDPM paper."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class _Conditioner(nn.Module):
    """Condition -> vector: a text embedding as it is (a learned vector stands for "no
    prompt"), or a learned embedding per class (plus one for "no class")."""

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        self.text = cfg.cond == "text"
        if self.text:
            self.null = nn.Parameter(torch.zeros(cfg.cond_dim))
            self.dim = cfg.cond_dim
        else:
            self.table = nn.Embedding(cfg.num_classes + 1, cfg.hidden)
            self.null_index = cfg.num_classes
            self.dim = cfg.hidden

    def forward(self, cond: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """``cond``: (n, cond_dim) embeddings or (n,) class indices; ``drop``: (n,) bool, True = unconditional."""
        if self.text:
            return torch.where(drop[:, None], self.null.expand(cond.shape[0], -1), cond)
        return self.table(torch.where(drop, torch.full_like(cond, self.null_index), cond))


class _ResBlock(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden * 2)
        self.emb = nn.Linear(hidden, hidden * 2)
        self.fc2 = nn.Linear(hidden * 2, hidden)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h, e):
        return h + self.fc2(nn.functional.silu(self.fc1(self.norm(h)) + self.emb(e)))


class _MLPDenoiser(nn.Module):
    """eps(z_t, t, c) for flat latents: residual MLP blocks, time and condition added in each."""

    def __init__(self, cfg: DiffusionConfig, cond_dim: int):
        super().__init__()
        d, h = cfg.latent_dim, cfg.hidden
        self.hidden = h
        self.time = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h))
        self.cond = nn.Sequential(nn.Linear(cond_dim, h), nn.SiLU(), nn.Linear(h, h))
        self.inp = nn.Linear(d, h)
        self.blocks = nn.ModuleList(_ResBlock(h) for _ in range(cfg.blocks))
        self.out = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, d))

    def forward(self, z, t, c):
        e = nn.functional.silu(self.time(timestep_embedding(t, self.hidden)) + self.cond(c))
        h = self.inp(z.flatten(1))
        for block in self.blocks:
            h = block(h, e)
        return self.out(h).view(z.shape)


class _UNetDenoiser(nn.Module):
    """eps(z_t, t, c) for image latents: diffusers' UNet2DConditionModel, the condition one
    token of cross-attention."""

    def __init__(self, cfg: DiffusionConfig, cond_dim: int):
        super().__init__()
        from ..embed import _loading

        diffusers = _loading.require("diffusers", "latent")
        c, h, w = cfg.latent_shape
        n = len(cfg.channels)
        self.unet = diffusers.UNet2DConditionModel(
            sample_size=h, in_channels=c, out_channels=c, block_out_channels=cfg.channels, layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
            cross_attention_dim=cond_dim, attention_head_dim=8, norm_num_groups=min(32, min(cfg.channels)))

    def forward(self, z, t, c):
        return self.unet(z, t, encoder_hidden_states=c[:, None, :]).sample


def _scheduler(cfg: DiffusionConfig, kind: str):
    from ..embed import _loading

    diffusers = _loading.require("diffusers", "latent")
    cls = {"ddpm": diffusers.DDPMScheduler, "ddim": diffusers.DDIMScheduler}[kind]
    # clip_sample=False: diffusers' default clips x0 to [-1, 1], which wrecks guidance on latents (DESIGN §12)
    return cls(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule, clip_sample=False,
               prediction_type="epsilon")


# -- the model --------------------------------------------------------------------------
@dataclass
class DiffusionReport:
    epochs: int
    steps: int
    seconds: float
    device: str
    final_loss: float
    history: list[dict[str, float]] = field(default_factory=list)


class LatentDiffusion(nn.Module):
    """A denoiser over an autoencoder's latents, conditioned on text or classes.

    ``vae``: a LatentModel or DiffusersVAE (anything with ``latents``, ``decode`` and
    ``spec``); ``text_encoder``: a latentspace Encoder for ``cond="text"``. Build it with
    :meth:`create`, train it with :meth:`fit`, make images with :meth:`generate`, save it
    with :meth:`save`, load it with :func:`load_diffusion`."""

    def __init__(self, config: DiffusionConfig, vae, text_encoder=None, *, class_names: Sequence[str] | None = None,
                 shift: np.ndarray | None = None, scale: np.ndarray | None = None, seed: int | None = 0):
        super().__init__()
        self.config = config
        self.vae = vae
        self.text_encoder = text_encoder
        if config.cond == "text" and text_encoder is None:
            raise InvalidInputError("A text-conditioned diffusion model needs text_encoder= (a latentspace Encoder).")
        if config.cond == "text" and text_encoder.spec.dim != config.cond_dim:
            raise InvalidInputError(f"cond_dim {config.cond_dim} but the text encoder makes "
                                    f"{text_encoder.spec.dim}-d vectors.")
        if vae.spec.dim != config.latent_dim:
            raise InvalidInputError(f"The VAE's latents have {vae.spec.dim} values; the config says "
                                    f"{config.latent_dim} ({config.latent_shape}).")
        from .models import seeded

        with seeded(seed):  # the initial weights follow the seed
            self.conditioner = _Conditioner(config)
            net = _UNetDenoiser if config.arch == "unet" else _MLPDenoiser
            self.denoiser = net(config, self.conditioner.dim)
        self.class_names = list(class_names) if class_names is not None else None
        d = config.latent_dim
        self.register_buffer("shift", torch.as_tensor(np.zeros(d) if shift is None else shift, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(np.ones(d) if scale is None else scale, dtype=torch.float32))
        self.training_info: dict[str, Any] = {}
        self._embedded: dict[str, np.ndarray] = {}

    @classmethod
    def create(cls, vae, *, cond: Cond = "text", text_encoder=None, num_classes: int | None = None,
               class_names: Sequence[str] | None = None, arch: Arch | None = None, seed: int | None = 0,
               **options) -> LatentDiffusion:
        """A new, untrained model over ``vae``'s latents (``arch`` follows the latent's shape;
        ``seed``: the initial weights)."""
        shape = tuple(getattr(vae.config, "latent_shape", None) or (vae.spec.dim,))
        if cond == "text":
            if text_encoder is None:
                from ..embed import default_encoder

                text_encoder = default_encoder()
            options["cond_dim"] = text_encoder.spec.dim
        elif cond == "class":
            if num_classes is None and class_names is not None:
                num_classes = len(class_names)
            options["num_classes"] = num_classes or 0
        config = DiffusionConfig(latent_shape=shape, cond=cond, arch=arch or ("unet" if len(shape) == 3 else "mlp"),
                                 **options)
        return cls(config, vae, text_encoder if cond == "text" else None, class_names=class_names, seed=seed)

    @property
    def device(self) -> torch.device:
        return self.shift.device

    # -- spaces -----------------------------------------------------------------------------
    @property
    def vae_spec(self) -> SpaceSpec:
        return self.vae.spec

    @property
    def text_spec(self) -> SpaceSpec | None:
        return self.text_encoder.spec if self.text_encoder is not None else None

    # -- conditions -------------------------------------------------------------------------
    def _embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Text embeddings, each distinct text embedded once per model."""
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
            raise InvalidInputError("Prompts must be a non-empty list of strings.")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise InvalidInputError(f"prompt {i} is empty or not text: {t!r}.")
        new = [t for t in dict.fromkeys(texts) if t not in self._embedded]
        if new:
            vecs = np.asarray(self.text_encoder.encode_documents(new), dtype=np.float32)
            self._embedded.update(zip(new, vecs))
        return torch.as_tensor(np.stack([self._embedded[t] for t in texts]), device=self.device)

    def _conditions(self, conds) -> torch.Tensor:
        if self.config.cond == "text":
            return self._embed(list(conds) if not isinstance(conds, str) else conds)
        labels = self._labels(conds)
        return torch.as_tensor(labels, dtype=torch.long, device=self.device)

    def _labels(self, conds) -> np.ndarray:
        if isinstance(conds, (str, int, np.integer)):
            values = [conds]
        elif isinstance(conds, (np.ndarray, torch.Tensor)):
            values = conds.reshape(-1).tolist()
        else:
            values = list(conds)
        out = []
        for v in values:
            if isinstance(v, str) or isinstance(v, np.str_):
                if not self.class_names or str(v) not in self.class_names:
                    raise InvalidInputError(f"Unknown class {v!r}; the classes are {self.class_names}.")
                out.append(self.class_names.index(str(v)))
            elif isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= int(v) < self.config.num_classes:
                out.append(int(v))
            else:
                raise InvalidInputError(f"A class label must be an int in [0, {self.config.num_classes}) or a class "
                                        f"name; got {v!r}.")
        return np.asarray(out, dtype=np.int64)

    # -- training -----------------------------------------------------------------------------
    def fit(self, x: Any = None, conditions: Sequence | None = None, *, latents: np.ndarray | None = None,
            epochs: int = 150, batch_size: int = 256, lr: float = 1e-3, ema: float = 0.999, seed: int = 0,
            device: str | None = None, cache=None,
            progress: Callable[[int, dict[str, float]], None] | None = None) -> DiffusionReport:
        """Train on images ``x`` (encoded once by the VAE, through ``cache``, a LatentCache, when
        given) or on their ``latents``, with one condition per item: a caption, a list of
        captions (one drawn at each step), or a class label."""
        from .train import pick_device

        check_int(epochs, "epochs", "fit", 1, 1_000_000)
        check_int(batch_size, "batch_size", "fit", 2, 1 << 20)
        check_float(lr, "lr", "fit", 1e-7, 1.0)
        check_float(ema, "ema", "fit", 0.0, 0.99999)
        if (x is None) == (latents is None):
            raise InvalidInputError("fit: pass the images x or their latents, one of the two.")
        data_sha = None
        if latents is None:
            arr = np.asarray(x, dtype=np.float32)
            data_sha = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
            if cache is not None:
                latents, _ = cache.latents(self.vae, arr)
            else:
                latents = self.vae.latents(arr)
        z = np.asarray(latents, dtype=np.float32).reshape(len(latents), -1)
        if z.shape[1] != self.config.latent_dim or not np.isfinite(z).all():
            raise InvalidInputError(f"fit: latents must be finite, {self.config.latent_dim} values each; got "
                                    f"shape {z.shape}.")
        if conditions is None or len(conditions) != len(z):
            raise InvalidInputError(f"fit: one condition per item ({len(z)}); got "
                                    f"{None if conditions is None else len(conditions)}.")
        if len(z) < 2:
            raise InvalidInputError("fit needs at least 2 items.")
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        # condition table: each item's options (captions or one label)
        if self.config.cond == "text":
            options = [[c] if isinstance(c, str) else list(c) for c in conditions]
            uniq = sorted({t for opts in options for t in opts})
            table = self._embed(uniq).cpu()
            where = {t: i for i, t in enumerate(uniq)}
            choices = [np.asarray([where[t] for t in opts]) for opts in options]
        else:
            labels = self._labels(conditions)
            table = None
            choices = [np.asarray([v]) for v in labels]
        # latents normalised per dimension: the noise schedule assumes unit scale
        shift, scale = z.mean(0), z.std(0) + 1e-6
        if len(self.config.latent_shape) == 3:  # image latents: one scale per channel
            c = self.config.latent_shape[0]
            zc = z.reshape(len(z), c, -1)
            shift = np.repeat(zc.mean((0, 2)), zc.shape[2])
            scale = np.repeat(zc.std((0, 2)) + 1e-6, zc.shape[2])
        self.shift.copy_(torch.as_tensor(shift))
        self.scale.copy_(torch.as_tensor(scale))
        zn = torch.as_tensor((z - shift) / scale)
        dev = pick_device(device)
        self.to(dev)
        sched = _scheduler(self.config, "ddpm")
        params = [p for n, p in self.named_parameters() if not n.startswith("vae.")]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        steps_total = epochs * math.ceil(len(z) / batch_size)
        lr_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps_total, pct_start=0.05)
        # the EMA of the weights: (live tensor, its average), listed once
        averaged = [(v, v.detach().clone()) for v in self._own_state().values() if v.dtype.is_floating_point]
        history: list[dict[str, float]] = []
        t0, step = time.perf_counter(), 0
        self.train()
        shape = self.config.latent_shape
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(z), generator=gen)
            total = 0.0
            for s in range(0, len(z), batch_size):
                idx = order[s : s + batch_size]
                z0 = zn[idx].to(dev).view(len(idx), *shape)
                if table is not None:
                    pick = [int(rng.choice(choices[i])) for i in idx.tolist()]
                    cond = table[pick].to(dev)
                    if self.config.cond_noise:
                        norm = cond.norm(dim=1, keepdim=True)
                        jitter = torch.randn(cond.shape, generator=gen).to(dev)
                        jitter *= self.config.cond_noise * norm / jitter.norm(dim=1, keepdim=True)
                        moved = cond + jitter
                        cond = moved * norm / moved.norm(dim=1, keepdim=True).clamp_min(1e-12)
                else:
                    cond = torch.as_tensor([int(choices[i][0]) for i in idx.tolist()], device=dev)
                drop = torch.rand(len(idx), generator=gen).to(dev) < self.config.uncond_prob
                noise = torch.randn(z0.shape, generator=gen).to(dev)
                t = torch.randint(0, self.config.train_timesteps, (len(idx),), generator=gen).to(dev)
                zt = sched.add_noise(z0, noise, t)  # sqrt(a_t) z0 + sqrt(1 - a_t) noise
                pred = self.denoiser(zt, t, self.conditioner(cond, drop))
                loss = nn.functional.mse_loss(pred, noise)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(f"The diffusion loss became {loss.item()} in epoch {epoch}: lower the "
                                                "learning rate (lr).")
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                lr_sched.step()
                step += 1
                with torch.no_grad():
                    decay = min(ema, (1 + step) / (10 + step))
                    for live, avg in averaged:
                        avg.mul_(decay).add_(live, alpha=1 - decay)
                total += loss.item() * len(idx)
            row = {"epoch": epoch, "loss": total / len(z)}
            history.append(row)
            if progress:
                progress(epoch, row)
        with torch.no_grad():
            for live, avg in averaged:
                live.copy_(avg)
        self.eval()
        seconds = time.perf_counter() - t0
        self.training_info = {"items": len(z), "epochs": epochs, "batch_size": batch_size, "lr": lr, "ema": ema,
                              "seed": seed, "seconds": round(seconds, 1), "device": dev,
                              "final_loss": history[-1]["loss"], "vae_weights_sha256": self.vae.weights_sha256(),
                              "data_sha256": data_sha}
        return DiffusionReport(epochs, step, seconds, dev, history[-1]["loss"], history)

    def _own_state(self) -> dict[str, torch.Tensor]:
        """The denoiser's and conditioner's tensors (the VAE and text encoder are not this model's)."""
        state = {f"denoiser.{k}": v for k, v in self.denoiser.state_dict(keep_vars=True).items()}
        state.update({f"conditioner.{k}": v for k, v in self.conditioner.state_dict(keep_vars=True).items()})
        return {k: (v.data if isinstance(v, nn.Parameter) else v) for k, v in state.items()}

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample_latents(self, conditions, *, n: int = 1, guidance: float = 3.0, steps: int = 50,
                       sampler: Sampler = "ddim", seed: int | None = 0, noise: torch.Tensor | None = None,
                       progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Latents for each condition (a prompt, a class label), ``n`` per condition, in order:
        (len(conditions) * n, *latent_shape) in the VAE's latent space."""
        check_int(n, "n", "generate", 1, 100_000)
        check_int(steps, "steps", "generate", 1, self.config.train_timesteps)
        check_float(guidance, "guidance", "generate", 0.0, 100.0)
        if sampler not in get_args(Sampler):
            raise InvalidInputError(f"sampler must be one of {list(get_args(Sampler))}; got {sampler!r}.")
        conds = [conditions] if isinstance(conditions, (str, int)) else list(conditions)
        if not conds:
            raise InvalidInputError("generate: give at least one prompt or class.")
        self.eval()
        dev = self.device
        c = self._conditions(conds).repeat_interleave(n, dim=0)
        m = c.shape[0]
        cond_vec = self.conditioner(c, torch.zeros(m, dtype=torch.bool, device=dev))
        null_vec = self.conditioner(c, torch.ones(m, dtype=torch.bool, device=dev))
        return self._denoise(cond_vec, null_vec, guidance, steps, sampler, seed, noise, progress)

    def _denoise(self, cond_vec, null_vec, guidance, steps, sampler, seed, noise, progress) -> torch.Tensor:
        dev = self.device
        m = cond_vec.shape[0]
        shape = (m, *self.config.latent_shape)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(shape, generator=gen).to(dev) if noise is None else noise.to(dev).reshape(shape)
        sched = _scheduler(self.config, sampler)
        sched.set_timesteps(steps)
        for i, t in enumerate(sched.timesteps):
            tt = torch.full((m,), int(t), device=dev, dtype=torch.long)
            if guidance == 1.0:
                eps = self.denoiser(z, tt, cond_vec)
            else:
                both = self.denoiser(torch.cat([z, z]), torch.cat([tt, tt]), torch.cat([cond_vec, null_vec]))
                e_c, e_u = both.chunk(2)
                eps = e_u + guidance * (e_c - e_u)
            kwargs = {"generator": gen} if sampler == "ddpm" else {}
            z = sched.step(eps, t, z, **kwargs).prev_sample
            if progress:
                progress(i + 1, len(sched.timesteps))
        flat = z.reshape(m, -1) * self.scale + self.shift
        return flat.reshape(shape)

    @torch.no_grad()
    def path_latents(self, a, b, *, frames: int = 8, method: Literal["lerp", "slerp"] = "slerp",
                     guidance: float = 3.0, steps: int = 50, sampler: Sampler = "ddim",
                     seed: int | None = 0) -> torch.Tensor:
        """Latents along a path between two prompts (or classes): the condition moves from
        ``a`` to ``b`` (slerp or lerp between their condition vectors) while the starting
        noise stays the same, so only what the prompt asks for changes."""
        from .navigate import lerp, slerp

        check_int(frames, "frames", "generate path", 2, 1000)
        check_int(steps, "steps", "generate", 1, self.config.train_timesteps)
        check_float(guidance, "guidance", "generate", 0.0, 100.0)
        if method not in ("lerp", "slerp"):
            raise InvalidInputError(f"method must be 'lerp' or 'slerp'; got {method!r}.")
        self.eval()
        dev = self.device
        c = self._conditions([a, b])
        ends = self.conditioner(c, torch.zeros(2, dtype=torch.bool, device=dev)).cpu().numpy()
        path = torch.as_tensor((slerp if method == "slerp" else lerp)(ends[0], ends[1], frames), device=dev)
        null_vec = self.conditioner(c[:1].repeat_interleave(frames, dim=0), torch.ones(frames, dtype=torch.bool,
                                                                                     device=dev))
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        noise = torch.randn((1, *self.config.latent_shape), generator=gen).repeat(frames, *([1] * len(
            self.config.latent_shape)))
        return self._denoise(path, null_vec, guidance, steps, sampler, seed, noise, None)

    @torch.no_grad()
    def generate(self, conditions, *, n: int = 1, guidance: float = 3.0, steps: int = 50, sampler: Sampler = "ddim",
                 seed: int | None = 0, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Images for each prompt (or class), ``n`` per condition: decoded by the VAE."""
        z = self.sample_latents(conditions, n=n, guidance=guidance, steps=steps, sampler=sampler, seed=seed,
                                progress=progress)
        return self.vae.decode(z.reshape(z.shape[0], -1))

    @torch.no_grad()
    def generate_path(self, a, b, *, frames: int = 8, method: Literal["lerp", "slerp"] = "slerp",
                      guidance: float = 3.0, steps: int = 50, sampler: Sampler = "ddim",
                      seed: int | None = 0) -> torch.Tensor:
        """Images along a path from prompt ``a`` to prompt ``b`` (see :meth:`path_latents`)."""
        z = self.path_latents(a, b, frames=frames, method=method, guidance=guidance, steps=steps, sampler=sampler,
                              seed=seed)
        return self.vae.decode(z.reshape(z.shape[0], -1))

    # -- saving --------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike, *, vae_path: str | os.PathLike | None = None) -> Path:
        """``config.json`` + ``model.safetensors`` (the denoiser and conditioner; the VAE and
        text encoder are recorded by their spaces, and the VAE by its folder when given)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self._own_state().items()}
        state["shift"], state["scale"] = self.shift.cpu().contiguous(), self.scale.cpu().contiguous()
        tmp = folder / "model.safetensors.tmp"
        save_file(state, str(tmp))
        os.replace(tmp, folder / "model.safetensors")
        vae_ref = None
        if vae_path is not None:
            vp = Path(vae_path).resolve()
            try:
                vae_ref = os.path.relpath(vp, folder.resolve())
            except ValueError:  # another drive
                vae_ref = str(vp)
        write_json(folder / "config.json", {
            "format": FORMAT, "kind": KIND, "config": self.config.to_dict(),
            "vae": {"spec": self.vae.spec.to_dict(), "fingerprint": self.vae.spec.fingerprint, "path": vae_ref},
            "text_encoder": None if self.text_encoder is None else {
                "spec": self.text_encoder.spec.to_dict(), "fingerprint": self.text_encoder.spec.fingerprint,
                "config": self.text_encoder.config()},
            "class_names": self.class_names, "training": self.training_info})
        return folder


def load_diffusion(folder: str | os.PathLike, *, vae=None, text_encoder=None) -> LatentDiffusion:
    """Load a saved model with its VAE (``vae``, or the folder recorded at save time) and
    text encoder (``text_encoder``, or the one recorded); either is refused with a
    SpaceMismatchError naming the differing fields when its space is not the one the model
    was trained in."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .io import read_model_folder

    folder, meta = read_model_folder(folder, KIND, "latent diffusion model", FORMAT)
    try:
        config = DiffusionConfig.from_dict(meta.get("config"))
        vae_spec = SpaceSpec.from_dict(meta["vae"]["spec"])
        text = meta.get("text_encoder")
        text_spec = SpaceSpec.from_dict(text["spec"]) if text else None
    except (InvalidInputError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{folder / 'config.json'}: {exc}") from None
    if vae is None:
        ref = meta["vae"].get("path")
        if not ref:
            raise InvalidInputError(f"{folder} does not record its VAE's folder: pass vae=.")
        from .io import open_model

        vae = open_model((folder / ref) if not Path(ref).is_absolute() else Path(ref))
    vae_spec.require_same(vae.spec, f"The VAE given to diffusion model {folder.name}")
    if config.cond == "text":
        if text_encoder is None:
            from ..embed import encoder_from_config

            text_encoder = encoder_from_config(text["config"])
        text_spec.require_same(text_encoder.spec, f"The text encoder given to diffusion model {folder.name}")
    try:
        state = load_file(str(folder / "model.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder / 'model.safetensors'} is truncated or corrupt: {exc}") from None
    shift, scale = state.pop("shift", None), state.pop("scale", None)
    model = LatentDiffusion(config, vae, text_encoder if config.cond == "text" else None,
                            class_names=meta.get("class_names"))
    own = model._own_state()
    expected = {k: tuple(v.shape) for k, v in own.items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got or shift is None or scale is None:
        raise ModelLoadError(f"{folder}: the weights do not fit the config (missing "
                             f"{sorted(set(expected) - set(got))[:3]}, unexpected {sorted(set(got) - set(expected))[:3]}).")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)
        model.shift.copy_(shift)
        model.scale.copy_(scale)
    model.training_info = meta.get("training") or {}
    model.eval()
    return model


__all__ = ["DiffusionConfig", "DiffusionReport", "LatentDiffusion", "load_diffusion", "timestep_embedding"]
