"""The explorer's latent models: the map of a saved VAE's latents and a path through it,
decoded into images along the way (PNGs written by matplotlib, the ``latent`` extra's).

``latentspace serve STORE --latent DIR[:DATA.npz]`` names models (their folders); with a
``.npz`` holding ``x`` (inputs, as the model takes them) and optionally ``y`` (labels), the
map shows the data's latents (the posterior means), else latents drawn from the prior. A
path is a slerp or lerp between two points of the map, projected onto it with the map's
own PCA, each step decoded to a PNG.
"""

# no "from __future__ import annotations": FastAPI reads the routes' annotations at run time

import base64
import math
import threading
from pathlib import Path
from typing import Literal

import numpy as np

from ..core.errors import InvalidInputError, NotFoundError

MAP_POINTS = 3000


def png_data_uri(img: np.ndarray, scale: int = 4) -> str:
    """A grey (h, w) or colour (3, h, w) image in [0, 1] as a ``data:image/png`` URI, each
    pixel ``scale`` x ``scale`` (matplotlib writes the PNG)."""
    import io

    from matplotlib.image import imsave

    a = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    a = np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    imsave(buf, a, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def as_images(x: np.ndarray, input_shape: tuple) -> np.ndarray:
    """Decoded outputs as images: (n, h, w) for square feature vectors, (n, c, h, w) as they are."""
    if len(input_shape) == 3:
        return x.reshape(len(x), *input_shape)
    side = math.isqrt(input_shape[0])
    if side * side != input_shape[0]:
        raise InvalidInputError(f"The model's outputs ({input_shape[0]} features) are not square images.")
    return x.reshape(len(x), side, side)


class LatentMaps:
    """Each named model, loaded once, with its map."""

    def __init__(self, models: dict[str, str]):
        self.sources = dict(models)
        self._maps: dict[str, dict] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self.sources)

    def get(self, name: str, seed: int = 0) -> dict:
        with self._lock:
            key = f"{name}:{seed}"
            if key in self._maps:
                return self._maps[key]
            if name not in self.sources:
                raise NotFoundError(f"No latent model {name!r} on this server. Served: {', '.join(self.names()) or 'none'}"
                                    " (latentspace serve STORE --latent DIR[:DATA.npz]).")
            self._maps[key] = self._build(name, seed)
            return self._maps[key]

    def _build(self, name: str, seed: int) -> dict:
        from sklearn.decomposition import PCA

        from ..latent.io import load_model

        folder, _, data = self.sources[name].partition(":")
        model = load_model(folder)
        labels = None
        if data:
            with np.load(Path(data), allow_pickle=False) as npz:
                x = np.asarray(npz["x"], dtype=np.float32)
                labels = npz["y"].tolist() if "y" in npz.files else None
            pick = np.random.default_rng(seed).permutation(len(x))[:MAP_POINTS]
            z = model.latents(x[pick])
            labels = [labels[i] for i in pick.tolist()] if labels is not None else None
            where = f"the latents of {len(pick):,} inputs from {Path(data).name}"
        else:
            z = np.random.default_rng(seed).standard_normal((MAP_POINTS, model.config.latent_dim)).astype(np.float32)
            where = f"{MAP_POINTS:,} latents drawn from the prior N(0, I)"
        pca = PCA(n_components=2, random_state=seed).fit(z)
        return {"model": model, "z": z, "pca": pca, "coords": pca.transform(z), "labels": labels, "about": where}


def add_latent_routes(app, latent: LatentMaps, caller, allow, errors) -> None:
    from fastapi import Depends
    from pydantic import BaseModel, ConfigDict, Field

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class MapBody(Strict):
        seed: int = Field(0, ge=0, le=2**31 - 1)

    class PathBody(Strict):
        a: int = Field(ge=0)
        b: int = Field(ge=0)
        steps: int = Field(9, ge=2, le=64)
        method: Literal["slerp", "lerp"] = "slerp"
        seed: int = Field(0, ge=0, le=2**31 - 1)

    @app.get("/v1/latent", tags=["latent"], responses=errors)
    def models(entry=Depends(caller)) -> list[str]:
        allow(entry, "read")
        return latent.names()

    @app.post("/v1/latent/{name}/map", tags=["latent"], responses=errors)
    def latent_map(name: str, body: MapBody, entry=Depends(caller)) -> dict:
        allow(entry, "read")
        m = latent.get(name, body.seed)
        c = m["coords"]
        return {"ids": [str(i) for i in range(len(c))], "x": c[:, 0].round(5).tolist(), "y": c[:, 1].round(5).tolist(),
                "labels": m["labels"], "about": m["about"], "latent_dim": int(m["z"].shape[1]),
                "explained": m["pca"].explained_variance_ratio_.round(4).tolist()}

    @app.post("/v1/latent/{name}/path", tags=["latent"], responses=errors)
    def latent_path(name: str, body: PathBody, entry=Depends(caller)) -> dict:
        allow(entry, "read")
        from ..latent.navigate import lerp, slerp

        m = latent.get(name, body.seed)
        n = len(m["z"])
        if body.a >= n or body.b >= n:
            raise InvalidInputError(f"a and b are points of the map: 0 to {n - 1}.")
        zs = (slerp if body.method == "slerp" else lerp)(m["z"][body.a], m["z"][body.b], body.steps)
        model = m["model"]
        out = model.decode(zs).cpu().numpy()
        lo, hi = float(out.min()), float(out.max())
        if lo < 0 or hi > 1:  # a Gaussian decoder's outputs: shown on one scale for the whole path
            out = (out - lo) / max(hi - lo, 1e-12)
        images = as_images(out, model.config.input_shape)
        xy = m["pca"].transform(np.asarray(zs, dtype=np.float32))
        return {"x": xy[:, 0].round(5).tolist(), "y": xy[:, 1].round(5).tolist(),
                "images": [png_data_uri(i) for i in images], "method": body.method}


__all__ = ["LatentMaps", "add_latent_routes", "png_data_uri"]
