"""CLI for making a space by training: fine-tune a collection's encoder on your pairs."""

from __future__ import annotations

from pathlib import Path

import typer

from ..core.errors import InvalidInputError
from .common import console, emit_json, open_existing_store


def finetune_cmd(
    store: str = typer.Argument(..., help="Store: a folder, or a URI (milvus://host:19530, milvus+lite:///folder)."),
    collection: str = typer.Argument(..., help="Collection whose encoder is the base model."),
    out: Path = typer.Option(..., "--out", "-o", help="New folder for the fine-tuned model."),
    pairs: Path | None = typer.Option(None, "--pairs", help="JSONL/CSV/Parquet of (query, passage[, negative])."),
    query_field: str = typer.Option("query", "--query-field",
                                    help="Field of the pairs file holding the query; without --pairs, the "
                                         "metadata field of the collection's records that holds each one's query."),
    passage_field: str = typer.Option("passage", "--passage-field"),
    negative_field: str = typer.Option("negative", "--negative-field"),
    label_key: str | None = typer.Option(None, "--label-key",
                                            help="Train for classification from the collection's labels in this "
                                                 "metadata field (batch-hard triplet loss; scored by kNN and "
                                                 "linear-probe accuracy on held-out records)."),
    loss: str | None = typer.Option(None, help="mnrl (MultipleNegativesRankingLoss, the default), matryoshka, "
                                                  "or triplet (the default with --label-key)."),
    dims: str | None = typer.Option(None, "--dims", help="Matryoshka dimensions, comma-separated."),
    epochs: int = typer.Option(1),
    batch_size: int = typer.Option(32, "--batch-size"),
    learning_rate: float | None = typer.Option(None, "--learning-rate",
                                                  help="Default: the rate measured best for the loss "
                                                       "(1e-4 for mnrl and matryoshka, 5e-5 for triplet)."),
    held_out: float = typer.Option(0.15, "--held-out", help="Fraction of pairs kept out to score before and after."),
    seed: int = typer.Option(0),
    threads: int | None = typer.Option(None),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Fine-tune the collection's encoder on pairs: a new model, so a new space. Prints the
    held-out scores before and after, and the migration command that moves the collection."""
    from ..embed.finetune import finetune, labelled_from_collection, pairs_from_collection, read_pairs

    with open_existing_store(store) as st:
        info = st.collection_info(collection)
        if info.encoder is None or info.encoder.get("kind") != "sentence-transformers":
            raise InvalidInputError(f"Collection {collection!r} has no sentence-transformers encoder to fine-tune "
                                    f"(its space: {info.spec.describe()}).")
        col = st.get_collection(collection)
        if label_key is not None:
            if pairs is not None:
                raise InvalidInputError("Give --pairs or --label-key, not both.")
            loss = loss or "triplet"
            if loss != "triplet":
                raise InvalidInputError(f"--label-key trains with --loss triplet, not {loss!r}.")
            data = labelled_from_collection(col, label_key)
        elif pairs is None:
            data = pairs_from_collection(col, query_field)
        else:
            data = read_pairs(pairs, query_field=query_field, passage_field=passage_field,
                              negative_field=negative_field)
        matryoshka = [int(d) for d in dims.split(",") if d.strip()] if dims else None
        result = finetune(col.encoder, data, out, loss=loss or "mnrl", matryoshka_dims=matryoshka, epochs=epochs,
                          batch_size=batch_size, learning_rate=learning_rate, held_out=held_out, seed=seed,
                          threads=threads, progress=not as_json)
    migrate = f"latentspace collection migrate {store} {collection} --model {out}"
    if as_json:
        emit_json(result.to_dict() | {"migrate": migrate})
        return
    console.print(f"Fine-tuned on {result.train_pairs:,} pairs in {result.seconds:.0f} s; saved to {out} "
                  f"(a new space, {result.encoder.spec.fingerprint}).")
    if result.before:
        console.print(f"Held-out ({result.held_out:,} {'records' if label_key else 'pairs'}), before -> after:")
        for key in result.before:
            console.print(f"  {key:<16} {result.before[key]:.3f} -> {result.after[key]:.3f}")
    console.print(f"See what moves before switching: {migrate} --no-switch (the agreement report; the new space is "
                  "built aside). Then run it without --no-switch to switch atomically (it resumes; "
                  "'collection rollback' switches back).")
