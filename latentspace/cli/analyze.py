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
    from ..storage.store import open_store

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
    from .app import console, emit_json

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
    from .app import console, emit_json

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
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Project to 2-D or 3-D and draw it (PNG, or interactive HTML that opens offline)."""
    from ..analysis.projection import as_projection, project_collection, to_html, to_png
    from .app import console, emit_json

    if output.suffix not in (".png", ".html"):
        raise InvalidInputError(f"--output must end in .png or .html; got {output.name!r}.")
    space, store = load_space(source, collection)
    try:
        if store is not None:
            proj = project_collection(space, method, dim, color_by=color_by, max_points=max_points, seed=seed)
        else:
            proj = as_projection(space, method, dim, max_points=max_points, seed=seed)
    finally:
        if store is not None:
            store.close()
    path = to_png(proj, output) if output.suffix == ".png" else to_html(proj, output)
    if as_json:
        emit_json({"output": str(path), "points": int(proj.coords.shape[0]), "sampled": proj.sampled,
                   "notes": proj.notes})
    else:
        console.print(f"Wrote {path} ({proj.coords.shape[0]:,} points{'; ' + proj.notes[0] if proj.notes else ''}).")


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
    from .app import console, emit_json

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
