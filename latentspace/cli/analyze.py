"""``latentspace analyze``: look at a space, measure it, compare it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from ..core.errors import InvalidInputError

analyze_app = typer.Typer(help="Project, diagnose and report on a space (a collection or a .npy file).",
                          no_args_is_help=True)


def load_space(source: Path, collection: Optional[str]):
    """A collection of a store, or an (n, d) array from a .npy file (read without pickle)."""
    if source.suffix == ".npy":
        if collection:
            raise InvalidInputError("Give a .npy file alone, or a store directory and a collection name.")
        try:
            arr = np.load(source, allow_pickle=False)
        except FileNotFoundError:
            from ..core.errors import NotFoundError

            raise NotFoundError(f"No such file: {source}") from None
        except ValueError as exc:
            raise InvalidInputError(f"{source} is not a plain numeric .npy array ({exc}).") from None
        return arr, None
    if not collection:
        raise InvalidInputError("Name the collection: latentspace analyze ... STORE COLLECTION (or pass a .npy file).")
    from ..collections.store import open_store

    store = open_store(source, create=False)
    return store.get_collection(collection), store


@analyze_app.command("report")
def report_cmd(
    source: Path = typer.Argument(..., help="Store directory, or a .npy file of vectors."),
    collection: Optional[str] = typer.Argument(None, help="Collection name (with a store)."),
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="HTML file to write."),
    compare_with: Optional[str] = typer.Option(None, "--compare", help="Another collection of the same store, or a "
                                               ".npy file with the same rows, to compare with."),
    method: str = typer.Option("pca", help="Projection: pca, tsne or umap."),
    color_by: Optional[str] = typer.Option(None, help="Metadata field that colours the points."),
    max_points: int = typer.Option(5000, help="Sample this many points (seeded) when there are more."),
    seed: int = typer.Option(0, help="Seed for sampling and projections."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """One self-contained HTML page: projection, diagnostics with explanations, comparison."""
    from ..analysis.report import report_html
    from .common import console, emit_json

    space, store = load_space(source, collection)
    try:
        other = None
        if compare_with:
            if compare_with.endswith(".npy"):
                other, _ = load_space(Path(compare_with), None)
            elif store is not None:
                other = store.get_collection(compare_with)
            else:
                raise InvalidInputError("--compare with a .npy source must be another .npy file.")
        path = report_html(space, output, other=other, method=method, color_by=color_by, max_points=max_points,
                           seed=seed)
    finally:
        if store is not None:
            store.close()
    if as_json:
        emit_json({"report": str(path), "bytes": path.stat().st_size})
    else:
        console.print(f"Wrote {path} ({path.stat().st_size / 1e6:.1f} MB, opens offline).")


@analyze_app.command("diagnose")
def diagnose_cmd(
    source: Path = typer.Argument(..., help="Store directory, or a .npy file of vectors."),
    collection: Optional[str] = typer.Argument(None, help="Collection name (with a store)."),
    k: int = typer.Option(10, help="Neighbours for hubness."),
    max_points: int = typer.Option(5000, help="Sample this many points (seeded) when there are more."),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Distance concentration, hubness, isotropy, intrinsic dimension and norms, explained."""
    from ..analysis.diagnostics import diagnose
    from .common import console, emit_json

    space, store = load_space(source, collection)
    try:
        d = diagnose(space, k=k, sample=max_points, seed=seed)
    finally:
        if store is not None:
            store.close()
    if as_json:
        emit_json(d.to_dict())
        return
    table = Table(title=f"Diagnostics of {collection or source} ({d.n_points:,} points, {d.dim}-d)", title_justify="left")
    table.add_column("measure")
    table.add_column("")
    table.add_column("what it says", overflow="fold")
    for name, text, concern in d.findings():
        table.add_row(name, "[red]concern[/]" if concern else "[green]fine[/]", text)
    console.print(table)
    for note in d.notes:
        console.print(f"[dim]{note}[/]")


