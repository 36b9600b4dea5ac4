"""The test corpus: 8,920 paragraphs of the Python 3.11.7 standard library's docstrings.

Committed as ``tests/data/docstrings.jsonl.gz`` (built by ``tests/data/build_corpus.py``)
and checked against its sha256 on every load, so every machine tests on the same text
whatever Python version or packages it has installed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from functools import lru_cache
from pathlib import Path

PATH = Path(__file__).with_name("data") / "docstrings.jsonl.gz"
#: sha256 of the decompressed file
SHA256 = "ae344d3b0d56155bdf483dafcac2cbb40541153cd11890a89d9c6f4793d0c048"
N_QUERIES = 500


@lru_cache(maxsize=1)
def rows() -> tuple[dict, ...]:
    body = gzip.decompress(PATH.read_bytes())
    got = hashlib.sha256(body).hexdigest()
    if got != SHA256:
        raise RuntimeError(f"{PATH} has sha256 {got}, expected {SHA256}: the test corpus was changed. Rebuild it "
                           "with tests/data/build_corpus.py and update SHA256 in tests/corpus.py in the same commit.")
    lines = body.decode().splitlines()
    header = json.loads(lines[0])
    out = tuple(json.loads(line) for line in lines[1:])
    if len(out) != header["rows"]:
        raise RuntimeError(f"{PATH}: {len(out)} rows, header says {header['rows']}")
    return out


def split() -> tuple[list[dict], list[dict]]:
    """(base, queries): every ~18th paragraph (500 spread evenly) is a held-out query."""
    all_rows = rows()
    step = len(all_rows) / N_QUERIES
    q_idx = {int(i * step + step / 2) for i in range(N_QUERIES)}
    base = [r for i, r in enumerate(all_rows) if i not in q_idx]
    queries = [r for i, r in enumerate(all_rows) if i in q_idx]
    return base, queries


def topics(per_topic: int) -> tuple[list[str], list[str], dict[str, str]]:
    """(texts, labels, descriptions): the first ``per_topic`` base paragraphs of each package in
    :data:`latentspace.data.topics.TOPICS`, labelled by their package."""
    from latentspace.data.topics import TOPICS

    texts, labels, count = [], [], {}
    for r in split()[0]:
        p = r["package"]
        if p in TOPICS and count.get(p, 0) < per_topic:
            count[p] = count.get(p, 0) + 1
            texts.append(r["text"])
            labels.append(p)
    return texts, labels, dict(TOPICS)


def spread(n: int) -> list[dict]:
    """``n`` base paragraphs spread evenly over the corpus (every module's share)."""
    base = split()[0]
    step = len(base) / n
    return [base[int(i * step)] for i in range(n)]
