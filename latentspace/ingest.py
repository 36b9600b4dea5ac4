"""Reading files into collections: JSONL, CSV, Parquet or a folder of .txt/.md files.

Long texts are split into overlapping chunks on word boundaries; each chunk becomes a
record ``<id>#<n>`` whose metadata names its source. Ingestion is resumable: records
already stored with the same content hash are skipped without embedding them again.
Records may carry precomputed vectors (``vector_field``): they are stored as given (in the
space the caller names), with their text, if any, kept whole as the document.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from .core.validation import check_int

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
) -> Iterator[Item]:
    """Yield items from a JSONL, CSV or Parquet file, or a folder of text files.

    With ``vector_field``, each record's vector is read from that field (a list of numbers;
    in CSV a JSON list) and its text, optional then, is kept as the document."""
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"No such file or folder: {p}")
    if p.is_dir():
        if vector_field:
            raise InvalidInputError(f"{p} is a folder of text files: it has no {vector_field!r} field for vectors.")
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise InvalidInputError(f"Folder {p} has no {'/'.join(TEXT_SUFFIXES)} files.")
        for f in files:
            rel = f.relative_to(p).as_posix()
            yield Item(rel, f.read_text(encoding="utf-8", errors="replace"), {"source": rel})
        return
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows: Iterable[dict] = _jsonl(p)
    elif suffix in (".csv", ".tsv"):
        rows = _csv(p, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        rows = _parquet(p)
    else:
        raise InvalidInputError(f"Cannot ingest {p.name}: use .jsonl, .csv, .tsv, .parquet or a folder of .txt/.md files.")
    for n, row in enumerate(rows, start=1):
        vector = None
        if vector_field:
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
            meta = {k: v for k, v in row.items() if k not in (id_field, text_field, vector_field)}
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


def _jsonl(p: Path) -> Iterator[dict]:
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{p}:{n} is not valid JSON: {exc}") from None
            if not isinstance(row, dict):
                raise InvalidInputError(f"{p}:{n} is not a JSON object.")
            yield row


_NUM = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


def _csv(p: Path, delimiter: str) -> Iterator[dict]:
    with open(p, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter=delimiter):
            yield {k: (_num(v) if isinstance(v, str) and _NUM.match(v) else v) for k, v in row.items() if k is not None}


def _num(v: str) -> int | float:
    try:
        return int(v)
    except ValueError:
        return float(v)


def _parquet(p: Path) -> Iterator[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BackendUnavailableError("Reading Parquet needs pyarrow: pip install 'latentspace[parquet]'") from None
    for batch in pq.ParquetFile(p).iter_batches(batch_size=2048):
        yield from batch.to_pylist()


def chunk_items(items: Iterable[Item], size: int, overlap: int) -> Iterator[Item]:
    """Long texts split into chunks; an item with a precomputed vector is kept whole (its vector
    stands for all of its text)."""
    for item in items:
        if item.vector is not None or item.text is None:
            yield item
            continue
        pieces = chunk_text(item.text, size, overlap)
        if len(pieces) == 1:
            yield Item(item.id, pieces[0], item.metadata)
            continue
        for n, piece in enumerate(pieces):
            yield Item(f"{item.id}#{n}", piece, {**item.metadata, "source_id": item.id, "chunk": n})


@dataclass
class IngestReport:
    read: int = 0
    added: int = 0
    replaced: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"read": self.read, "added": self.added, "replaced": self.replaced, "skipped": self.skipped}


def ingest(
    collection,
    items: Iterable[Item],
    *,
    batch_size: int = 256,
    on_batch: Callable[[int], None] | None = None,
    space=None,
) -> IngestReport:
    """Upsert items in batches; unchanged records (same content hash) are skipped, not re-embedded.

    Items with vectors are stored as given; ``space`` names their space (needed for a
    collection bound to an encoder, as for ``Collection.add``). Items with and without
    vectors cannot be mixed."""
    import numpy as np

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
        res = collection.upsert(
            list(seen), documents=[i.text for i in seen.values()], metadatas=[i.metadata for i in seen.values()],
            vectors=vectors, space=space if with_vectors else None,
        )
        report.added += res.added
        report.replaced += res.replaced
        report.skipped += res.unchanged + (len(batch) - len(seen))
        if on_batch:
            on_batch(len(batch))
        batch.clear()

    for item in items:
        has_vector = item.vector is not None
        if with_vectors is None:
            with_vectors = has_vector
        elif has_vector != with_vectors:
            raise InvalidInputError(f"ingest: record {item.id!r} {'has' if has_vector else 'lacks'} a vector and "
                                    "the ones before it do not: all records need vectors, or none.")
        if not has_vector and not (item.text or "").strip():
            continue
        report.read += 1
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return report
