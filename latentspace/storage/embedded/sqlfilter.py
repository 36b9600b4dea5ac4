"""The filter tree (:mod:`.filter`) compiled to parameterised SQLite SQL.

Metadata is a JSON column: a field is read with ``json_type``/``json_extract`` and its
JSON path bound as a parameter, like every value, so no part of a filter is ever spliced
into the SQL text. Typed comparison is kept by testing ``json_type`` first: a number never
equals or orders against a string, and booleans are not numbers. ``NOT COALESCE(x, 0)``
makes a missing field (NULL) fail the inner test, so ``$ne``, ``$nin`` and ``$not`` match
records that lack the field, as :func:`.filter.matches` defines.
"""

from __future__ import annotations

from typing import Any

from ..filter import And, DocContains, Field, Node, Not, Or, kind, parse

_SYMBOLS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


class _Compiler:
    def __init__(self, meta_col: str, doc_col: str):
        self.meta, self.doc = meta_col, doc_col
        self.params: list[Any] = []

    def node(self, n: Node) -> str:
        if isinstance(n, Field):
            return self.field(n)
        if isinstance(n, (And, Or)):
            joiner = " AND " if isinstance(n, And) else " OR "
            return "(" + joiner.join(self.node(c) for c in n.children) + ")"
        if isinstance(n, Not):
            return f"(NOT COALESCE({self.node(n.child)}, 0))"
        if isinstance(n, DocContains):
            self.params.append(n.text)
            return f"(instr(COALESCE({self.doc}, ''), ?) > 0)"
        raise TypeError(f"not a filter node: {n!r}")  # pragma: no cover

    def _jt(self, jpath: str) -> str:
        self.params.append(jpath)
        return f"json_type({self.meta}, ?)"

    def _jx(self, jpath: str) -> str:
        self.params.append(jpath)
        return f"json_extract({self.meta}, ?)"

    def eq(self, jpath: str, value: Any) -> str:
        k = kind(value)
        if k == "null":
            return f"({self._jt(jpath)} = 'null')"
        if k == "bool":
            return f"({self._jt(jpath)} = '{'true' if value else 'false'}')"
        types = "('integer', 'real')" if k == "number" else "('text')"
        jt = self._jt(jpath)
        jx = self._jx(jpath)
        self.params.append(value)
        return f"({jt} IN {types} AND {jx} = ?)"

    def field(self, n: Field) -> str:
        jpath = '$."' + n.name + '"'
        op, value = n.op, n.value
        if op == "$eq":
            return self.eq(jpath, value)
        if op in _SYMBOLS:
            types = "('integer', 'real')" if kind(value) == "number" else "('text')"
            jt = self._jt(jpath)
            jx = self._jx(jpath)
            self.params.append(value)
            return f"({jt} IN {types} AND {jx} {_SYMBOLS[op]} ?)"
        if op == "$in":
            return "(" + " OR ".join(self.eq(jpath, v) for v in value) + ")" if value else "(0)"
        if op == "$exists":
            return f"({self._jt(jpath)} IS {'NOT ' if value else ''}NULL)"
        if op == "$contains":
            k = kind(value)
            each = f"json_each({self.meta}, ?)"
            jt = self._jt(jpath)
            self.params.append(jpath)
            if k == "bool":
                member = f"EXISTS (SELECT 1 FROM {each} WHERE type = '{'true' if value else 'false'}')"
                return f"({jt} = 'array' AND {member})"
            types = "('integer', 'real')" if k == "number" else "('text')"
            self.params.append(value)
            member = f"EXISTS (SELECT 1 FROM {each} WHERE type IN {types} AND value = ?)"
            if k == "number":
                return f"({jt} = 'array' AND {member})"
            jt2 = self._jt(jpath)
            jx = self._jx(jpath)
            self.params.append(value)
            return f"(({jt} = 'array' AND {member}) OR ({jt2} = 'text' AND instr({jx}, ?) > 0))"
        raise ValueError(f"unknown field operator {op!r}")  # pragma: no cover - the parser makes no other


def compile_sql(node: Node | None, meta_col: str = "metadata", doc_col: str = "document") -> tuple[str, list[Any]]:
    """``(sql_expression, params)`` of a parsed filter; ``None`` compiles to ``("1", [])``."""
    if node is None:
        return "1", []
    c = _Compiler(meta_col, doc_col)
    return c.node(node), c.params


def compile_where(where: Any, meta_col: str = "metadata", doc_col: str = "document") -> tuple[str, list[Any]]:
    """Parse a filter (see :func:`.filter.parse`) and compile it to SQL."""
    return compile_sql(parse(where), meta_col, doc_col)
