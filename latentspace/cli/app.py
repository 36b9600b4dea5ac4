"""``latentspace`` command line: a thin shell over the Python API.

Errors print one line (``error: ...``) and exit with a code per error class; ``--debug``
shows the traceback instead. Every command takes ``--json`` for machine output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..core.errors import InvalidInputError, LatentSpaceError
from .common import (  # noqa: F401  (re-exported for the command modules)
    STATE,
    console,
    emit_json,
    err_console,
    first_line,
    hits_table,
    open_existing_store,
    open_for_queries,
    parse_json_option,
)

app = typer.Typer(
    name="latentspace",
    help="Embeddings that retrieve, latent spaces that generate, one space per model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
collection_app = typer.Typer(help="Create, list, inspect, rename and drop collections.", no_args_is_help=True)
app.add_typer(collection_app, name="collection")

@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")) -> None:
    STATE["debug"] = debug


# -- collections ---------------------------------------------------------------------------
@collection_app.command("create")
def collection_create(
    store: str = typer.Argument(..., help="Store: a folder (created if missing) or a URI (milvus://host:19530)."),
    name: str = typer.Argument(..., help="Collection name."),
    model: Optional[str] = typer.Option(None, help="Embedding model: hub id or local folder (default: all-MiniLM-L6-v2)."),
    kind: str = typer.Option("sentence-transformers", help="Encoder: sentence-transformers, transformers or clip."),
    dim: Optional[int] = typer.Option(None, help="For your own vectors: their dimension (no encoder)."),
    space_model: Optional[str] = typer.Option(None, help="For your own vectors: the name of the model that made them."),
    metric: str = typer.Option("cosine", help="cosine, dot or l2."),
    normalize: bool = typer.Option(True, help="Unit-normalize vectors (the space's rule)."),
    truncate_dim: Optional[int] = typer.Option(None, help="Matryoshka truncation (a space of its own)."),
    query_prefix: str = typer.Option("", help="Prefix added to queries (e.g. 'query: ')."),
    document_prefix: str = typer.Option("", help="Prefix added to documents (e.g. 'passage: ')."),
    m: int = typer.Option(16, "--M", help="HNSW links per node."),
    ef_construction: int = typer.Option(200, help="HNSW build beam."),
    ef_search: int = typer.Option(64, help="HNSW query beam."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Create a collection bound to one space."""
    from ..core.space import SpaceSpec
    from ..collections.store import open_store

    hnsw = {"M": m, "ef_construction": ef_construction, "ef_search": ef_search}
    with open_store(store) as st:
        if dim is not None:
            if model is not None:
                raise InvalidInputError("Give --model (embed text) or --dim (your own vectors), not both.")
            spec = SpaceSpec(model=space_model or "external", dim=dim, normalize=normalize, metric=metric,
                             truncate_dim=truncate_dim, modality="vector")
            col = st.create_collection(name, space=spec, hnsw=hnsw)
        else:
            enc = make_encoder(model, kind=kind, normalize=normalize, truncate_dim=truncate_dim,
                               query_prefix=query_prefix, document_prefix=document_prefix)
            col = st.create_collection(name, encoder=enc, metric=metric, hnsw=hnsw)
        info = col.info()
    if as_json:
        emit_json(info.to_dict())
    else:
        console.print(f"Created collection [bold]{name}[/] in {store}: {info.spec.describe()}, metric {info.spec.metric}, "
                      f"fingerprint {info.spec.fingerprint}")


