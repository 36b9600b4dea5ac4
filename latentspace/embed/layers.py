"""A transformer's hidden states, layer by layer: the model's internal latent geometry.

``layer_states`` runs texts through a transformers encoder with ``output_hidden_states``
and pools each layer (mean over real tokens, or CLS) to one vector per text;
:func:`layer_geometry` measures every layer (diagnostics) and every pair of layers
(linear CKA), with the numpy functions of :mod:`latentspace.analysis`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.errors import InvalidInputError, ModelLoadError
from ..core.validation import check_int, check_texts
from . import _loading


def _load(model: str | None, trust_remote_code: bool):
    tf = _loading.require("transformers", "embed")
    if model is None:
        from .sentence_transformers import DEFAULT_SHA256, default_model_path

        folder = default_model_path()
        _loading.verify_sha256(folder / "model.safetensors", DEFAULT_SHA256)
        source, name = str(folder), "sentence-transformers/all-MiniLM-L6-v2"
    else:
        if _loading.is_local(model):
            _loading.local_weights(Path(model).expanduser())
        source, name = str(model), str(model)
    try:
        with _loading.quiet_loading():
            tok = tf.AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
            net = tf.AutoModel.from_pretrained(source, trust_remote_code=trust_remote_code, use_safetensors=True)
    except Exception as exc:
        raise ModelLoadError(f"Could not load {name!r} for layer analysis: {exc}") from exc
    return tok, net.eval(), name


def layer_states(
    texts: list[str],
    model: str | None = None,
    *,
    pooling: Literal["mean", "cls"] = "mean",
    max_length: int = 256,
    batch_size: int = 32,
    trust_remote_code: bool = False,
) -> tuple[list[np.ndarray], str]:
    """Pooled hidden states per layer: a list of (n_texts, hidden) arrays, embeddings first."""
    import torch

    texts = check_texts(texts, "texts")
    if len(texts) < 3:
        raise InvalidInputError("layer_states needs at least 3 texts.")
    if pooling not in ("mean", "cls"):
        raise InvalidInputError(f"pooling must be 'mean' or 'cls'; got {pooling!r}.")
    check_int(max_length, "max_length", "layer_states", 2, 1 << 16)
    tok, net, name = _load(model, trust_remote_code)
    layers: list[list[np.ndarray]] = []
    for s in range(0, len(texts), batch_size):
        batch = tok(texts[s : s + batch_size], padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt")
        with torch.inference_mode():
            out = net(**batch, output_hidden_states=True)
        mask = batch["attention_mask"].unsqueeze(-1).float()
        for i, h in enumerate(out.hidden_states):
            h = h.float()
            pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1) if pooling == "mean" else h[:, 0]
            if len(layers) <= i:
                layers.append([])
            layers[i].append(pooled.numpy())
    return [np.concatenate(parts).astype(np.float64) for parts in layers], name


@dataclass
class LayerGeometry:
    model: str
    n_texts: int
    cka: np.ndarray
    per_layer: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "n_texts": self.n_texts, "cka": self.cka.round(6).tolist(),
                "per_layer": self.per_layer}


def layer_geometry(texts: list[str], model: str | None = None, *, k: int = 10, **options: Any) -> LayerGeometry:
    """Diagnostics of every layer and the linear CKA between every pair of layers."""
    from ..analysis.compare import linear_cka
    from ..analysis.diagnostics import (
        distance_concentration,
        hubness,
        isotropy,
        mle_dimension,
        norm_stats,
        twonn_dimension,
    )

    states, name = layer_states(texts, model, **options)
    n_layers = len(states)
    cka = np.eye(n_layers)
    for i in range(n_layers):
        for j in range(i + 1, n_layers):
            cka[i, j] = cka[j, i] = linear_cka(states[i], states[j])
    per_layer = []
    for i, x in enumerate(states):
        iso = isotropy(x)
        conc = distance_concentration(x, sample=min(500, len(texts)))
        per_layer.append({
            "layer": i,
            "relative_contrast": conc["relative_contrast"],
            "isotropy": iso["partition_isotropy"],
            "top1_variance_share": iso["top1_variance_share"],
            "hubness": hubness(x, min(k, len(texts) - 2))["k_occurrence_skewness"],
            "twonn_dimension": twonn_dimension(x),
            "mle_dimension": mle_dimension(x, min(20, len(texts) - 2)),
            "mean_norm": norm_stats(x)["mean"],
        })
    return LayerGeometry(name, len(texts), cka, per_layer)


def heatmap_png(geom: LayerGeometry, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    im = ax.imshow(geom.cka, vmin=0, vmax=1, cmap="viridis")
    n = geom.cka.shape[0]
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("layer")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{geom.cka[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if geom.cka[i, j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="linear CKA")
    ax.set_title(f"Layer-by-layer CKA: {geom.model} ({geom.n_texts} texts)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def heatmap_html(geom: LayerGeometry, path: str | Path) -> Path:
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=geom.cka, zmin=0, zmax=1, colorscale="Viridis", text=np.round(geom.cka, 3),
                               texttemplate="%{text}", colorbar={"title": "linear CKA"}))
    fig.update_layout(title=f"Layer-by-layer CKA: {geom.model} ({geom.n_texts} texts)",
                      xaxis_title="layer (0 = embeddings)", yaxis_title="layer", height=600, width=700)
    path = Path(path)
    fig.write_html(str(path), include_plotlyjs=True)
    return path
