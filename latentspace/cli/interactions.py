"""CLI for item and user embeddings learned from interactions: fit, recommend, similar."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..core.errors import InvalidInputError
from .common import console, emit_json, open_existing_store

interactions_app = typer.Typer(
    help="Learn item and user vectors from (user, item[, weight]) interactions (implicit ALS or BPR), store the "
         "items as a collection, recommend.", no_args_is_help=True)

STORE = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder).")
COLLECTION = typer.Argument(..., help="Collection of the model's item vectors.")
MODEL = typer.Option(..., "--model", "-m", help="The model folder written by 'interactions fit'.")
JSON = typer.Option(False, "--json", help="Machine-readable output.")


def _item_metadata(path: Path, id_field: str, title_field: Optional[str]) -> tuple[dict, dict]:
    from ..core.records import read_rows

    metas, docs = {}, {}
    for n, row in enumerate(read_rows(path), start=1):
        if id_field not in row:
            raise InvalidInputError(f"{path}: item record {n} has no {id_field!r} field (use --item-id-field); "
                                    f"fields: {sorted(row)[:10]}.")
        item = str(row[id_field])
        metas[item] = {k: v for k, v in row.items() if k != id_field}
        if title_field and row.get(title_field) is not None:
            docs[item] = str(row[title_field])
    return metas, docs


@interactions_app.command("fit")
def fit_cmd(
    store: str = STORE, collection: str = COLLECTION,
    interactions: Path = typer.Argument(..., help="JSONL, CSV/TSV or Parquet of interactions."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to save the model in (user vectors and all)."),
    kind: str = typer.Option("als", help="als (implicit-feedback ALS) or bpr."),
    factors: Optional[int] = typer.Option(None, help="Vector dimension (default 64)."),
    regularization: Optional[float] = typer.Option(None),
    iterations: Optional[int] = typer.Option(None),
    alpha: Optional[float] = typer.Option(None, help="ALS: confidence scale of the weights."),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate", help="BPR only."),
    seed: int = typer.Option(0),
    threads: int = typer.Option(1),
    user_field: str = typer.Option("user", "--user-field"),
    item_field: str = typer.Option("item", "--item-field"),
    weight_field: str = typer.Option("weight", "--weight-field", help="Optional: 1 where absent."),
    items: Optional[Path] = typer.Option(None, "--items", help="Item metadata file (JSONL/CSV/Parquet), joined by id."),
    item_id_field: str = typer.Option("id", "--item-id-field"),
    title_field: Optional[str] = typer.Option(None, "--title-field", help="Item field kept as each item's document."),
    as_json: bool = JSON,
) -> None:
    """Learn the vectors, save the model, and store the item vectors as a new collection."""
    import time

    from ..apps.interactions import fit_interactions
    from ..collections.store import open_store

    metas, docs = _item_metadata(items, item_id_field, title_field) if items else ({}, {})
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInputError(f"{out} exists and is not an empty folder: the model folder must be new.")
    _check_new(store, collection)
    t0 = time.perf_counter()
    model = fit_interactions(interactions, kind=kind, factors=factors, regularization=regularization,
                             iterations=iterations, alpha=alpha, learning_rate=learning_rate, seed=seed,
                             threads=threads, user_key=user_field, item_key=item_field, weight_key=weight_field,
                             progress=not as_json)
    seconds = time.perf_counter() - t0
    with open_store(store) as st:  # the collection first: a name taken meanwhile leaves no model folder behind
        stored = len(model.to_collection(st, collection, metadata=metas, documents=docs or None))
    model.save(out)
    report = {"collection": collection, "model": str(out), "kind": model.kind, "params": model.params,
              "users": len(model.users), "items": len(model.items), "interactions": int(model.seen.nnz),
              "stored_items": stored, "items_with_metadata": sum(i in metas for i in model.items),
              "fingerprint": model.spec.fingerprint, "interactions_sha256": model.data_sha256,
              "seconds": round(seconds, 2)}
    if as_json:
        emit_json(report)
        return
    console.print(f"Learned {model.kind.upper()} vectors ({model.spec.dim} dimensions) for {len(model.users):,} users "
                  f"and {len(model.items):,} items from {model.seen.nnz:,} interactions in {seconds:.1f} s.")
    console.print(f"Stored {stored:,} item vectors as collection {collection!r} (space {model.spec.fingerprint}; "
                  f"{report['items_with_metadata']:,} with metadata); the model is in {out}.")


def _check_new(store: str, collection: str) -> None:
    """Refuse an existing collection name before any work: a newly fitted model is a new space."""
    from ..core.errors import AlreadyExistsError

    if "://" not in store and not Path(store).exists():
        return
    with open_existing_store(store) as st:
        taken = any(c.name == collection for c in st.list_collections())
    if taken:
        raise AlreadyExistsError(
            f"Collection {collection!r} exists in {store}: a newly fitted model is a new space, never written over "
            "another. Store it under a new name and point your application at it.")


def _table(title: str, recs, explain: bool) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("item", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("document / metadata", overflow="ellipsis", max_width=60)
    if explain:
        table.add_column("because you liked", overflow="fold", max_width=50)
    for n, r in enumerate(recs, start=1):
        row = [str(n), r.item, f"{r.score:.4f}", str(r.metadata.get("title") or dict(r.metadata) or "")]
        if explain:
            row.append(", ".join(f"{i} ({s:.3f})" for i, s in r.because))
        table.add_row(*row)
    return table


def _load(model: Path, store: str, collection: str):
    from ..apps.interactions import InteractionModel

    m = InteractionModel.load(model)
    st = open_existing_store(store)
    return m, st, st.get_collection(collection)


@interactions_app.command("recommend")
def recommend_cmd(
    store: str = STORE, collection: str = COLLECTION, model: Path = MODEL,
    user: Optional[str] = typer.Option(None, "--user", "-u", help="A user the model learned from."),
    liked: Optional[str] = typer.Option(None, "--liked", help="A new user's items, comma-separated."),
    k: int = typer.Option(10, "-k"),
    explain: bool = typer.Option(False, "--explain", help="Show the user's items behind each recommendation."),
    as_json: bool = JSON,
) -> None:
    """Items for a user (or for the items they liked), their own items left out."""
    if (user is None) == (liked is None):
        raise InvalidInputError("Give --user or --liked (one of them).")
    liked_items = [s.strip() for s in liked.split(",") if s.strip()] if liked is not None else None
    m, st, col = _load(model, store, collection)
    with st:
        recs = m.recommend(user, k, liked=liked_items, collection=col, explain=explain)
    if as_json:
        emit_json([{"item": r.item, "score": r.score, "metadata": dict(r.metadata), "because": r.because}
                   for r in recs])
        return
    console.print(_table(f"For {'user ' + user if user else 'items ' + liked}", recs, explain))


@interactions_app.command("similar")
def similar_cmd(
    store: str = STORE, collection: str = COLLECTION,
    item: str = typer.Argument(..., help="An item id."),
    model: Path = MODEL,
    k: int = typer.Option(10, "-k"),
    as_json: bool = JSON,
) -> None:
    """Items most similar to an item (cosine of the learned vectors)."""
    m, st, col = _load(model, store, collection)
    with st:
        recs = m.similar_items(item, k, collection=col)
    if as_json:
        emit_json([{"item": r.item, "score": r.score, "metadata": dict(r.metadata)} for r in recs])
        return
    console.print(_table(f"Similar to {item}", recs, False))


@interactions_app.command("movielens")
def movielens_cmd(out: Path = typer.Argument(..., help="Folder for ratings.csv and movies.jsonl.")) -> None:
    """Write MovieLens 100k (from the recbole package's files) as ratings.csv and movies.jsonl, to try 'fit' on."""
    import csv
    import json

    from ..data.movielens import movielens_100k

    ml = movielens_100k()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ratings.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "weight", "timestamp"])
        w.writerows(zip(ml.users, ml.items, ml.ratings, ml.timestamps))
    with open(out / "movies.jsonl", "w", encoding="utf-8") as f:
        for item, meta in ml.movies.items():
            f.write(json.dumps({"id": item, **meta}) + "\n")
    console.print(f"Wrote {len(ml.users):,} ratings to {out / 'ratings.csv'} and {len(ml.movies):,} movies to "
                  f"{out / 'movies.jsonl'}. Try: latentspace interactions fit STORE movies {out / 'ratings.csv'} "
                  f"--items {out / 'movies.jsonl'} --title-field title -o MODEL_DIR")
