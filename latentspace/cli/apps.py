"""CLI for the applications: rag, recommend, cluster, dedup, outliers, classify, images, funnel."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..core.errors import InvalidInputError
from .common import console, emit_json, first_line, hits_table, open_existing_store, parse_json_option

#: top-level commands, registered by app.py on its Typer app: (name, function)
COMMANDS: list = []


def command(name: str):
    def register(fn):
        COMMANDS.append((name, fn))
        return fn

    return register


classify_app = typer.Typer(help="Label records: kNN vote, a linear probe, or zero-shot descriptions.",
                           no_args_is_help=True)
images_app = typer.Typer(help="Add images to a CLIP collection and search them with text or an image.",
                         no_args_is_help=True)
funnel_app = typer.Typer(help="Matryoshka funnel: search truncated vectors, re-rank with the full ones.",
                         no_args_is_help=True)
GROUPS = [("classify", classify_app), ("images", images_app), ("funnel", funnel_app)]

STORE = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder).")
COLLECTION = typer.Argument(..., help="Collection name.")
WHERE = typer.Option(None, "--where", help="Metadata filter as JSON, e.g. '{\"year\": {\"$gte\": 2020}}'.")
JSON = typer.Option(False, "--json", help="Machine-readable output.")


def _columns(table: Table, *spec) -> None:
    """Columns that never wrap: (name, min width[, max width]); numbers right-aligned."""
    for name, low, *high in spec:
        table.add_column(name, no_wrap=True, overflow="ellipsis", min_width=low, max_width=high[0] if high else None,
                         justify="left" if high else "right")


# -- rag ---------------------------------------------------------------------------------
@command("rag")
def rag_cmd(
    store: str = STORE, collection: str = COLLECTION,
    question: str = typer.Argument(..., help="The question."),
    token_budget: int = typer.Option(1000, "--budget", help="Tokens the packed passages may use."),
    k: int = typer.Option(8, "-k", help="Passages at most."),
    mmr: bool = typer.Option(True, help="Diversify with maximal marginal relevance."),
    mmr_lambda: float = typer.Option(0.5, "--lambda", help="MMR: 1 = relevance only, 0 = diversity only."),
    mode: str = typer.Option("hybrid", help="Retrieval: hybrid, vector, keyword or exact."),
    where: Optional[str] = WHERE,
    answer_url: Optional[str] = typer.Option(None, help="OpenAI-compatible base URL: also ask a chat model."),
    answer_model: str = typer.Option("gpt-4o-mini", help="Chat model name (with --answer-url)."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="Environment variable holding the API key."),
    as_json: bool = JSON,
) -> None:
    """Retrieve a cited context for a question (and optionally answer it with a chat model)."""
    from ..apps import rag

    with open_existing_store(store) as st:
        col = st.get_collection(collection)
        ctx = rag.retrieve_context(col, question, token_budget=token_budget, k=k, mmr=mmr, mmr_lambda=mmr_lambda,
                                   mode=mode, where=parse_json_option(where, "--where"))
    ans = rag.answer(ctx, base_url=answer_url, model=answer_model, api_key_env=api_key_env) if answer_url else None
    if as_json:
        emit_json(ans.to_dict() if ans else ctx.to_dict())
        return
    table = Table(title=f"Context: {len(ctx.sources)} passages, {ctx.tokens}/{ctx.token_budget} tokens",
                  title_justify="left")
    _columns(table, ("n", 4), ("id", 16, 44), ("score", 7), ("tokens", 6), ("first line", 20, 80))
    for s in ctx.sources:
        table.add_row(f"[{s.n}]", s.id, f"{s.score:.4f}", str(s.tokens), first_line(s.document))
    console.print(table)
    if ctx.skipped:
        console.print(f"[dim]{len(ctx.skipped)} passage(s) did not fit the budget.[/]")
    if ans:
        console.print(f"\n[bold]Answer[/] ({ans.model}):\n{ans.text}")
        if ans.unknown_citations:
            console.print(f"[yellow]cites sources that are not in the context: {ans.unknown_citations}[/]")
    else:
        console.print("\n" + ctx.text, highlight=False, markup=False)


PER_CHUNK = typer.Option(False, "--per-chunk", help="Treat each stored chunk on its own (default: a record stored "
                         "as several chunks counts once).")


def _unit(per_chunk: bool) -> str:
    return "chunk" if per_chunk else "record"


# -- recommend ------------------------------------------------------------------------------
@command("recommend")
def recommend_cmd(
    store: str = STORE, collection: str = COLLECTION,
    positive: list[str] = typer.Option(..., "--positive", "-p", help="An id to find more like (repeatable)."),
    negative: list[str] = typer.Option([], "--negative", "-n", help="An id to move away from (repeatable)."),
    k: int = typer.Option(10, "-k"), strategy: str = typer.Option("average", help="average or best_score."),
    per_chunk: bool = PER_CHUNK, where: Optional[str] = WHERE, as_json: bool = JSON,
) -> None:
    """Records like the positive examples and unlike the negative ones (ids of records or of their chunks)."""
    from ..apps.recommendation import recommend

    with open_existing_store(store) as st:
        hits = recommend(st.get_collection(collection), positive, negative, k=k, strategy=strategy,
                         where=parse_json_option(where, "--where"), unit=_unit(per_chunk))
    if as_json:
        emit_json([h.to_dict() for h in hits])
    else:
        console.print(hits_table(hits, f"Recommended ({strategy})"))


# -- cluster ----------------------------------------------------------------------------------
@command("cluster")
def cluster_cmd(
    store: str = STORE, collection: str = COLLECTION,
    method: str = typer.Option("kmeans", help="kmeans or hdbscan."),
    n_clusters: int = typer.Option(8, "--n-clusters", help="k-means: number of clusters."),
    min_cluster_size: int = typer.Option(10, help="HDBSCAN: smallest cluster."),
    terms: int = typer.Option(8, help="c-TF-IDF terms per cluster."),
    reduce_dim: Optional[int] = typer.Option(None, help="First map the vectors to this many dimensions with UMAP "
                                             "(5 suits HDBSCAN on text; needs the analysis extra)."),
    write_to: Optional[str] = typer.Option(None, help="Metadata key that receives each record's cluster id."),
    seed: int = typer.Option(0), where: Optional[str] = WHERE, as_json: bool = JSON,
) -> None:
    """Cluster a collection; label each cluster with its top terms and central records."""
    from ..apps.clustering import cluster

    with open_existing_store(store) as st:
        res = cluster(st.get_collection(collection), method, n_clusters=n_clusters, min_cluster_size=min_cluster_size,
                      n_terms=terms, write_to=write_to, seed=seed, where=parse_json_option(where, "--where"),
                      reduce_dim=reduce_dim)
    if as_json:
        emit_json(res.to_dict())
        return
    table = Table(title=f"{len(res.clusters)} clusters ({method}) of {len(res.ids)} records"
                  + (f", {res.noise} noise" if res.noise else ""), title_justify="left")
    _columns(table, ("cluster", 7), ("size", 6), ("terms", 30, 60), ("most central", 30, 60))
    for c in res.clusters:
        table.add_row(str(c.label), str(c.size), ", ".join(c.terms), first_line(c.central_documents[0]) if
                      c.central_documents else "")
    console.print(table)
    for note in res.notes:
        console.print(f"[yellow]note:[/] {note}")
    if write_to:
        console.print(f"Cluster ids written to metadata[{write_to!r}].")


# -- dedup ------------------------------------------------------------------------------------
@command("dedup")
def dedup_cmd(
    store: str = STORE, collection: str = COLLECTION,
    threshold: float = typer.Option(0.95, help="Cosine similarity at or above which two records are duplicates."),
    k: int = typer.Option(10, "-k", help="Neighbours asked per record (widened automatically for big groups)."),
    keep: str = typer.Option("first", help="Which record a group keeps: first, longest or shortest."),
    delete: bool = typer.Option(False, "--delete", help="Delete all but the kept record of each group (every chunk "
                                "of it)."),
    per_chunk: bool = PER_CHUNK, where: Optional[str] = WHERE, as_json: bool = JSON,
) -> None:
    """Find near-duplicate records through the ANN index (and optionally delete the extras)."""
    from ..apps.dedup import find_duplicates, remove_duplicates

    with open_existing_store(store) as st:
        col = st.get_collection(collection)
        rep = find_duplicates(col, threshold, k=k, keep=keep, where=parse_json_option(where, "--where"),
                              unit=_unit(per_chunk))
        deleted = remove_duplicates(col, rep) if delete else 0
    if as_json:
        emit_json({**rep.to_dict(), "deleted": deleted})
        return
    console.print(f"{len(rep.groups)} group(s) of near-duplicates among {rep.records:,} {rep.unit}s "
                  f"({rep.pairs:,} pairs at cosine >= {threshold}; {rep.seconds:.1f} s).")
    table = Table(title_justify="left")
    _columns(table, ("size", 4), ("keep", 16, 44), ("remove", 16, 60), ("weakest link", 12))
    for g in rep.groups[:20]:
        table.add_row(str(len(g.ids)), g.keep, ", ".join(g.remove), f"{g.min_similarity:.4f}")
    if rep.groups:
        console.print(table)
    if len(rep.groups) > 20:
        console.print(f"[dim]... {len(rep.groups) - 20} more groups (--json lists all).[/]")
    rows = len(rep.rows_to_delete())
    if delete:
        console.print(f"Deleted {len(rep.duplicates)} {rep.unit}(s) ({deleted} stored chunk(s)).")
    elif rep.groups:
        console.print(f"[dim]Run again with --delete to delete {len(rep.duplicates)} {rep.unit}(s) ({rows} stored "
                      "chunk(s)).[/]")


# -- outliers ---------------------------------------------------------------------------------
@command("outliers")
def outliers_cmd(
    store: str = STORE, collection: str = COLLECTION,
    method: str = typer.Option("lof", help="knn (mean distance to k neighbours) or lof."),
    k: int = typer.Option(10, "-k"), top: int = typer.Option(10, help="How many to show."),
    per_chunk: bool = PER_CHUNK, where: Optional[str] = WHERE, as_json: bool = JSON,
) -> None:
    """Score every record by how unusual it is; show the top."""
    from ..apps.outliers import outlier_scores

    with open_existing_store(store) as st:
        rep = outlier_scores(st.get_collection(collection), method, k=k, where=parse_json_option(where, "--where"),
                             unit=_unit(per_chunk))
    if as_json:
        emit_json(rep.to_dict(top))
        return
    table = Table(title=f"Most unusual of {len(rep.ids):,} records ({method}, k={rep.k})", title_justify="left")
    _columns(table, ("#", 3), ("id", 16, 44), ("score", 7), ("first line", 20, 80))
    for i, (rid, score, doc) in enumerate(rep.top(top), 1):
        table.add_row(str(i), rid, f"{score:.4f}", first_line(doc))
    console.print(table)


# -- classify ---------------------------------------------------------------------------------
def _print_predictions(rows, as_json: bool, title: str) -> None:
    if as_json:
        emit_json([{"input": name, **p.to_dict()} for name, p in rows])
        return
    table = Table(title=title, title_justify="left")
    _columns(table, ("input", 20, 70), ("label", 8, 30), ("confidence", 10))
    for name, p in rows:
        table.add_row(first_line(name, 70), str(p.label), f"{p.confidence:.3f}")
    console.print(table)


@classify_app.command("knn")
def classify_knn(
    store: str = STORE, collection: str = COLLECTION,
    texts: list[str] = typer.Argument(..., help="Texts to label."),
    label_key: str = typer.Option("label", help="Metadata key holding the labels."),
    k: int = typer.Option(10, "-k"), where: Optional[str] = WHERE, as_json: bool = JSON,
) -> None:
    """Label texts by a vote of their nearest labelled records."""
    from ..apps.classify import knn_classify

    with open_existing_store(store) as st:
        preds = knn_classify(st.get_collection(collection), label_key, queries=texts, k=k,
                             where=parse_json_option(where, "--where"))
    _print_predictions(list(zip(texts, preds)), as_json, f"kNN labels (k={k})")


@classify_app.command("probe-train")
def classify_probe_train(
    store: str = STORE, collection: str = COLLECTION,
    out: Path = typer.Option(..., "--out", "-o", help="Folder to save the probe in (JSON + safetensors)."),
    label_key: str = typer.Option("label", help="Metadata key holding the labels."),
    c: float = typer.Option(1.0, "--C", help="Inverse regularisation strength."),
    where: Optional[str] = WHERE,
    test_where: Optional[str] = typer.Option(None, help="Filter of held-out records to report accuracy on."),
    as_json: bool = JSON,
) -> None:
    """Train a logistic-regression probe on a collection's vectors and labels."""
    from ..apps.classify import LinearProbe

    with open_existing_store(store) as st:
        col = st.get_collection(collection)
        probe = LinearProbe(label_key, C=c).fit(col, where=parse_json_option(where, "--where"))
        acc = probe.score(col, where=parse_json_option(test_where, "--test-where")) if test_where else None
        train_acc = probe.score(col, where=parse_json_option(where, "--where"))
    probe.save(out)
    result = {"saved": str(out), "classes": probe.classes_, "train_accuracy": train_acc, "test_accuracy": acc}
    if as_json:
        emit_json(result)
    else:
        console.print(f"Probe over {len(probe.classes_)} classes saved to {out}. Train accuracy {train_acc:.3f}"
                      + (f", held-out accuracy {acc:.3f}." if acc is not None else "."))