@analyze_app.command("project")
def project_cmd(
    source: Path = typer.Argument(..., help="Store directory, or a .npy file of vectors."),
    collection: Optional[str] = typer.Argument(None, help="Collection name (with a store)."),
    output: Path = typer.Option(..., "-o", "--output", help="A .png or .html file."),
    method: str = typer.Option("pca", help="pca, tsne or umap."),
    dim: int = typer.Option(2, help="2 or 3 (3-D needs .html)."),
    color_by: Optional[str] = typer.Option(None, help="Metadata field that colours the points."),
    max_points: int = typer.Option(5000, help="Sample this many points (seeded) when there are more."),
    seed: int = typer.Option(0),
    where: Optional[str] = typer.Option(None, help='Only records matching this metadata filter (JSON).'),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Project to 2-D or 3-D and draw it (PNG, or interactive HTML that opens offline)."""
    from ..analysis.projection import as_projection, project_collection, to_html, to_png
    from .common import console, emit_json, parse_json_option

    if output.suffix not in (".png", ".html"):
        raise InvalidInputError(f"--output must end in .png or .html; got {output.name!r}.")
    filt = parse_json_option(where, "--where")
    space, store = load_space(source, collection)
    try:
        if store is not None:
            proj = project_collection(space, method, dim, color_by=color_by, max_points=max_points, seed=seed,
                                      where=filt)
        else:
            if filt is not None:
                raise InvalidInputError("--where filters a collection's records; a .npy file has no metadata.")
            proj = as_projection(space, method, dim, max_points=max_points, seed=seed)
    finally:
        if store is not None:
            store.close()
    path = to_png(proj, output) if output.suffix == ".png" else to_html(proj, output)
    if as_json:
        emit_json({"output": str(path), "points": int(proj.coords.shape[0]), "sampled": proj.sampled,
                   "notes": proj.notes})
    else:
        console.print(f"Wrote {path} ({proj.coords.shape[0]:,} points{'; ' + '; '.join(proj.notes) if proj.notes else ''}).")


@analyze_app.command("layers")
def layers_cmd(
    output: Path = typer.Option(Path("layers.html"), "-o", "--output", help="A .png or .html heat map."),
    model: Optional[str] = typer.Option(None, help="Transformers model (local folder or hub id); default MiniLM."),
    texts: int = typer.Option(300, help="How many standard-library docstrings to run through the model."),
    pooling: str = typer.Option("mean", help="mean or cls."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """A transformer's geometry layer by layer: diagnostics per layer and CKA between layers."""
    from ..data import docstring_items
    from ..embed.layers import heatmap_html, heatmap_png, layer_geometry
    from .common import console, emit_json

    if output.suffix not in (".png", ".html"):
        raise InvalidInputError(f"--output must end in .png or .html; got {output.name!r}.")
    corpus = [it.text for it in docstring_items(limit=texts)]
    geom = layer_geometry(corpus, model, pooling=pooling)
    (heatmap_png if output.suffix == ".png" else heatmap_html)(geom, output)
    if as_json:
        emit_json({**geom.to_dict(), "output": str(output)})
        return
    table = Table(title=f"{geom.model}: {geom.n_texts} texts, layer 0 = embeddings", title_justify="left")
    for col in ("layer", "isotropy", "top-1 variance", "hubness", "TwoNN dim", "MLE dim", "CKA with last"):
        table.add_column(col, justify="right")
    for row in geom.per_layer:
        i = row["layer"]
        table.add_row(str(i), f"{row['isotropy']:.3f}", f"{row['top1_variance_share']:.1%}", f"{row['hubness']:.2f}",
                      f"{row['twonn_dimension']:.1f}", f"{row['mle_dimension']:.1f}", f"{geom.cka[i, -1]:.3f}")
    console.print(table)
    console.print(f"Wrote {output}.")


def _paired_vectors(source: Path, first: str, second: str, max_points: int, seed: int):
    """The vectors of the items two collections share (by id), or two .npy arrays row by row."""
    if first.endswith(".npy") and second.endswith(".npy"):
        a, _ = load_space(Path(first), None)
        b, _ = load_space(Path(second), None)
        return np.asarray(a), np.asarray(b), None, None
    from ..collections.store import open_store

    from ..analysis.vectors import paired_vectors

    with open_store(source, create=False) as store:
        ca, cb = store.get_collection(first), store.get_collection(second)
        a, b = paired_vectors(ca, cb, max_points, seed)
        return a, b, ca.spec, cb.spec


@analyze_app.command("compare")
def compare_cmd(
    source: Path = typer.Argument(..., help="Store directory (or '.' with two .npy files)."),
    first: str = typer.Argument(..., help="First collection (or .npy file)."),
    second: str = typer.Argument(..., help="Second collection (or .npy file) holding the same items."),
    k: int = typer.Option(10, help="Neighbours for the kNN overlap."),
    max_points: int = typer.Option(20000, help="Sample this many shared items (seeded) when there are more."),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """CKA (linear, debiased, RBF), kNN overlap and similarity rank correlation of two spaces."""
    from ..analysis.compare import compare
    from .common import console, emit_json

    a, b, _, _ = _paired_vectors(source, first, second, max_points, seed)
    out = compare(a, b, k=k, seed=seed)
    if as_json:
        emit_json(out)
        return
    table = Table(title=f"{first} vs {second}: {out['points']:,} shared items", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in out.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


@analyze_app.command("align")
def align_cmd(
    source: Path = typer.Argument(..., help="Store directory (or '.' with two .npy files)."),
    first: str = typer.Argument(..., help="Source collection (or .npy)."),
    second: str = typer.Argument(..., help="Target collection (or .npy) holding the same items."),
    method: str = typer.Option("procrustes", help="procrustes or lstsq."),
    holdout: float = typer.Option(0.25, help="Share of pairs held out to measure P@1."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Folder to save the fitted aligner in."),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Fit an aligner on paired items, report held-out P@1 (NN and CSLS) before and after, save it."""
    from ..analysis.align import Aligner, retrieval_precision
    from .common import console, emit_json

    if not 0.0 < holdout < 1.0:
        raise InvalidInputError(f"--holdout must be between 0 and 1; got {holdout}.")
    a, b, _, target = _paired_vectors(source, first, second, 10**9, seed)
    order = np.random.default_rng(seed).permutation(len(a))
    cut = int(len(a) * (1 - holdout))
    tr, te = order[:cut], order[cut:]
    if len(te) < 2 or len(tr) < 2:
        raise InvalidInputError(f"{len(a)} pairs are too few to hold out {holdout:.0%} and still fit.")
    before = retrieval_precision(a[te], b[te]) if a.shape[1] == b.shape[1] else None
    al = Aligner(method, target_space=target).fit(a[tr], b[tr])
    after = al.evaluate(a[te], b[te])
    out = {"anchors": int(len(tr)), "held_out": int(len(te)), "method": method,
           "p_at_1_nn_before": None if before is None else before["p_at_1_nn"],
           "p_at_1_nn_after": after["p_at_1_nn"], "p_at_1_csls_after": after["p_at_1_csls"]}
    if output is not None:
        out["saved"] = str(al.save(output))
    if as_json:
        emit_json(out)
        return
    shown_before = "n/a" if before is None else f"{before['p_at_1_nn']:.3f}"
    saved = f" Saved to {output}." if output else ""
    console.print(f"{method}: {out['anchors']:,} anchor pairs, {out['held_out']:,} held out. P@1 nearest neighbour "
                  f"{shown_before} -> {after['p_at_1_nn']:.3f}, CSLS {after['p_at_1_csls']:.3f}.{saved}")
