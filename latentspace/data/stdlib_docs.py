"""Docstrings of the Python standard library (and of installed packages), read with ``ast``.

Nothing is imported or executed: each ``.py`` file is parsed and the docstrings of its
module, classes and functions are collected with their location. The result depends only
on the Python version's sources, so it is the same on every machine with that version.
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from ..ingest import Item

SKIP_PARTS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "__pycache__", "ensurepip", "_vendor"}


def _walk(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(part in SKIP_PARTS or part.startswith(("test_", ".")) for part in rel):
            continue
        yield path


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _docstrings(root: Path, min_chars: int) -> Iterator[Item]:
    for path in _walk(root):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        module = _module_name(root, path)
        if not module:
            continue
        stack: list[tuple[ast.AST, str]] = [(tree, module)]
        while stack:
            node, qual = stack.pop(0)
            doc = ast.get_docstring(node, clean=True)
            kind = "module" if isinstance(node, ast.Module) else "class" if isinstance(node, ast.ClassDef) else "function"
            if doc and len(doc) >= min_chars:
                yield Item(
                    qual,
                    doc,
                    {
                        "module": module,
                        "package": module.split(".")[0],
                        "kind": kind,
                        "name": qual.rsplit(".", 1)[-1],
                        "line": getattr(node, "lineno", 1),
                        "length": len(doc),
                    },
                )
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not child.name.startswith("_"):
                    stack.append((child, f"{qual}.{child.name}"))


def docstring_items(limit: int | None = None, min_chars: int = 40) -> list[Item]:
    """Docstrings of the standard library, in a fixed order; ``limit`` keeps an even spread."""
    return [Item(it.id, it.text, dict(it.metadata)) for it in _spread(list(_stdlib_items(min_chars)), limit)]


@lru_cache(maxsize=4)
def _stdlib_items(min_chars: int) -> tuple[Item, ...]:
    """Parsed once per process (~3 s): the sources do not change while it runs."""
    return tuple(_dedupe(_docstrings(Path(sysconfig.get_paths()["stdlib"]), min_chars)))


def package_docstring_items(limit: int | None = None, min_chars: int = 40) -> list[Item]:
    """Docstrings of the standard library and of the installed packages (purelib)."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    items: list[Item] = []
    for root in roots:
        items.extend(_dedupe(_docstrings(root, min_chars)))
    return _spread(_dedupe(items), limit)


def _dedupe(items) -> list[Item]:
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    out = []
    for it in items:
        h = hashlib.sha1(it.text.encode()).hexdigest()
        if it.id in seen_ids or h in seen_text:
            continue
        seen_ids.add(it.id)
        seen_text.add(h)
        out.append(it)
    return out


def _spread(items: list[Item], limit: int | None) -> list[Item]:
    if limit is None or len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def corpus_hash(items: list[Item]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(it.id.encode() + b"\0" + it.text.encode() + b"\0")
    return h.hexdigest()[:16]