@classify_app.command("probe-predict")
def classify_probe_predict(
    store: str = STORE, collection: str = COLLECTION,
    probe_dir: Path = typer.Argument(..., help="A folder saved by probe-train."),
    write_to: Optional[str] = typer.Option(None, help="Metadata key that receives each predicted label."),
    where: Optional[str] = WHERE, as_json: bool = JSON,
) -> None:
    """Label the records of a collection (in the probe's space) with a saved probe."""
    from ..apps.classify import LinearProbe

    probe = LinearProbe.load(probe_dir)
    with open_existing_store(store) as st:
        preds = probe.predict_collection(st.get_collection(collection), where=parse_json_option(where, "--where"),
                                         write_to=write_to)
    _print_predictions(list(preds.items())[:50] if not as_json else list(preds.items()), as_json,
                       f"Probe labels ({len(preds)} records{'; first 50' if len(preds) > 50 else ''})")


@classify_app.command("zero-shot")
def classify_zero_shot(
    store: str = STORE, collection: str = COLLECTION,
    label: list[str] = typer.Option(..., "--label", "-l", help="NAME=DESCRIPTION (repeatable; at least two)."),
    text: list[str] = typer.Option([], "--text", help="Label these texts instead of the collection's records."),
    write_to: Optional[str] = typer.Option(None, help="Metadata key that receives each record's label."),
    where: Optional[str] = WHERE, as_json: bool = JSON,
) -> None:
    """Label texts or records by the nearest label description, embedded in the collection's space."""
    from ..apps.classify import ZeroShotClassifier

    labels = {}
    for item in label:
        name, sep, desc = item.partition("=")
        if not sep or not name.strip() or not desc.strip():
            raise InvalidInputError(f"--label takes NAME=DESCRIPTION; got {item!r}.")
        labels[name.strip()] = desc.strip()
    with open_existing_store(store) as st:
        col = st.get_collection(collection)
        zs = ZeroShotClassifier(col.encoder, labels)
        if text:
            rows = list(zip(text, zs.predict(text)))
        else:
            rows = list(zs.predict_collection(col, where=parse_json_option(where, "--where"), write_to=write_to).items())
    _print_predictions(rows if as_json else rows[:50], as_json, f"Zero-shot labels ({len(rows)})")


