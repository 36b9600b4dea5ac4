"""Metadata and document filters compiled to parameterised SQL.

Syntax (MongoDB-like)::

    {"year": 2021}                              # $eq shorthand
    {"year": {"$gte": 2020, "$lt": 2024}}       # several operators on one field: AND
    {"$and": [...]}, {"$or": [...]}, {"$not": {...}}
    {"tags": {"$contains": "python"}}           # list membership (or substring of a string)
    {"lang": {"$in": ["en", "de"]}}, {"$nin": [...]}, {"$exists": true}, {"$ne": ...}
    {"$contains": "socket"}                     # the document text contains this substring

Comparisons are typed: a number never equals or orders against a string, and booleans
are not numbers. ``$ne``, ``$nin`` and ``$not`` match records that lack the field.
Values are always bound as parameters; field names go in as JSON-path parameters.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from ..core.errors import InvalidInputError

FIELD_OPS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not", "$contains"}
MAX_IN = 10_000
MAX_DEPTH = 32


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, numbers.Real):
        if isinstance(value, float) and value != value:
            return "nan"
        return "number"
    if isinstance(value, str):
        return "text"
    return "other"


class _Compiler:
    def __init__(self, meta_col: str, doc_col: str):
        self.meta, self.doc = meta_col, doc_col
        self.params: list[Any] = []

    def err(self, path: str, msg: str) -> InvalidInputError:
        return InvalidInputError(f"Invalid filter at {path}: {msg}")

    def compile(self, where: Any, path: str = "where", depth: int = 0) -> str:
        if depth > MAX_DEPTH:
            raise self.err(path, f"nested deeper than {MAX_DEPTH} levels")
        if not isinstance(where, Mapping):
            raise self.err(path, f"expected an object, got {type(where).__name__}")
        if not where:
            raise self.err(path, "empty object; pass None for no filter")
        parts = []
        for key, value in where.items():
            sub = f"{path}[{key!r}]"
            if not isinstance(key, str):
                raise self.err(sub, "keys must be strings")
            if key.startswith("$"):
                parts.append(self.logical(key, value, sub, depth))
            else:
                parts.append(self.field(key, value, sub, depth))
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def logical(self, op: str, value: Any, path: str, depth: int) -> str:
        if op in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise self.err(path, f"{op} takes a non-empty list of filters")
            joined = f" {op[1:].upper()} ".join(
                self.compile(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)
            )
            return f"({joined})"
        if op == "$not":
            return f"(NOT COALESCE({self.compile(value, path, depth + 1)}, 0))"
        if op == "$contains":
            if not isinstance(value, str) or not value:
                raise self.err(path, "document $contains takes a non-empty string")
            self.params.append(value)
            return f"(instr(COALESCE({self.doc}, ''), ?) > 0)"
        raise self.err(path, f"unknown operator {op!r}; top-level operators are $and, $or, $not, $contains")

    def field(self, name: str, cond: Any, path: str, depth: int) -> str:
        if '"' in name or "\\" in name:
            raise self.err(path, "field names in filters may not contain quotes or backslashes")
        jpath = '$."' + name + '"'
        if isinstance(cond, Mapping):
            if not cond:
                raise self.err(path, "empty operator object")
            parts = []
            for op, value in cond.items():
                sub = f"{path}[{op!r}]"
                if not isinstance(op, str) or not op.startswith("$"):
                    raise self.err(sub, f"expected an operator such as $eq or $gt, got {op!r} (nested fields are not filterable)")
                if op not in FIELD_OPS:
                    raise self.err(sub, f"unknown operator {op!r}; known: {', '.join(sorted(FIELD_OPS))}")
                parts.append(self.op(jpath, op, value, sub, depth))
            return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"
        return self.op(jpath, "$eq", cond, path, depth)

    def _jt(self, jpath: str) -> str:
        self.params.append(jpath)
        return f"json_type({self.meta}, ?)"

    def _jx(self, jpath: str) -> str:
        self.params.append(jpath)
        return f"json_extract({self.meta}, ?)"

    def eq(self, jpath: str, value: Any, path: str) -> str:
        kind = _kind(value)
        if kind == "null":
            return f"({self._jt(jpath)} = 'null')"
        if kind == "bool":
            return f"({self._jt(jpath)} = '{'true' if value else 'false'}')"
        if kind in ("number", "text"):
            types = "('integer', 'real')" if kind == "number" else "('text')"
            jt = self._jt(jpath)
            jx = self._jx(jpath)
            self.params.append(value)
            return f"({jt} IN {types} AND {jx} = ?)"
        raise self.err(path, f"expected a string, number, bool or null, got {type(value).__name__}")

    def op(self, jpath: str, op: str, value: Any, path: str, depth: int) -> str:
        if op == "$eq":
            return self.eq(jpath, value, path)
        if op == "$ne":
            return f"(NOT COALESCE({self.eq(jpath, value, path)}, 0))"
        if op in ("$gt", "$gte", "$lt", "$lte"):
            kind = _kind(value)
            if kind not in ("number", "text"):
                raise self.err(path, f"{op} takes a number or a string, got {type(value).__name__}")
            sym = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
            types = "('integer', 'real')" if kind == "number" else "('text')"
            jt = self._jt(jpath)
            jx = self._jx(jpath)
            self.params.append(value)
            return f"({jt} IN {types} AND {jx} {sym} ?)"
        if op in ("$in", "$nin"):
            if not isinstance(value, (list, tuple)):
                raise self.err(path, f"{op} takes a list, got {type(value).__name__}")
            if len(value) > MAX_IN:
                raise self.err(path, f"{op} takes at most {MAX_IN} values, got {len(value)}")
            if not value:
                expr = "(0)"
            else:
                expr = "(" + " OR ".join(self.eq(jpath, v, f"{path}[{i}]") for i, v in enumerate(value)) + ")"
            return expr if op == "$in" else f"(NOT COALESCE({expr}, 0))"
        if op == "$exists":
            if not isinstance(value, bool):
                raise self.err(path, f"$exists takes true or false, got {value!r}")
            return f"({self._jt(jpath)} IS {'NOT ' if value else ''}NULL)"
        if op == "$not":
            if not isinstance(value, Mapping) or not value:
                raise self.err(path, "$not on a field takes an operator object such as {'$gt': 3}")
            parts = []
            for sub_op, sub_value in value.items():
                if sub_op not in FIELD_OPS:
                    raise self.err(f"{path}[{sub_op!r}]", f"unknown operator {sub_op!r}")
                parts.append(self.op(jpath, sub_op, sub_value, f"{path}[{sub_op!r}]", depth + 1))
            return f"(NOT COALESCE({' AND '.join(parts)}, 0))"
        if op == "$contains":
            kind = _kind(value)
            if kind not in ("number", "text", "bool"):
                raise self.err(path, f"$contains takes a string, number or bool, got {type(value).__name__}")
            each = f"json_each({self.meta}, ?)"
            jt = self._jt(jpath)
            self.params.append(jpath)
            if kind == "bool":
                member = f"EXISTS (SELECT 1 FROM {each} WHERE type = '{'true' if value else 'false'}')"
                return f"({jt} = 'array' AND {member})"
            types = "('integer', 'real')" if kind == "number" else "('text')"
            self.params.append(value)
            member = f"EXISTS (SELECT 1 FROM {each} WHERE type IN {types} AND value = ?)"
            if kind == "number":
                return f"({jt} = 'array' AND {member})"
            jt2 = self._jt(jpath)
            jx = self._jx(jpath)
            self.params.append(value)
            return f"(({jt} = 'array' AND {member}) OR ({jt2} = 'text' AND instr({jx}, ?) > 0))"
        raise self.err(path, f"unknown operator {op!r}")  # pragma: no cover - guarded above


def compile_where(where: Any, meta_col: str = "metadata", doc_col: str = "document") -> tuple[str, list[Any]]:
    """Compile a filter to ``(sql_expression, params)``; ``None`` compiles to ``("1", [])``."""
    if where is None:
        return "1", []
    c = _Compiler(meta_col, doc_col)
    sql = c.compile(where)
    return sql, c.params
