"""Build ``docstrings.jsonl.gz``: the test corpus, paragraphs of the standard library's docstrings.

Run once with the Python named in the file's header line; the result is committed with its
sha256 in ``tests/corpus.py``, so every machine tests on the same text whatever Python or
packages it has. Nothing here runs during the tests.

    python tests/data/build_corpus.py
"""

from __future__ import annotations

import gzip
import json
import platform
from pathlib import Path

from latentspace.data.stdlib_docs import docstring_items

MIN_CHARS = 40
MAX_CHARS = 1500


def paragraphs() -> list[dict]:
    out, seen = [], set()
    for item in docstring_items(min_chars=MIN_CHARS):
        for n, para in enumerate(item.text.split("\n\n")):
            para = " ".join(para.split())
            if len(para) < MIN_CHARS or para in seen:
                continue
            seen.add(para)
            out.append({"id": f"{item.id}#{n}", "text": para[:MAX_CHARS], "module": item.metadata["module"],
                        "package": item.metadata["package"], "kind": item.metadata["kind"]})
    return out


def main() -> None:
    rows = paragraphs()
    path = Path(__file__).with_name("docstrings.jsonl.gz")
    header = {"source": f"docstrings of the Python {platform.python_version()} standard library",
              "license": "Python Software Foundation License", "rows": len(rows)}
    body = "\n".join(json.dumps(r, ensure_ascii=False, sort_keys=True) for r in [header, *rows]) + "\n"
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(body.encode())
    print(f"{path}: {len(rows)} paragraphs")


if __name__ == "__main__":
    main()