# -- images -------------------------------------------------------------------------------------
@images_app.command("add")
def images_add(
    store: str = STORE, collection: str = COLLECTION,
    paths: list[Path] = typer.Argument(..., help="Image files (or folders of them)."),
    as_json: bool = JSON,
) -> None:
    """Embed image files into a CLIP collection (id: the file name without its suffix)."""
    from ..apps.images import add_images

    files = []
    for p in paths:
        files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif",
                                                                            ".webp")) if p.is_dir() else [p])
    if not files:
        raise InvalidInputError(f"No image files found in {[str(p) for p in paths]}.")
    with open_existing_store(store) as st:
        col = st.get_collection(collection)
        res = add_images(col, [f.stem for f in files], files)
        total = len(col)
    out = {"files": len(files), "added": res.added, "replaced": res.replaced, "unchanged": res.unchanged,
           "records": total}
    if as_json:
        emit_json(out)
    else:
        console.print(f"{len(files)} image(s): {res.added} added, {res.replaced} replaced, {res.unchanged} unchanged; "
                      f"{total} records in {collection!r}.")


@images_app.command("search")
def images_search(
    store: str = STORE, collection: str = COLLECTION,
    text: Optional[str] = typer.Option(None, "--text", help="Search with a text."),
    image: Optional[Path] = typer.Option(None, "--image", help="Search with an image file."),
    k: int = typer.Option(10, "-k"), where: Optional[str] = WHERE, as_json: bool = JSON,
) -> None:
    """Search a CLIP collection with a text or an image."""
    from ..apps.images import search_images

    with open_existing_store(store) as st:
        hits = search_images(st.get_collection(collection), text=text, image=str(image) if image else None, k=k,
                             where=parse_json_option(where, "--where"))
    if as_json:
        emit_json([h.to_dict() for h in hits])
        return
    table = Table(title=f"Images for {text!r}" if text else f"Images like {image}", title_justify="left")
    _columns(table, ("#", 3), ("id", 12, 44), ("score", 7), ("path", 20, 80))
    for i, h in enumerate(hits, 1):
        table.add_row(str(i), h.id, f"{h.score:.4f}", str(h.metadata.get("path", "")))
    console.print(table)


