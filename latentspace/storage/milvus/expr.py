"""The filter tree (:mod:`..filter`) compiled to a Milvus boolean expression.

Milvus' JSON comparisons are not latentspace's typed ones (measured on Milvus Lite 3.2:
``metadata["x"] == 1`` matches 1, 1.0 and true; a JSON null reads as a missing key;
``not (metadata["x"] == 1)`` drops the records that lack the key, which ``$ne`` must
keep; ``in`` on a JSON key is a syntax error). So the compiled expression is a *superset*
of the filter: it lets Milvus narrow the candidates, and every record it returns is then
checked with the reference semantics (:func:`..filter.matches`). :func:`compile_expr` says
whether the expression is also exact (then a search needs no over-fetching) and gives
``None`` where nothing safe can be said (the whole collection is a candidate).

Every value is a quoted, escaped literal: a value holding quotes, brackets or
``or 1==1`` matches literally and never changes the expression. A string with a control
character other than newline, tab or carriage return, or a ``like`` pattern holding a
backslash, is not compiled (``None``), only checked afterwards.
"""

from __future__ import annotations

import math
from typing import Any

from ..filter import And, DocContains, Field, Node, Not, Or, kind

_SYMBOLS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}

Compiled = tuple[str | None, bool]  # (expression or None for "no constraint", exact)


def quote(text: str) -> str | None:
    """``text`` as a Milvus string literal, or None if it holds a character that has no
    safe escape."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            return None
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _number(value: Any) -> str | None:
    if isinstance(value, int):
        return str(value) if abs(value) < 2**63 else None
    return repr(float(value)) if math.isfinite(value) else None


def _literal(value: Any) -> str | None:
    k = kind(value)
    if k == "text":
        return quote(value)
    if k == "bool":
        return "true" if value else "false"
    if k == "number":
        return _number(value)
    return None


def _field(n: Field) -> Compiled:
    ref = f'metadata["{n.name}"]'  # the parser refuses quotes and backslashes in field names
    op, value = n.op, n.value
    if op == "$eq":
        if value is None:
            return f"{ref} is null", False  # null or missing: a superset
        lit = _literal(value)
        return (f"{ref} == {lit}", kind(value) == "text") if lit else (None, False)
    if op in _SYMBOLS:
        lit = _literal(value)
        return (f"{ref} {_SYMBOLS[op]} {lit}", kind(value) == "text") if lit else (None, False)
    if op == "$in":
        parts = [_field(Field(n.name, "$eq", v)) for v in value]
        if not parts or any(e is None for e, _ in parts):
            return None, False
        return "(" + " or ".join(e for e, _ in parts) + ")", all(x for _, x in parts)
    if op == "$exists":
        return (None, False) if value else (f"{ref} is null", False)
    if op == "$contains":
        lit = _literal(value)
        if lit is None:
            return None, False
        member = f"json_contains({ref}, {lit})"
        if kind(value) != "text":
            return member, False
        if "\\" in value:
            return None, False
        return f"({member} or {ref} like {quote('%' + value + '%')})", False
    return None, False  # pragma: no cover - the parser makes no other ops


def _node(n: Node) -> Compiled:
    if isinstance(n, Field):
        return _field(n)
    if isinstance(n, And):
        parts = [_node(c) for c in n.children]
        kept = [e for e, _ in parts if e is not None]
        exact = all(e is not None and x for e, x in parts)
        return ("(" + " and ".join(kept) + ")" if kept else None), exact
    if isinstance(n, Or):
        parts = [_node(c) for c in n.children]
        if any(e is None for e, _ in parts):
            return None, False
        return "(" + " or ".join(e for e, _ in parts) + ")", all(x for _, x in parts)
    if isinstance(n, Not):
        child = n.child
        if isinstance(child, Field) and child.op in ("$eq", "$in") and all(
                kind(v) == "text" for v in (child.value if child.op == "$in" else (child.value,))):
            inner, exact = _field(child)
            if inner is not None and exact:  # a missing or null key passes a negation
                return f'(not {inner} or metadata["{child.name}"] is null)', True
        return None, False
    if isinstance(n, DocContains):
        if "\\" in n.text:
            return None, False
        lit = quote("%" + n.text + "%")
        return (f"document like {lit}", False) if lit else (None, False)
    raise TypeError(f"not a filter node: {n!r}")  # pragma: no cover


def compile_expr(node: Node | None) -> Compiled:
    """``(expression, exact)`` of a parsed filter: the expression selects a superset of the
    matching records (``None``: every record), ``exact`` says it selects exactly them."""
    if node is None:
        return None, True
    return _node(node)
