"""Typed configs of latent models, validated with clear errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..core.errors import InvalidInputError

Kind = Literal["ae", "vae", "beta_vae"]
Arch = Literal["mlp", "conv"]
Likelihood = Literal["bernoulli", "gaussian"]


@dataclass(frozen=True)
class LatentConfig:
    """What a latent model is. ``input_shape``: ``(features,)`` for MLPs, ``(channels, h, w)`` for conv.

    ``likelihood="bernoulli"`` needs data in [0, 1] (sigmoid output, binary cross-entropy);
    ``"gaussian"`` takes any real data (linear output, squared error).
    """

    input_shape: tuple[int, ...]
    latent_dim: int = 8
    kind: Kind = "vae"
    arch: Arch = "mlp"
    hidden: tuple[int, ...] = (256, 128)
    likelihood: Likelihood = "bernoulli"
    beta: float = 1.0
    name: str = "latent-model"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for fname, allowed in (("kind", Kind), ("arch", Arch), ("likelihood", Likelihood)):
            value = getattr(self, fname)
            if value not in get_args(allowed):
                raise InvalidInputError(
                    f"LatentConfig.{fname} must be one of {list(get_args(allowed))}; got {value!r}."
                )
        if not self.input_shape or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in self.input_shape):
            raise InvalidInputError(f"LatentConfig.input_shape must be positive ints; got {self.input_shape!r}.")
        if self.arch == "conv" and len(self.input_shape) != 3:
            raise InvalidInputError(f"A conv model needs input_shape (channels, h, w); got {self.input_shape!r}.")
        if self.arch == "mlp" and len(self.input_shape) not in (1, 3):
            raise InvalidInputError(f"An MLP model needs input_shape (features,) or (c, h, w); got {self.input_shape!r}.")
        if not isinstance(self.latent_dim, int) or isinstance(self.latent_dim, bool) or not 1 <= self.latent_dim <= 4096:
            raise InvalidInputError(f"LatentConfig.latent_dim must be an int in [1, 4096]; got {self.latent_dim!r}.")
        if not self.hidden or any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise InvalidInputError(f"LatentConfig.hidden must be positive ints; got {self.hidden!r}.")
        if not isinstance(self.beta, (int, float)) or isinstance(self.beta, bool) or not 0 < self.beta <= 1000:
            raise InvalidInputError(f"LatentConfig.beta must be in (0, 1000]; got {self.beta!r}.")
        if self.kind == "vae" and self.beta != 1.0:
            raise InvalidInputError("A plain VAE has beta = 1; use kind='beta_vae' for another beta.")

    @property
    def variational(self) -> bool:
        return self.kind in ("vae", "beta_vae")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatentConfig:
        return config_from_dict(cls, data, required=("input_shape",))


def config_from_dict(cls, data: Any, *, required: tuple[str, ...] = ()):
    """A config dataclass from its JSON object: unknown options and missing required ones
    are InvalidInputErrors naming them (never a TypeError)."""
    name = cls.__name__
    if not isinstance(data, dict):
        raise InvalidInputError(f"A {name} must be a JSON object.")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise InvalidInputError(f"Unknown {name} option(s) {sorted(unknown)}; known: {sorted(known)}.")
    missing = [f for f in required if f not in data]
    if missing:
        raise InvalidInputError(f"A {name} needs {', '.join(missing)}.")
    return cls(**data)
