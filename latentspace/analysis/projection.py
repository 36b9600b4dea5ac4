"""Projections to 2-D or 3-D (PCA, t-SNE, UMAP), seeded and repeatable, and their pictures.

PNG through matplotlib (Agg, no display needed); interactive HTML through plotly with its
JavaScript bundled into the file, so it opens offline.
"""

from __future__ import annotations

import json

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.errors import BackendUnavailableError, InvalidInputError
from ._checks import points, sample_rows

Method = Literal["pca", "tsne", "umap"]


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BackendUnavailableError(
            f"{module.split('.')[0]} is not installed. Install the analysis extra: pip install 'latentspace[analysis]'"
        ) from None


@dataclass
class Projection:
    """Low-dimensional coordinates of (a sample of) a space, with what each point is."""

    coords: np.ndarray
    method: str
    ids: list[str] | None = None
    labels: list[Any] | None = None
    hover: list[str] | None = None
    sampled: bool = False
    notes: list[str] = field(default_factory=list)


def project(
    x: Any,
    method: Method = "pca",
    dim: int = 2,
    *,
    seed: int = 0,
    perplexity: float = 30.0,
    n_neighbors: int = 15,
    metric: str = "euclidean",
) -> np.ndarray:
    """Coordinates of ``x`` in ``dim`` dimensions. Input already of that dimension is returned as is."""
    if method not in ("pca", "tsne", "umap"):
        raise InvalidInputError(f"method must be 'pca', 'tsne' or 'umap'; got {method!r}.")
    if dim not in (2, 3):
        raise InvalidInputError(f"dim must be 2 or 3; got {dim!r}.")
    x = points(x, min_rows=3, where="project")
    if x.shape[1] == dim:
        return x.copy()
    if x.shape[1] < dim:
        raise InvalidInputError(f"project: the data has {x.shape[1]} dimensions, fewer than the {dim} asked for.")
    n = x.shape[0]
    if method == "pca":
        dec = _require("sklearn.decomposition")
        return dec.PCA(n_components=dim, random_state=seed).fit_transform(x)
    if method == "tsne":
        if not 0 < perplexity < n:
            raise InvalidInputError(
                f"project: t-SNE perplexity must be below the number of points ({n}); got {perplexity}. "
                f"Use a perplexity under {max(1, (n - 1) // 3)} for this sample, or more points."
            )
        manifold = _require("sklearn.manifold")
        return manifold.TSNE(n_components=dim, perplexity=perplexity, random_state=seed, init="pca",
                             metric=metric).fit_transform(x)
    if n_neighbors >= n:
        raise InvalidInputError(f"project: UMAP n_neighbors ({n_neighbors}) must be below the number of points ({n}).")
    return umap_embedding(x, dim, seed=seed, metric=metric, n_neighbors=n_neighbors)


def _umap(dim: int, seed: int, metric: str = "euclidean", n_neighbors: int = 15, min_dist: float = 0.1):
    umap = _require("umap")
    # a seed makes UMAP single-threaded (and repeatable); say so rather than be warned
    return umap.UMAP(n_components=dim, n_neighbors=n_neighbors, random_state=seed, metric=metric, min_dist=min_dist,
                     n_jobs=1)


def umap_embedding(x: np.ndarray, dim: int, *, seed: int = 0, metric: str = "euclidean", n_neighbors: int = 15,
                   min_dist: float = 0.1) -> np.ndarray:
    """UMAP of ``x`` to ``dim`` dimensions, seeded (for pictures at 2-3, for clustering at 5-10)."""
    return _umap(dim, seed, metric, n_neighbors, min_dist).fit_transform(x)


def fit_projection(x: np.ndarray, method: Method = "pca", dim: int = 2, *, seed: int = 0):
    """(the fitted PCA or UMAP, the coordinates of ``x``): the model places new points on
    the same map (``model.transform``), as the explorer does with a query."""
    if method == "pca":
        model = _require("sklearn.decomposition").PCA(n_components=dim, random_state=seed).fit(x)
        return model, model.transform(x)
    if method != "umap":
        raise InvalidInputError(f"fit_projection: method must be 'pca' or 'umap'; got {method!r}.")
    model = _umap(dim, seed, n_neighbors=min(15, len(x) - 1)).fit(x)
    return model, model.embedding_


def project_collection(col, method: Method = "pca", dim: int = 2, *, color_by: str | None = None,
                       max_points: int = 5000, seed: int = 0, where: dict | None = None, **options: Any) -> Projection:
    """Project a collection, or its records matching ``where`` (a seeded sample of
    ``max_points`` when more, and say so)."""
    from .vectors import collection_records

    recs, total = collection_records(col, max_points, seed, where)
    proj = project_records(recs, total, method, dim, color_by=color_by, seed=seed, **options)
    if where is not None:
        proj.notes.append(f"records matching {json.dumps(where)}")
    return proj


