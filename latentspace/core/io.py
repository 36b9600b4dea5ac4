"""Safe file I/O: atomic writes, hashes, JSON. Never pickle."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import InvalidInputError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: str | os.PathLike) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_replace(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """fsync ``tmp``, rename it over ``final`` and fsync the directory."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)


def tmp_path_for(final: str | os.PathLike) -> str:
    final = Path(final)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    return name


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    tmp = tmp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        atomic_replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid JSON: {exc}") from None


def save_artifact(folder: str | os.PathLike, kind: str, fmt: int, config: dict, tensors: dict, weights: str):
    """A fitted object as a folder: ``config.json`` (``kind``, ``format`` and ``config``) and
    ``weights`` (safetensors of numpy arrays). Never pickle."""
    from pathlib import Path

    import numpy as np
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(folder / weights))
    write_json(folder / "config.json", {"kind": kind, "format": fmt, **config})
    return folder


def load_artifact(folder: str | os.PathLike, kind: str, fmt: int, weights: str) -> tuple[dict, dict]:
    """(config, tensors) of a folder written by :func:`save_artifact`, checked for its kind and format."""
    from pathlib import Path

    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from .errors import InvalidInputError, NotFoundError

    folder = Path(folder)
    name = kind.rsplit(".", 1)[-1]
    if not (folder / "config.json").is_file() or not (folder / weights).is_file():
        raise NotFoundError(f"{folder} is not a saved {name} (config.json and {weights} expected).")
    cfg = read_json(folder / "config.json")
    if not isinstance(cfg, dict) or cfg.get("kind") != kind or cfg.get("format") != fmt:
        raise InvalidInputError(f"{folder / 'config.json'} is not a {name} config of a known format.")
    try:
        tensors = load_file(str(folder / weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InvalidInputError(f"{folder / weights} is unreadable: {exc}") from None
    return cfg, tensors


def cache_dir() -> Path:
    """Where derived artefacts are cached between processes (``$LATENTSPACE_CACHE`` or
    ``~/.cache/latentspace``): never a source of truth, always safe to delete."""
    return Path(os.environ.get("LATENTSPACE_CACHE", Path.home() / ".cache" / "latentspace"))
