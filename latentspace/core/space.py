"""SpaceSpec: the identity of a vector space, and the rule that spaces never mix."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidInputError, SpaceMismatchError
from .validation import canonical_json

Metric = Literal["cosine", "dot", "l2"]
Modality = Literal["text", "image", "text+image", "latent", "vector"]
METRICS = ("cosine", "dot", "l2")
MODALITIES = ("text", "image", "text+image", "latent", "vector")

#: fields that change the geometry of the space, hence its fingerprint. ``metric`` is how
#: a collection compares vectors, not what the vectors are: two collections with different
#: metrics over one model's vectors share a space. ``metadata`` (compute precision, library
#: versions) is informative only.
GEOMETRY_FIELDS = (
    "model",
    "weights_sha256",
    "revision",
    "dim",
    "normalize",
    "pooling",
    "query_prefix",
    "document_prefix",
    "truncate_dim",
    "dtype",
    "modality",
)


@dataclass(frozen=True)
class SpaceSpec:
    """Everything that decides which space a vector lives in.

    >>> a = SpaceSpec(model="my/model", dim=384)
    >>> a.fingerprint == SpaceSpec(model="my/model", dim=384, metric="dot").fingerprint
    True
    """

    model: str
    dim: int
    normalize: bool = True
    metric: Metric = "cosine"
    weights_sha256: str | None = None
    revision: str | None = None
    pooling: str | None = None
    query_prefix: str = ""
    document_prefix: str = ""
    truncate_dim: int | None = None
    dtype: str = "float32"
    modality: Modality = "text"
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    _fingerprint: str = field(default="", init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidInputError(f"SpaceSpec.model must be a non-empty string. Got {self.model!r}.")
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or not 1 <= self.dim <= 65536:
            raise InvalidInputError(f"SpaceSpec.dim must be an int in the range [1, 65536]. Got {self.dim!r}.")
        if not isinstance(self.normalize, bool):
            raise InvalidInputError(f"SpaceSpec.normalize must be a bool. Got {self.normalize!r}.")
        if self.metric not in METRICS:
            raise InvalidInputError(f"SpaceSpec.metric must be one of {METRICS}. Got {self.metric!r}.")
        if self.modality not in MODALITIES:
            raise InvalidInputError(f"SpaceSpec.modality must be one of {MODALITIES}. Got {self.modality!r}.")
        if self.truncate_dim is not None:
            if isinstance(self.truncate_dim, bool) or not isinstance(self.truncate_dim, int) or self.truncate_dim < 1:
                raise InvalidInputError(f"SpaceSpec.truncate_dim must be a positive int or None. Got {self.truncate_dim!r}.")
            if self.truncate_dim != self.dim:
                raise InvalidInputError(
                    f"SpaceSpec.truncate_dim ({self.truncate_dim}) must equal dim ({self.dim}): a truncated space "
                    "has the truncated dimension."
                )
        if self.dtype != "float32":
            raise InvalidInputError(f"SpaceSpec.dtype must be 'float32'. Got {self.dtype!r}.")
        if not isinstance(self.metadata, dict):
            raise InvalidInputError("SpaceSpec.metadata must be a dict.")
        object.__setattr__(self, "metadata", json.loads(canonical_json(self.metadata)))
        digest = hashlib.sha256(canonical_json(self.geometry()).encode()).hexdigest()[:16]
        object.__setattr__(self, "_fingerprint", digest)

    # -- identity -------------------------------------------------------------------
    def geometry(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in GEOMETRY_FIELDS}

    @property
    def fingerprint(self) -> str:
        """Short stable hash of the geometry fields; equal fingerprints = same space."""
        return self._fingerprint

    def differences(self, other: SpaceSpec) -> dict[str, tuple[Any, Any]]:
        """Geometry fields where ``other`` differs from ``self``: name -> (self's, other's)."""
        return {
            name: (getattr(self, name), getattr(other, name))
            for name in GEOMETRY_FIELDS
            if getattr(self, name) != getattr(other, name)
        }

    def require_same(self, other: SpaceSpec, context: str) -> None:
        """Raise SpaceMismatchError naming each differing field unless ``other`` is this space."""
        if not isinstance(other, SpaceSpec):
            raise InvalidInputError(f"space= must be a SpaceSpec. Got {type(other).__name__}.")
        if other._fingerprint == self._fingerprint:
            return
        diffs = self.differences(other)
        if diffs:
            listed = "; ".join(f"{name}: {a!r} != {b!r}" for name, (a, b) in diffs.items())
            raise SpaceMismatchError(
                f"{context}: space mismatch ({listed}). The collection's space is {self.describe()} "
                f"[{self.fingerprint}], the given one is {other.describe()} [{other.fingerprint}]. Vectors from "
                "different spaces are not comparable: use the collection's encoder, or migrate the collection.",
                diffs,
            )

    def describe(self) -> str:
        extra = []
        if self.truncate_dim:
            extra.append(f"truncated to {self.truncate_dim}")
        if not self.normalize:
            extra.append("unnormalized")
        return f"{self.model} ({self.dim}-d{', ' + ', '.join(extra) if extra else ''})"

    def replace(self, **changes: Any) -> SpaceSpec:
        return dataclasses.replace(self, **changes)

    # -- serialization ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpaceSpec:
        if not isinstance(data, dict):
            raise InvalidInputError("A SpaceSpec must be a JSON object.")
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(f"Unknown SpaceSpec field(s): {sorted(unknown)}. Known: {sorted(known)}.")
        missing = [f for f in ("model", "dim") if f not in data]
        if missing:
            raise InvalidInputError(f"A SpaceSpec needs {' and '.join(missing)}; got fields {sorted(data)}.")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> SpaceSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"SpaceSpec JSON is malformed: {exc}") from None
        return cls.from_dict(data)