def project_records(recs: list, total: int, method: Method = "pca", dim: int = 2, *, color_by: str | None = None,
                    seed: int = 0, **options: Any) -> Projection:
    """Project records already fetched (``total``: how many the collection holds)."""
    if len(recs) < 3:
        raise InvalidInputError(f"The collection has {len(recs)} records; a projection needs at least 3.")
    coords = project(np.stack([r.vector for r in recs]), method, dim, seed=seed, **options)
    sampled = total > len(recs)
    notes = [f"a random sample of {len(recs):,} of {total:,} records (seed {seed})"] if sampled else []
    labels = [r.metadata.get(color_by) for r in recs] if color_by else None
    hover = [f"{r.id}: {(r.document or '')[:120]}" for r in recs]
    return Projection(coords, method, [r.id for r in recs], labels, hover, sampled, notes)


def as_projection(x: Any, method: Method = "pca", dim: int = 2, *, labels=None, hover=None, max_points: int = 5000,
                  seed: int = 0, **options: Any) -> Projection:
    arr = points(x, min_rows=3, where="project")
    n = arr.shape[0]
    sample, idx = sample_rows(arr, max_points, seed)
    sampled = idx is not None
    if sampled:
        labels = [labels[i] for i in idx] if labels is not None else None
        hover = [hover[i] for i in idx] if hover is not None else None
    notes = [f"a random sample of {sample.shape[0]:,} of {n:,} points (seed {seed})"] if sampled else []
    return Projection(project(sample, method, dim, seed=seed, **options), method, None, labels, hover, sampled, notes)


#: categories drawn in colours of their own; the rest share one grey "other" group
PNG_CATEGORIES = 18  # matplotlib's tab20 without its two greys (grey is "other")
HTML_CATEGORIES = 48
OTHER_COLOR = "#b0b0b0"


def category_groups(labels: list, limit: int) -> list[tuple[str, np.ndarray]]:
    """Every point in a group: the ``limit`` most frequent categories (largest first, each
    named with its count), then one "other" group holding the rest, named with how many
    categories and points it holds. Points without the field are a category of their own."""
    keys = ["(none)" if v is None else str(v) for v in labels]
    uniq, inverse, counts = np.unique(np.asarray(keys, dtype=object), return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    groups = [(f"{uniq[c]} ({counts[c]:,})", np.flatnonzero(inverse == c)) for c in order[:limit]]
    rest = order[limit:]
    if len(rest):
        idx = np.flatnonzero(np.isin(inverse, rest))
        groups.append((f"other: {len(rest):,} more categories ({len(idx):,} points)", idx))
    return groups


def _title(p: Projection) -> str:
    n = f"{p.coords.shape[0]:,} points"
    return f"{p.method.upper()} projection of {n}" + (f" — {'; '.join(p.notes)}" if p.notes else "")


def to_png(p: Projection, path: str | Path, title: str | None = None) -> Path:
    """Write the projection as a PNG scatter plot (a 3-D projection as a 3-D scatter)."""
    _require("matplotlib")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    c = p.coords
    three = c.shape[1] == 3
    fig = plt.figure(figsize=(9.5, 6) if p.labels is not None else (7, 6), dpi=110)
    ax = fig.add_subplot(projection="3d" if three else None)
    cols = [c[:, 0], c[:, 1]] + ([c[:, 2]] if three else [])
    if p.labels is not None:
        groups = category_groups(p.labels, PNG_CATEGORIES)
        tab = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
        palette = [tab(i) for i in range(tab.N) if i not in ((7,) if tab.N == 10 else (14, 15))]  # no greys
        for i, (name, m) in reversed(list(enumerate(groups))):  # "other" drawn first, underneath
            other = name.startswith("other: ")
            color = OTHER_COLOR if other else palette[i % len(palette)]
            ax.scatter(*[a[m] for a in cols], s=4 if other else 6, color=color, label=name, alpha=0.5 if other else 0.8)
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], names[::-1], markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    else:
        ax.scatter(*cols, s=6, alpha=0.7)
    ax.set_title(title or _title(p), fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if three:
        ax.set_zticks([])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def to_figure(p: Projection, title: str | None = None):
    go = _require("plotly.graph_objects")
    c = p.coords
    three = c.shape[1] == 3
    groups = [("all", np.arange(len(c)))] if p.labels is None else category_groups(p.labels, HTML_CATEGORIES)
    from plotly.colors import qualitative

    palette = qualitative.Dark24 + qualitative.Light24  # 48 distinct colours
    traces = []
    for i, (name, idx) in reversed(list(enumerate(groups))):  # "other" drawn first, underneath
        text = [p.hover[i] for i in idx] if p.hover else None
        color = OTHER_COLOR if name.startswith("other: ") else palette[i % len(palette)]
        kw = dict(x=c[idx, 0], y=c[idx, 1], mode="markers", name=name, text=text, hoverinfo="text" if text else "x+y",
                  marker={"size": 4 if three else 6, "opacity": 0.8, "color": color})
        traces.append(go.Scatter3d(z=c[idx, 2], **kw) if three else go.Scattergl(**kw) if len(c) > 20000
                      else go.Scatter(**kw))
    fig = go.Figure(traces)
    fig.update_layout(title=title or _title(p), template="plotly_white", height=600,
                      legend={"itemsizing": "constant", "traceorder": "reversed"})
    return fig


def to_html(p: Projection, path: str | Path, title: str | None = None) -> Path:
    """Write a self-contained interactive HTML file (plotly's JavaScript is inside: opens offline)."""
    fig = to_figure(p, title)
    path = Path(path)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path