def make_encoder(model: str | None, kind: str = "sentence-transformers", **options):
    from ..core.validation import check_choice
    from ..embed import default_encoder
    from ..embed.sentence_transformers import DEFAULT_MODEL, SentenceTransformerEncoder

    check_choice(kind, "kind", "collection create", ("sentence-transformers", "transformers", "clip"))
    if kind == "clip":
        from ..embed.clip import DEFAULT_CLIP, CLIPEncoder

        if options.pop("truncate_dim", None) is not None:
            raise InvalidInputError("--truncate-dim is not available for CLIP; use `funnel build` on the collection.")
        return CLIPEncoder(model or DEFAULT_CLIP, **options)
    if kind == "transformers":
        from ..embed.transformers import TransformersEncoder

        if model is None:
            raise InvalidInputError("--kind transformers needs --model (a hub id or a local folder).")
        return TransformersEncoder(model, **options)
    if model is None or model == DEFAULT_MODEL:
        return default_encoder(**options)
    return SentenceTransformerEncoder(model, **options)


@collection_app.command("list")
def collection_list(
    store: str = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the collections of a store."""
    with open_existing_store(store) as st:
        infos = st.list_collections()
    if as_json:
        emit_json([i.to_dict() for i in infos])
        return
    if not infos:
        console.print(f"No collections in {store}.")
        return
    table = Table(title=f"Collections in {store}", title_justify="left")
    for col in ("name", "records", "space", "metric", "fingerprint"):
        table.add_column(col)
    for i in infos:
        table.add_row(i.name, str(i.count), i.spec.describe(), i.spec.metric, i.spec.fingerprint)
    console.print(table)


@collection_app.command("info")
def collection_info(
    store: str = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder)."),
    name: str = typer.Argument(..., help="Collection name."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show a collection's space, size and settings."""
    with open_existing_store(store) as st:
        info = st.collection_info(name)
    if as_json:
        emit_json(info.to_dict())
        return
    table = Table(show_header=False, title=f"Collection {name}", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("records", str(info.count))
    table.add_row("fingerprint", info.spec.fingerprint)
    for k, v in info.spec.to_dict().items():
        table.add_row(k, json.dumps(v))
    table.add_row("hnsw", json.dumps(info.hnsw.to_dict()))
    table.add_row("encoder", json.dumps(info.encoder))
    console.print(table)


@collection_app.command("drop")
def collection_drop(
    store: str = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder)."),
    name: str = typer.Argument(..., help="Collection name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Delete a collection and everything in it."""
    with open_existing_store(store) as st:
        info = st.collection_info(name)
        if not yes and not as_json and sys.stdin.isatty():
            typer.confirm(f"Delete collection {name!r} with {info.count} records?", abort=True)
        st.delete_collection(name)
    if as_json:
        emit_json({"dropped": name, "records": info.count})
    else:
        console.print(f"Dropped collection {name} ({info.count} records).")


@collection_app.command("drop-retired")
def collection_drop_retired(
    store: str = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder)."),
    name: str = typer.Argument(..., help="Collection name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Delete the spaces a collection had before its migrations (no rollback past this)."""
    with open_existing_store(store) as st:
        st.collection_info(name)
        if not yes and not as_json and sys.stdin.isatty():
            typer.confirm(f"Delete the retired spaces of {name!r}? Rollback will no longer be possible.", abort=True)
        dropped = st.drop_retired(name)
    if as_json:
        emit_json({"collection": name, "dropped": dropped})
    else:
        console.print(f"Dropped {dropped} retired space(s) of {name}.")


@collection_app.command("rename")
def collection_rename(
    store: str = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder)."),
    name: str = typer.Argument(..., help="Collection name."),
    new_name: str = typer.Argument(..., help="Its new name."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Rename a collection (atomically; its migration history follows it)."""
    with open_existing_store(store) as st:
        st.rename_collection(name, new_name)
    if as_json:
        emit_json({"renamed": name, "to": new_name})
    else:
        console.print(f"Renamed collection {name} to {new_name}.")


@collection_app.command("copy")
def collection_copy(
    src: str = typer.Argument(..., help="Source store: a folder or a URI (milvus://host:19530, milvus+lite:///f)."),
    name: str = typer.Argument(..., help="Collection to copy."),
    dst: str = typer.Argument(..., help="Destination store (a folder is created if missing)."),
    new_name: Optional[str] = typer.Argument(None, help="Its name there (default: the same)."),
    batch_size: int = typer.Option(1000, "--batch-size", help="Records per write."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Copy a collection to another store (embedded <-> Milvus): vectors, documents and
    metadata as stored, nothing re-embedded, the space carried and checked. Run it again
    to finish an interrupted copy: records already there are skipped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..collections.copy import copy_collection
    from ..collections.store import open_store

    with open_existing_store(src) as source, open_store(dst) as target:
        if as_json:
            report = copy_collection(source, name, target, new_name, batch_size=batch_size)
        else:
            with Progress(TextColumn("[bold]copying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          console=err_console, transient=True) as bar:
                task = bar.add_task("copy", total=None)
                report = copy_collection(source, name, target, new_name, batch_size=batch_size,
                                         progress=lambda done, total: bar.update(task, completed=done, total=total))
    if as_json:
        emit_json(report.to_dict())
        return
    console.print(f"Copied {report.copied:,} of {report.records:,} records from {report.source} to "
                  f"{report.destination} in {report.seconds:.1f} s ({report.unchanged:,} already there"
                  f"{'; created the collection' if report.created else ''}).")


@collection_app.command("migrate")
def collection_migrate(
    store: str = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder)."),
    name: str = typer.Argument(..., help="Collection to move to a new model."),
    model: str = typer.Option(..., help="The new model: a sentence-transformers hub id or local folder."),
    query_prefix: str = typer.Option("", help="Query prefix of the new model."),
    document_prefix: str = typer.Option("", help="Document prefix of the new model."),
    batch_size: int = typer.Option(256),
    queries: int = typer.Option(100, help="Sample queries for the agreement report."),
    switch: bool = typer.Option(True, help="Switch the name to the new space when done."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Re-embed a collection's documents with a new model, compare the two spaces, switch atomically.

    Resumable: re-running after an interruption skips what is already embedded. The old
    space stays until `collection drop-retired`; `collection rollback` switches back.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with open_existing_store(store) as st:
        col = st.get_collection(name)
        enc = make_encoder(model, query_prefix=query_prefix, document_prefix=document_prefix)
        with Progress(TextColumn("[bold]migrating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err_console, disable=as_json) as progress:
            task = progress.add_task("migrate", total=len(col))
            report = col.migrate(enc, batch_size=batch_size, queries=queries, switch=switch,
                                 progress=lambda done, total: progress.update(task, completed=done))
    if as_json:
        emit_json(report.to_dict())
    else:
        console.print(f"{name}: {report.records:,} records, {report.embedded:,} embedded, {report.reused:,} reused; "
                      f"top-10 overlap old vs new {report.overlap_at_10:.3f}, rank correlation "
                      f"{report.rank_correlation:.3f} on {report.queries} queries; "
                      + ("switched to the new space." if report.switched else "not switched (--no-switch)."))


@collection_app.command("rollback")
def collection_rollback(
    store: str = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder)."),
    name: str = typer.Argument(..., help="Collection."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Switch a collection back to the space it had before its last migration."""
    with open_existing_store(store) as st:
        st.rollback_collection(name)
        spec = st.collection_info(name).spec
    if as_json:
        emit_json({"collection": name, "fingerprint": spec.fingerprint, "model": spec.model})
    else:
        console.print(f"{name} is back in {spec.describe()} [{spec.fingerprint}].")


@collection_app.command("history")
def collection_history(
    store: str = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder)."),
    name: str = typer.Argument(..., help="Collection."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The spaces a collection has had: every migration and rollback."""
    with open_existing_store(store) as st:
        rows = st.collection_history(name)
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"Spaces of {name}", title_justify="left")
    for c in ("when", "action", "model", "fingerprint"):
        table.add_column(c)
    import time as _time

    for r in rows:
        table.add_row(_time.strftime("%Y-%m-%d %H:%M", _time.localtime(r["at"])), r["action"], r["model"],
                      r["fingerprint"])
    console.print(table if rows else f"{name} has never changed space.")


# -- ingest and search -----------------------------------------------------------------------
@app.command("ingest")
def ingest_cmd(
    store: str = typer.Argument(..., help="Store: a folder (created if missing) or a URI (milvus://host:19530)."),
    collection: str = typer.Argument(..., help="Collection (created with --model if missing)."),
    file: Path = typer.Argument(..., help="JSONL, CSV, TSV, Parquet, or a folder of .txt/.md files."),
    id_field: Optional[str] = typer.Option("id", help="Field holding each record's id ('' to number them)."),
    text_field: str = typer.Option("text", help="Field holding the text to embed."),
    text_template: Optional[str] = typer.Option(None, help='Make the text from several fields, e.g. '
                                                '"{synopsis}. {body}" (instead of --text-field).'),
    metadata_fields: Optional[str] = typer.Option(None, help="Comma-separated fields to keep as metadata (default: all others)."),
    chunk_size: int = typer.Option(1000, help="Split texts longer than this many characters."),
    chunk_overlap: int = typer.Option(100, help="Characters of overlap between chunks."),
    batch_size: int = typer.Option(256, help="Records embedded and written per batch."),
    model: Optional[str] = typer.Option(None, help="Model for a new collection (default: all-MiniLM-L6-v2)."),
    vector_field: Optional[str] = typer.Option(None, help="Field holding precomputed vectors: stored as given, "
                                               "texts (optional) kept whole as documents."),
    vector_model: Optional[str] = typer.Option(None, help="With --vector-field: the model that made the vectors "
                                               "(names a new collection's space; must match an existing one's)."),
    metric: str = typer.Option("cosine", help="With --vector-field, for a new collection: cosine, dot or l2."),
    normalize: bool = typer.Option(True, help="With --vector-field, for a new collection: vectors are unit length."),
    engine: str = typer.Option("local", help="local (this process) or ray (an actor pool on a Ray cluster; "
                               "pip install 'latentspace[ray]')."),
    address: Optional[str] = typer.Option(None, help="With --engine ray: the cluster ('auto', 'ray://host:10001'); "
                                          "default: a local one."),
    workers: Optional[int] = typer.Option(None, help="With --engine ray: encoder actors (default: one per GPU, "
                                          "else one per 2 CPUs)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Embed and store a file's records (or store their precomputed vectors). Re-running skips
    records already stored unchanged."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..core.errors import InvalidInputError, NotFoundError
    from ..ingest import chunk_items, ingest, read_items
    from ..collections.store import open_store

    fields = [f.strip() for f in metadata_fields.split(",") if f.strip()] if metadata_fields else None
    on_ray = engine == "ray" and not vector_field  # Ray Data reads, parses and chunks the file on the cluster
    if engine == "ray" and vector_field:
        raise InvalidInputError("--engine ray embeds documents; store precomputed vectors (--vector-field) with "
                                "the local engine.")
    records = [] if on_ray else list(read_items(file, id_field=id_field or None, text_field=text_field,
                                                metadata_fields=fields, vector_field=vector_field or None,
                                                template=text_template))
    t0 = time.perf_counter()
    space = None
    with open_store(store) as st:
        if on_ray:
            try:
                col = st.get_collection(collection)
            except NotFoundError:
                col = st.create_collection(collection, encoder=make_encoder(model))
            items = None
        elif vector_field:
            col, space = _collection_for_vectors(st, collection, records, vector_model, metric, normalize)
            items = list(chunk_items(records, chunk_size, chunk_overlap))
        else:
            try:
                col = st.get_collection(collection)
                _ = col.encoder
            except NotFoundError:
                col = st.create_collection(collection, encoder=make_encoder(model))
            # pieces of --chunk-size characters, cut further where the model would truncate them
            items = list(chunk_items(records, chunk_size, chunk_overlap, count_tokens=col.encoder.count_tokens,
                                     max_tokens=col.encoder.token_limit))
        with Progress(
            TextColumn("[bold]embedding"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, disable=as_json, transient=False,
        ) as progress:
            task = progress.add_task("ingest", total=None if items is None else len(items), rate="")

            def on_batch(n: int) -> None:
                done = progress.tasks[0].completed + n
                rate = done / max(time.perf_counter() - t0, 1e-9)
                progress.update(task, advance=n, rate=f"{rate:,.0f} rec/s")

            try:
                if on_ray:
                    from ..ray_ingest import ingest_files_on_ray

                    report = ingest_files_on_ray(col, file, id_field=id_field or None, text_field=text_field,
                                                 metadata_fields=fields, template=text_template,
                                                 chunk_size=chunk_size, chunk_overlap=chunk_overlap, address=address,
                                                 workers=workers, batch_size=batch_size, on_batch=on_batch)
                else:
                    report = ingest(col, items, batch_size=batch_size, on_batch=on_batch, space=space,
                                    engine=engine, address=address, workers=workers)
            except KeyboardInterrupt:
                progress.stop()
                stored = len(col)  # every batch is one transaction: what is stored is whole
                col.flush()
                err_console.print(f"interrupted: {collection} holds {stored:,} chunks; run the same command again to "
                                  "resume (chunks already stored unchanged are skipped, not embedded again).")
                raise SystemExit(130) from None
        col.flush()
        total = len(col)
    out = {**report.to_dict(), "collection": collection, "stored_chunks": total,
           "seconds": round(time.perf_counter() - t0, 2)}
    if as_json:
        emit_json(out)
    else:
        console.print(f"{report.describe()}; {collection} holds {total:,} chunks ({out['seconds']} s).")


def _collection_for_vectors(st, name, items, vector_model, metric, normalize):
    """The collection precomputed vectors go to, and the space to name them with (None: raw
    vectors, checked against a collection made from a spec)."""
    from ..core.errors import InvalidInputError, NotFoundError, SpaceMismatchError
    from ..core.space import SpaceSpec

    try:
        col = st.get_collection(name)
    except NotFoundError:
        if not vector_model:
            raise InvalidInputError(f"Collection {name!r} does not exist: name the model that made the vectors "
                                    "with --vector-model to create it.") from None
        if not items:
            raise InvalidInputError("The file has no records: nothing to create the collection from.") from None
        spec = SpaceSpec(model=vector_model, dim=len(items[0].vector), metric=metric, normalize=normalize,
                         modality="vector")  # as `collection create --dim`: vectors from outside
        return st.create_collection(name, space=spec), None
    if not col.has_encoder:
        if vector_model and vector_model != col.spec.model:
            raise SpaceMismatchError(f"--vector-model {vector_model} but collection {name!r} holds vectors of "
                                     f"{col.spec.describe()}.")
        return col, None
    if vector_model != col.spec.model:
        raise SpaceMismatchError(
            f"Collection {name!r} is bound to its encoder's space ({col.spec.describe()}): precomputed vectors must "
            f"come from that model; say so with --vector-model {col.spec.model}."
        )
    return col, col.spec


@app.command("search")
def search_cmd(
    store: str = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder)."),
    collection: str = typer.Argument(..., help="Collection name."),
    query: str = typer.Argument(..., help="Query text."),
    k: int = typer.Option(10, "-k", "--k", help="Number of results."),
    where: Optional[str] = typer.Option(None, help='Metadata filter as JSON, e.g. \'{"year": {"$gte": 2020}}\'.'),
    mode: str = typer.Option("vector", help="vector, exact, keyword or hybrid."),
    alpha: float = typer.Option(0.5, help="Hybrid: weight of the vector side (0..1)."),
    show: list[str] = typer.Option([], "--show", help="Metadata field to show as a column (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Search a collection by text."""
    filt = parse_json_option(where, "--where")
    with open_existing_store(store) as st:
        col = st.get_collection(collection) if mode == "keyword" else open_for_queries(st, collection)
        hits = col.search(query, k=k, where=filt, mode=mode, alpha=alpha)
    if as_json:
        emit_json([h.to_dict() for h in hits])
    else:
        console.print(hits_table(hits, f"{mode} search in {collection}: {query!r}", show))


@app.command("update")
def update_cmd(
    store: str = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder)."),
    collection: str = typer.Argument(..., help="Collection name."),
    ids: list[str] = typer.Argument(..., help="Ids of the records to change (all get the same change)."),
    metadata: Optional[str] = typer.Option(None, help='Metadata as JSON, merged key by key, e.g. \'{"reviewed": true}\'.'),
    document: Optional[str] = typer.Option(None, help="New document text (embedded again if the collection has an encoder)."),
    replace_metadata: bool = typer.Option(False, "--replace-metadata", help="Replace the metadata whole instead of merging."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Change the metadata or document of existing records, keeping everything else."""
    meta = parse_json_option(metadata, "--metadata")
    with open_existing_store(store) as st:
        col = st.get_collection(collection)
        res = col.update(ids, documents=None if document is None else [document] * len(ids),
                         metadatas=None if meta is None else [meta] * len(ids), merge=not replace_metadata)
    out = {"collection": collection, "updated": res.replaced, "unchanged": res.unchanged}
    if as_json:
        emit_json(out)
    else:
        console.print(f"Updated {res.replaced} record(s) of {collection}; {res.unchanged} already as asked.")


@app.command("demo")
def demo_cmd(
    store: Path = typer.Option(Path("demo-store"), help="Where the demo keeps its store."),
    limit: Optional[int] = typer.Option(None, help="Use at most this many docstrings (default: all, ~4,900)."),
    rebuild: bool = typer.Option(False, help="Rebuild the demo collection even if it is current."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Build a collection from the standard library's docstrings and search it, offline."""
    from .demo import run_demo

    run_demo(store, limit=limit, rebuild=rebuild, as_json=as_json)


from .analyze import analyze_app  # noqa: E402  (registered after the shared helpers exist)

app.add_typer(analyze_app, name="analyze")

from .latent import latent_app  # noqa: E402
from .apps import COMMANDS as _APP_COMMANDS  # noqa: E402
from .apps import GROUPS as _APP_GROUPS  # noqa: E402

for _name, _fn in _APP_COMMANDS:  # rag, recommend, cluster, dedup, outliers
    app.command(_name)(_fn)
for _name, _group in _APP_GROUPS:  # classify, images, funnel
    app.add_typer(_group, name=_name)

app.add_typer(latent_app, name="latent")

from .interactions import interactions_app  # noqa: E402
from .train import finetune_cmd  # noqa: E402

app.command("finetune")(finetune_cmd)

app.add_typer(interactions_app, name="interactions")

from .server import keys_app, serve_cmd  # noqa: E402

app.add_typer(keys_app, name="keys")
app.command("serve")(serve_cmd)


def main(argv: list[str] | None = None) -> None:
    import os

    # the CLI draws its own progress bars; the libraries' per-load bars are noise here
    # (set for this process only; the library itself never touches the environment)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        code = app(args=argv, standalone_mode=False)
    except LatentSpaceError as exc:
        if STATE["debug"]:
            raise
        err_console.print(f"[bold red]error[/] ({type(exc).__name__}): {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            err_console.print("interrupted")
            raise SystemExit(130) from None
        err_console.print("aborted")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:  # usage errors from click (or the click that typer vendors) and the like
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()  # a usage error: click's own message and exit code 2
            raise SystemExit(exc.exit_code) from None
        if type(exc).__name__ == "Exit" and isinstance(getattr(exc, "exit_code", None), int):
            raise SystemExit(exc.exit_code) from None
        if STATE["debug"]:
            raise
        err_console.print(f"[bold red]unexpected error[/] ({type(exc).__name__}): {exc}  (run with --debug for details)")
        raise SystemExit(70) from None
    if isinstance(code, int) and code != 0:  # a command's Exit(code): typer returns it in this mode
        raise SystemExit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
