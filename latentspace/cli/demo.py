"""``latentspace demo``: the main job on the embedded default, offline, end to end."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..core.errors import LatentSpaceError, NotFoundError, SpaceMismatchError

COLLECTION = "stdlib-docs"
QUERIES = {
    "vector": "compress data to a smaller file",
    "keyword": "socket timeout",
    "hybrid": "parse command line options",
    "filtered": "read lines from a text file",
}


def run_demo(store_path: Path, *, limit: int | None = None, rebuild: bool = False, as_json: bool = False) -> dict:
    from ..data.stdlib_docs import corpus_hash, docstring_items
    from ..embed import default_encoder
    from ..ingest import chunk_items, ingest
    from ..collections.store import open_store
    from .common import emit_json, hits_table

    from .common import _console

    console = _console(stderr=as_json, quiet=as_json)
    timings: dict[str, float] = {}
    out: dict = {"store": str(store_path), "collection": COLLECTION}

    def step(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 3)

    console.print(Panel.fit("[bold]latentspace demo[/]: the Python standard library's docstrings, embedded with "
                            "all-MiniLM-L6-v2, stored and searched offline."))
    t0 = time.perf_counter()
    enc = default_encoder()
    step("load model", t0)
    console.print(f"Model: {enc.spec.describe()}, weights sha256 {enc.spec.weights_sha256[:12]}… verified, computing in "
                  f"{enc.precision} (agreement with fp32 on calibration texts: {enc.spec.metadata.get('calibration_min_cosine')}), "
                  f"space fingerprint [bold]{enc.spec.fingerprint}[/].")

    t0 = time.perf_counter()
    docs = docstring_items(limit=limit)
    # pieces of 1,000 characters, cut further where the model (256 tokens) would truncate them
    items = list(chunk_items(docs, 1000, 100, count_tokens=enc.count_tokens, max_tokens=enc.token_limit))
    chash = corpus_hash(items)
    step("read corpus", t0)
    split = len({it.metadata["source_id"] for it in items if "source_id" in it.metadata})
    console.print(f"Corpus: {len(docs):,} docstrings from the standard library, stored as {len(items):,} chunks "
                  f"({split:,} docstrings longer than 1,000 characters or {enc.token_limit} tokens were split).")

    store = open_store(store_path)
    try:
        t0 = time.perf_counter()
        reason = None
        try:
            col = store.get_collection(COLLECTION, encoder=enc)
            if rebuild:
                reason = "--rebuild was given"
            elif col.metadata.get("corpus_hash") != chash:
                reason = "the corpus changed"
            elif len(col) != len(items):
                reason = f"it holds {len(col)} of {len(items)} chunks (an earlier run was interrupted)"
        except NotFoundError:
            col, reason = None, "it does not exist yet"
        except SpaceMismatchError:
            col, reason = None, "it was built in another space"
        if reason is None:
            action = "reused"
            console.print(f"Store {store_path}: [green]reusing[/] collection {COLLECTION!r} ({len(col):,} chunks, "
                          "same corpus, same space). Pass --rebuild to rebuild it.")
        else:
            action = "rebuilt"
            console.print(f"Store {store_path}: [yellow]building[/] collection {COLLECTION!r} because {reason}.")
            try:
                store.delete_collection(COLLECTION)
            except NotFoundError:
                pass
            col = store.create_collection(COLLECTION, encoder=enc, metric="cosine", metadata={"corpus_hash": chash})
            with Progress(TextColumn("[bold]embedding"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                          console=console) as progress:
                task = progress.add_task("embed", total=len(items), rate="")
                t_embed = time.perf_counter()

                def on_batch(n: int) -> None:
                    done = progress.tasks[0].completed + n
                    progress.update(task, advance=n,
                                    rate=f"{done / max(time.perf_counter() - t_embed, 1e-9):,.0f} texts/s")

                ingest(col, items, batch_size=256, on_batch=on_batch)
            col.flush()
        step("build collection" if action == "rebuilt" else "open collection", t0)
        out["action"] = action

        searches = {}
        for mode, query, where in (
            ("vector", QUERIES["vector"], None),
            ("keyword", QUERIES["keyword"], None),
            ("hybrid", QUERIES["hybrid"], None),
            ("vector", QUERIES["filtered"], {"kind": "function", "package": {"$in": ["io", "codecs", "fileinput"]}}),
        ):
            t0 = time.perf_counter()
            hits = col.search(query, k=5, mode=mode, where=where)
            label = "filtered" if where else mode
            step(f"{label} search", t0)
            searches[label] = {"query": query, "where": where, "hits": [h.to_dict() for h in hits]}
            title = f"{label} search: {query!r}" + (f"  where {where}" if where else "")
            console.print(hits_table(hits, title))

        # the space being enforced: a Matryoshka-truncated query vector is another space
        q = enc.encode_queries([QUERIES["vector"]])[0]
        q128 = q[:128] / np.linalg.norm(q[:128])
        other = enc.spec.replace(dim=128, truncate_dim=128)
        try:
            col.search(vector=q128, space=other, k=5)
            refused = None
        except LatentSpaceError as exc:
            refused = f"{type(exc).__name__}: {exc}"
        console.print(Panel(refused or "NOT REFUSED", title="A query from another space (the same model, truncated "
                            "to 128 dimensions) is refused", border_style="red", title_align="left"))
        out["refused"] = refused

        summary = Table(title="What the store holds, and how long each step took", title_justify="left")
        summary.add_column("")
        summary.add_column("", justify="right")
        summary.add_row("docstrings / chunks", f"{len(docs):,} / {len(col):,}")
        summary.add_row("dimension / metric", f"{col.spec.dim} / {col.spec.metric}")
        summary.add_row("space fingerprint", col.spec.fingerprint)
        summary.add_row("store on disk", f"{store.disk_bytes() / 1e6:,.1f} MB in {store.path}")
        for name, secs in timings.items():
            summary.add_row(name, f"{secs:,.2f} s")
        console.print(summary)
        out.update(docstrings=len(docs), chunks=len(col), fingerprint=col.spec.fingerprint, disk_bytes=store.disk_bytes(),
                   timings=timings, searches=searches)
    finally:
        store.close()
    if as_json:
        emit_json(out)
    return out
