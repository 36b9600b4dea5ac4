"""Reading files into collections: JSONL, CSV, Parquet or a folder of .txt/.md files.

Long texts are split into overlapping chunks on word boundaries; each chunk becomes a
record ``<id>#<n>`` whose metadata names its source. Ingestion is resumable: records
already stored with the same content hash are skipped without embedding them again.
Records may carry precomputed vectors (``vector_field``): they are stored as given (in the
space the caller names), with their text, if any, kept whole as the document.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.errors import InvalidInputError, NotFoundError, TruncationWarning
from .collections.chunks import record_of
from .core.records import read_rows
from .core.validation import check_choice, check_int

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst")


@dataclass
class Item:
    id: str
    text: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: Any = None  # a precomputed vector (a list of numbers), or None to embed the text


def chunk_text(text: str, size: int = 1000, overlap: int = 100) -> list[str]:
    """Split ``text`` into pieces of at most ``size`` characters, overlapping by about ``overlap``.

    Cuts fall on paragraph, sentence or word boundaries where one lies in the last fifth
    of a piece; a text no longer than ``size`` is returned whole.
    """
    check_int(size, "chunk_size", "chunk_text", 50, 1_000_000)
    check_int(overlap, "chunk_overlap", "chunk_text", 0, size // 2)
    text = text.strip()
    if len(text) <= size:
        return [text] if text else []
    chunks = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            window = text[start + int(size * 0.8) : end]
            for sep in ("\n\n", ". ", "\n", " "):
                cut = window.rfind(sep)
                if cut != -1:
                    end = start + int(size * 0.8) + cut + len(sep)
                    break
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= len(text):
            break
        nxt = end - overlap
        if overlap:
            space = text.find(" ", nxt, end)
            nxt = space + 1 if space != -1 else nxt
        start = max(nxt, start + 1)
    return chunks


def _pick(row: dict, name: str | None, path: Path, n: int, what: str) -> Any:
    if name not in row:
        raise InvalidInputError(
            f"{path}: record {n} has no {what} field {name!r}. Fields present: {sorted(row)[:20]}. "
            f"Choose one with --{what}-field."
        )
    return row[name]


def read_items(
    path: str | Path,
    *,
    id_field: str | None = "id",
    text_field: str = "text",
    metadata_fields: list[str] | None = None,
    vector_field: str | None = None,
    template: str | None = None,
) -> Iterator[Item]:
    """Yield items from a JSONL, CSV or Parquet file, or a folder of text files.

    With ``vector_field``, each record's vector is read from that field (a list of numbers;
    in CSV a JSON list) and its text, optional then, is kept as the document. With
    ``template`` (``"{synopsis}. {body}"``) the text is made from several fields instead of
    ``text_field``; the fields it names are not kept as metadata."""
    if template is not None:
        text_template(template)  # checked before anything is read
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"No such file or folder: {p}")
    if p.is_dir():
        if vector_field or template:
            raise InvalidInputError(f"{p} is a folder of text files: it has no fields for "
                                    f"{'vectors' if vector_field else 'a text template'}.")
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise InvalidInputError(f"Folder {p} has no {'/'.join(TEXT_SUFFIXES)} files.")
        for f in files:
            rel = f.relative_to(p).as_posix()
            yield Item(rel, f.read_text(encoding="utf-8", errors="replace"), {"source": rel})
        return
    yield from items_of_rows(read_rows(p, "or a folder of .txt/.md files"), p, id_field=id_field,
                             text_field=text_field, metadata_fields=metadata_fields, vector_field=vector_field,
                             template=template)


def items_of_rows(rows: Iterable[dict], path: str | Path, *, id_field: str | None = "id", text_field: str = "text",
                  metadata_fields: list[str] | None = None, vector_field: str | None = None,
                  template: str | None = None) -> Iterator[Item]:
    """The items of a file's rows (``path`` names the file, for default ids and errors): what
    :func:`read_items` makes of a file, also where another engine read its bytes."""
    p = Path(path)
    render = text_template(template) if template is not None else None
    text_fields = set(render.fields) if render else {text_field}
    for n, row in enumerate(rows, start=1):
        vector = None
        if render is not None:
            if not any(f in row for f in render.fields):
                raise InvalidInputError(f"{p}: record {n} has none of the template's fields {render.fields}. "
                                        f"Fields present: {sorted(row)[:20]}.")
            text = render(row)
            if vector_field:
                vector = _vector(_pick(row, vector_field, p, n, "vector"), p, n, vector_field)
        elif vector_field:
            vector = _vector(_pick(row, vector_field, p, n, "vector"), p, n, vector_field)
            text = row.get(text_field)
        else:
            text = _pick(row, text_field, p, n, "text")
            if text is None:
                continue
        if text is not None and not isinstance(text, str):
            raise InvalidInputError(f"{p}: record {n} field {text_field!r} is {type(text).__name__}, not text.")
        rid = str(_pick(row, id_field, p, n, "id")) if id_field else f"{p.stem}-{n}"
        if metadata_fields is None:
            meta = {k: v for k, v in row.items() if k not in text_fields and k not in (id_field, vector_field)}
        else:
            meta = {k: row.get(k) for k in metadata_fields if k in row and k != vector_field}
        yield Item(rid, text, {k: _plain(v) for k, v in meta.items()}, vector)


def _vector(value: Any, p: Path, n: int, name: str) -> list:
    if isinstance(value, str):  # CSV cells: a JSON list
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidInputError(f"{p}: record {n} field {name!r} is not a list of numbers (a vector).")
    return list(value)


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, float) and v != v:
        return None
    return v


def chunk_items(items: Iterable[Item], size: int, overlap: int, *,
                count_tokens: Callable[[list[str]], list[int]] | None = None,
                max_tokens: int | None = None) -> Iterator[Item]:
    """Long texts split into chunks ``<id>#<n>`` whose metadata names their record
    (``source_id``) and place (``chunk``); a text that fits is one record kept under its own
    id. With ``count_tokens`` and ``max_tokens`` (the model's limit), a piece of ``size``
    characters that still has more tokens than the model reads is split further, so no
    chunk is cut by the model. An item with a precomputed vector is kept whole (its vector
    stands for all of its text)."""
    for item in items:
        if item.vector is not None or item.text is None:
            yield item
            continue
        pieces = chunk_text(item.text, size, overlap)
        if count_tokens is not None and max_tokens:
            pieces = _fit_tokens(pieces, overlap, count_tokens, max_tokens)
        if len(pieces) == 1:
            yield Item(item.id, pieces[0], item.metadata)
            continue
        for n, piece in enumerate(pieces):
            yield Item(f"{item.id}#{n}", piece, {**item.metadata, "source_id": item.id, "chunk": n})


def _fit_tokens(pieces: list[str], overlap: int, count_tokens, max_tokens: int) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        # a token spans at least a character or two: only long pieces can exceed the limit
        tokens = count_tokens([piece])[0] if len(piece) > max_tokens // 2 else 0
        if tokens <= max_tokens:
            out.append(piece)
            continue
        size = max(50, int(len(piece) * max_tokens / tokens * 0.9))
        smaller = chunk_text(piece, size, min(overlap, size // 2))
        if len(smaller) <= 1:  # nothing to cut at (one enormous word): the model truncates it
            out.append(piece)
            continue
        out.extend(_fit_tokens(smaller, overlap, count_tokens, max_tokens))
    return out


_FIELD = re.compile(r"\{([^{}]+)\}")


def text_template(template: str) -> Callable[[dict], str]:
    """``"{synopsis}. {body}"`` -> a function of a row that fills in each ``{field}`` (a
    missing or null field is left empty, and separators left at the start are dropped)."""
    if not isinstance(template, str) or not _FIELD.search(template):
        raise InvalidInputError(f"A text template must name at least one field as {{field}}. Got {template!r}.")
    fields = _FIELD.findall(template)

    def render(row: dict) -> str:
        text = _FIELD.sub(lambda m: "" if row.get(m.group(1)) is None else str(row.get(m.group(1))).strip(), template)
        return text.strip().lstrip(" .,;:-|").strip()

    render.fields = fields  # type: ignore[attr-defined]
    return render


@dataclass
class IngestReport:
    """What an ingest did. ``records`` are the file's records, ``chunks`` the pieces they were
    split into and stored (a record that fits is one chunk); added / replaced / skipped count
    chunks."""

    records: int = 0
    chunks: int = 0
    added: int = 0
    replaced: int = 0
    skipped: int = 0
    split: int = 0  # records stored as several chunks
    truncated: int = 0  # chunks the model read only the beginning of

    def to_dict(self) -> dict[str, int]:
        return {"records": self.records, "chunks": self.chunks, "split_records": self.split, "added": self.added,
                "replaced": self.replaced, "skipped": self.skipped, "truncated": self.truncated}

    def describe(self) -> str:
        split = (f" ({self.split:,} record{'s' if self.split != 1 else ''} longer than the chunk size split into "
                 f"{self.chunks - self.records + self.split:,} chunks)") if self.split else ""
        return (f"Read {self.records:,} records as {self.chunks:,} chunks{split}; added {self.added:,}, replaced "
                f"{self.replaced:,}, skipped {self.skipped:,} unchanged chunks")


def ingest(
    collection,
    items: Iterable[Item],
    *,
    batch_size: int = 256,
    on_batch: Callable[[int], None] | None = None,
    space=None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
) -> IngestReport:
    """Upsert items in batches; unchanged records (same content hash) are skipped, not re-embedded.

    Items with vectors are stored as given; ``space`` names their space (needed for a
    collection bound to an encoder, as for ``Collection.add``). Items with and without
    vectors cannot be mixed. ``engine="ray"`` embeds on a Ray cluster (``address``: a running
    one, or None for a local one; ``workers``: actors), see :mod:`.ray_ingest`."""
    import numpy as np

    check_choice(engine, "engine", "ingest", ("local", "ray"))
    if engine == "ray":
        from .ray_ingest import embed_on_ray

        return embed_on_ray(collection, list(items), address=address, workers=workers, batch_size=batch_size,
                            on_batch=on_batch)
    check_int(batch_size, "batch_size", "ingest", 1, 100_000)
    report = IngestReport()
    batch: list[Item] = []
    with_vectors: bool | None = None

    def flush():
        seen: dict[str, Item] = {}
        for it in batch:
            seen[it.id] = it  # the last of duplicate ids wins
        vectors = None
        if with_vectors:
            try:
                vectors = np.asarray([i.vector for i in seen.values()], dtype=np.float32)
            except (ValueError, TypeError):
                raise InvalidInputError("ingest: the vectors are not all lists of numbers of one length.") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncationWarning)  # counted, and said once at the end
            res = collection.upsert(
                list(seen), documents=[i.text for i in seen.values()], metadatas=[i.metadata for i in seen.values()],
                vectors=vectors, space=space if with_vectors else None,
            )
        report.truncated += res.truncated
        report.added += res.added
        report.replaced += res.replaced
        report.skipped += res.unchanged + (len(batch) - len(seen))
        if on_batch:
            on_batch(len(batch))
        batch.clear()

    records: set[str] = set()

    for item in items:
        has_vector = item.vector is not None
        if with_vectors is None:
            with_vectors = has_vector
        elif has_vector != with_vectors:
            raise InvalidInputError(f"ingest: record {item.id!r} {'has' if has_vector else 'lacks'} a vector and "
                                    "the ones before it do not: all records need vectors, or none.")
        if not has_vector and not (item.text or "").strip():
            continue
        report.chunks += 1
        record = record_of(item.id, item.metadata)
        if record not in records:
            records.add(record)
            report.records += 1
            report.split += record != item.id
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if report.truncated:
        warnings.warn(f"ingest: {report.truncated} chunk(s) are longer than the model reads and were embedded from "
                      "their beginning only; ingest with a smaller --chunk-size to keep all of their text searchable.",
                      TruncationWarning, stacklevel=2)
    return report
