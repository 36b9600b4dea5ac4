"""Records from JSONL, CSV/TSV and Parquet files, one dict each: what ingest, interactions
and fine-tuning read their inputs with."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import BackendUnavailableError, InvalidInputError, NotFoundError


def read_rows(path: str | Path, alternatives: str = "") -> Iterator[dict]:
    """The records of a JSONL, CSV/TSV (numbers parsed) or Parquet file, one dict each."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"No such file: {p}")
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl(p)
    if suffix in (".csv", ".tsv"):
        return _csv(p, "\t" if suffix == ".tsv" else ",")
    if suffix == ".parquet":
        return _parquet(p)
    more = f" {alternatives}" if alternatives else ""
    raise InvalidInputError(f"Cannot read {p.name}: use .jsonl, .csv, .tsv, .parquet{more}.")


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
