"""What every CLI command module shares: consoles, JSON output, tables, opening a store."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..core.errors import InvalidInputError


def _console(stderr: bool = False, **kw) -> Console:
    import os

    # piped output gets a readable width rather than Rich's 80-column fallback
    wide = None if (sys.stderr if stderr else sys.stdout).isatty() or os.environ.get("COLUMNS") else 120
    return Console(stderr=stderr, width=wide, **kw)


console = _console()
err_console = _console(stderr=True)
STATE = {"debug": False}


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def parse_json_option(text: str | None, option: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{option} is not valid JSON ({exc.msg} at position {exc.pos}): {text!r}") from None


def first_line(text: str | None, width: int = 90) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def hits_table(hits, title: str, show: list[str] | tuple[str, ...] = (), width: int | None = None) -> Table:
    """Rank, id and score always whole (ids are what users pass on, e.g. to ``recommend``);
    ``show`` adds metadata columns; the document's first line gets what width is left."""
    width = width or console.width
    cells = [[str(i), h.id, f"{h.score:.4f}", *(_cell(h.metadata.get(f)) for f in show)]
             for i, h in enumerate(hits, start=1)]
    heads = ["#", "id", "score", *show]
    fixed = [max([len(heads[c])] + [len(row[c]) for row in cells]) for c in range(len(heads))]
    # a heavy-headed box costs 3 characters per column and one more at the edge
    left = width - sum(fixed) - 3 * (len(heads) + 1) - 1
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("#", justify="right", style="dim", no_wrap=True, width=fixed[0])
    table.add_column("id", style="cyan", overflow="fold", min_width=min(fixed[1], max(width // 3, 8)))
    table.add_column("score", justify="right", no_wrap=True, width=fixed[2])
    for n, f in enumerate(show):
        table.add_column(f, overflow="ellipsis", no_wrap=True, width=fixed[3 + n])
    if left >= 8:
        table.add_column("first line", overflow="ellipsis", no_wrap=True, width=min(left, 90))
    for row, h in zip(cells, hits):
        table.add_row(*row, *([first_line(h.document, min(left, 90))] if left >= 8 else []))
    return table


def _cell(value) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 30 else text[:29] + "…"


def open_existing_store(path: Path):
    from ..collections.store import open_store

    return open_store(path, create=False)


def open_for_queries(st, name: str):
    """The collection, with its encoder set up to embed a few queries fast: a one-shot CLI
    call spends its time loading the model, not embedding (see query_encoder_from_config)."""
    info = st.collection_info(name)
    if info.encoder is None:
        return st.get_collection(name)
    from ..embed import query_encoder_from_config

    return st.get_collection(name, encoder=query_encoder_from_config(info.encoder))
