"""Records from JSONL, CSV/TSV and Parquet files, one dict each: what ingest, interactions
and fine-tuning read their inputs with."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import BackendUnavailableError, InvalidInputError, NotFoundError


SUFFIXES = (".jsonl", ".ndjson", ".csv", ".tsv", ".parquet")


def read_rows(path: str | Path, alternatives: str = "") -> Iterator[dict]:
    """The records of a JSONL, CSV/TSV (numbers parsed) or Parquet file, one dict each."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"No such file: {p}")
    _check_suffix(p, alternatives)
    if p.suffix.lower() == ".parquet":
        return _parquet(p)
    return _text_rows(open(p, encoding="utf-8", newline=""), p)


def rows_from_bytes(data: bytes, name: str | Path, alternatives: str = "") -> Iterator[dict]:
    """The records of a file's contents read elsewhere (by Ray Data, from object storage),
    parsed exactly as :func:`read_rows` parses the file ``name``."""
    p = Path(name)
    _check_suffix(p, alternatives)
    if p.suffix.lower() == ".parquet":
        return _parquet(io.BytesIO(data))
    return _text_rows(io.StringIO(data.decode("utf-8"), newline=""), p)


def _check_suffix(p: Path, alternatives: str) -> None:
    if p.suffix.lower() not in SUFFIXES:
        more = f" {alternatives}" if alternatives else ""
        raise InvalidInputError(f"Cannot read {p.name}: use .jsonl, .csv, .tsv, .parquet{more}.")


def _text_rows(f, p: Path) -> Iterator[dict]:
    suffix = p.suffix.lower()
    with f:
        if suffix in (".csv", ".tsv"):
            yield from _csv(f, "\t" if suffix == ".tsv" else ",")
        else:
            yield from _jsonl(f, p)


def _jsonl(f, p: Path) -> Iterator[dict]:
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


def _csv(f, delimiter: str) -> Iterator[dict]:
    for row in csv.DictReader(f, delimiter=delimiter):
        yield {k: (_num(v) if isinstance(v, str) and _NUM.match(v) else v) for k, v in row.items() if k is not None}


def _num(v: str) -> int | float:
    try:
        return int(v)
    except ValueError:
        return float(v)


def _parquet(p) -> Iterator[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BackendUnavailableError("Reading Parquet needs pyarrow: pip install 'latentspace[parquet]'") from None
    for batch in pq.ParquetFile(p).iter_batches(batch_size=2048):
        yield from batch.to_pylist()
