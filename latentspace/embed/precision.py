"""Compute precision: bf16 where the CPU runs it natively and it agrees with fp32.

Measured on this project's machines (DESIGN §11): bf16 autocast on a CPU with
AVX512-BF16/AMX embeds 2.47x faster than fp32 at cosine >= 0.99996. The encoder checks
the agreement on a calibration set when it loads and falls back to fp32 otherwise.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache

AGREEMENT_BAR = 0.9999

CALIBRATION_TEXTS = [
    "Return the number of items in a container.",
    "The quick brown fox jumps over the lazy dog.",
    "Open a file and return a stream. Raise OSError upon failure.",
    "def add(a, b):\n    return a + b",
    "Les modèles de langue représentent le texte par des vecteurs.",
    "HTTP/1.1 404 Not Found",
    "Compute the singular value decomposition of a matrix, returning U, S and Vh such that A = U S Vh.",
    "A",
    "1234567890 3.14159 2.71828 1.41421",
    "Create a new thread pool executor with at most max_workers threads; if max_workers is None it defaults "
    "to the number of processors on the machine plus four, capped at thirty-two.",
    "Why is the sky blue? Rayleigh scattering of sunlight by the molecules of the atmosphere.",
    "user@example.com wrote: please see the attached report (pages 3-7).",
]


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    flags = cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def autocast_context(precision: str, device: str):
    import torch

    if precision == "bf16":
        return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def min_cosine(a, b) -> float:
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float((num / den).min())


def calibration_key(weights_sha256: str, *options) -> str:
    """A calibration result holds for these weights, on this CPU, with this torch: the key."""
    import hashlib

    import torch

    flags = ",".join(sorted(f for f in cpu_flags() if "bf16" in f or "amx" in f or f.startswith("avx512")))
    text = "|".join([weights_sha256, flags, torch.__version__, *map(str, options)])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _calibration_file():
    from ..core.io import cache_dir

    return cache_dir() / "calibration.json"


def cached_calibration(key: str) -> float | None:
    """The min cosine measured before for ``key`` on this machine, if any."""
    import json

    try:
        value = json.loads(_calibration_file().read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and 0 <= value <= 1.0000001 else None


def store_calibration(key: str, value: float) -> None:
    import json

    from ..core.io import write_json

    path = _calibration_file()
    try:
        data = json.loads(path.read_text())
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, data)
    except OSError:
        pass  # a cache: the next process measures again