# -- funnel -------------------------------------------------------------------------------------
@funnel_app.command("build")
def funnel_build(
    store: str = STORE, collection: str = COLLECTION,
    dim: int = typer.Option(..., "--dim", help="Length of the truncated vectors (e.g. 128)."),
    as_json: bool = JSON,
) -> None:
    """Create or update COLLECTION-d{dim} from COLLECTION's stored vectors (nothing re-embedded)."""
    from ..apps.matryoshka import MatryoshkaFunnel

    with open_existing_store(store) as st:
        f = MatryoshkaFunnel.build(st.get_collection(collection), dim)
        out = {"coarse": f.coarse.name, "records": len(f.coarse), "dim": f.dim, "space": f.coarse.spec.fingerprint}
    if as_json:
        emit_json(out)
    else:
        console.print(f"{out['coarse']}: {out['records']:,} records of {dim}-d truncated vectors "
                      f"(space {out['space']}).")


@funnel_app.command("search")
def funnel_search(
    store: str = STORE, collection: str = COLLECTION, query: str = typer.Argument(..., help="Query text."),
    dim: int = typer.Option(..., "--dim", help="The truncation built with `funnel build`."),
    k: int = typer.Option(10, "-k"),
    candidates: Optional[int] = typer.Option(None, help="Candidates from the truncated index (default 10 k)."),
    where: Optional[str] = WHERE, as_json: bool = JSON,
) -> None:
    """Search the truncated index, re-rank the candidates with the full vectors."""
    from ..apps.matryoshka import MatryoshkaFunnel

    with open_existing_store(store) as st:
        full = st.get_collection(collection)
        hits = MatryoshkaFunnel.open(st, collection, dim, encoder=full.encoder).search(
            query, k=k, candidates=candidates, where=parse_json_option(where, "--where"))
    if as_json:
        emit_json([h.to_dict() for h in hits])
    else:
        console.print(hits_table(hits, f"Funnel {dim}-d -> {full.spec.dim}-d"))
