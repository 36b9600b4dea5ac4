"""Filters: parsed once into a validated tree, then compiled by each backend its own way.

Syntax (MongoDB-like)::

    {"year": 2021}                              # $eq shorthand
    {"year": {"$gte": 2020, "$lt": 2024}}       # several operators on one field: AND
    {"$and": [...]}, {"$or": [...]}, {"$not": {...}}
    {"tags": {"$contains": "python"}}           # list membership (or substring of a string)
    {"lang": {"$in": ["en", "de"]}}, {"$nin": [...]}, {"$exists": true}, {"$ne": ...}
    {"$contains": "socket"}                     # the document text contains this substring

Comparisons are typed: a number never equals or orders against a string, and booleans
are not numbers. ``$ne``, ``$nin`` and ``$not`` match records that lack the field.

:func:`parse` checks a filter and returns its tree (every error names the path of what is
wrong); :func:`matches` is the reference semantics of that tree, in plain Python (the
memory backend filters with it, and every other backend is tested against it); a backend
compiles the tree to its own query language (:mod:`.sqlfilter` for SQLite).
"""

from __future__ import annotations

import marshal
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from ..core.errors import InvalidInputError

FIELD_OPS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not", "$contains"}
COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
MAX_IN = 10_000
MAX_DEPTH = 32


# -- the tree ----------------------------------------------------------------------------
@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """True where ``child`` is not (a record lacking a field fails the child, so passes here)."""

    child: Node


@dataclass(frozen=True)
class DocContains:
    """The document contains ``text`` as a substring."""

    text: str


def _typed(value: Any) -> tuple:
    """``value`` with its type (and a tuple's items with theirs): ``1``, ``1.0`` and ``True``
    are equal in Python but not in a filter (booleans are not numbers)."""
    if type(value) is tuple:
        return (tuple, *[(type(v), v) for v in value])
    return (type(value), value)


@dataclass(frozen=True, eq=False)
class Field:
    """``op`` on metadata field ``name``: ``$eq``, ``$gt``/``$gte``/``$lt``/``$lte``, ``$in``
    (``value`` a tuple), ``$exists`` (``value`` a bool) or ``$contains``. (``$ne``, ``$nin``
    and field-level ``$not`` parse to :class:`Not` of these.)

    Equal and hashed with the value's type: ``{"flag": True}`` and ``{"flag": 1}`` are
    different filters (a backend's per-filter state is keyed by the tree). The hash is
    computed once (a query loop hashes its filter on every search)."""

    name: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        key = (self.name, self.op, _typed(self.value))
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_hash", hash(key))

    def __eq__(self, other: object) -> bool:
        return self is other or (type(other) is Field and self._key == other._key)

    def __hash__(self) -> int:
        return self._hash


Node = Union[And, Or, Not, DocContains, Field]


def kind(value: Any) -> str:
    """The filter type of a value: null, bool, number, text, nan or other."""
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


# -- parsing -----------------------------------------------------------------------------
def _err(path: str, msg: str) -> InvalidInputError:
    return InvalidInputError(f"Invalid filter at {path}: {msg}")


#: trees of filters parsed before, by their exact content (a query loop repeats one filter)
_PARSED: dict[bytes, Node] = {}
_PARSED_MAX = 256


def parse(where: Any) -> Node | None:
    """The validated tree of a filter (``None``: no filter). Raises InvalidInputError naming
    the path of the first problem. A filter made of plain dicts, lists and scalars is parsed
    once: its tree is remembered by content (trees are immutable).

    The content key is ``marshal``'s version-2 encoding: written in C (0.28 us for a one-field
    filter here, against 0.8 us for a key built in Python), it takes only the exact built-in
    types and records each value's type (``1``, ``1.0`` and ``True`` are equal in Python,
    not in a filter), and version 2 writes no back-references, so equal content gives equal
    bytes; bytes decode to one value, so different filters never share a key. A filter with
    anything else (a numpy scalar, a Mapping subclass) is parsed every time."""
    if where is None:
        return None
    try:
        key = marshal.dumps(where, 2)
    except (ValueError, TypeError, RecursionError):
        return _parse(where, "where", 0)
    node = _PARSED.get(key)
    if node is None:
        node = _parse(where, "where", 0)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = node
    return node


def _and(parts: list[Node]) -> Node:
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _parse(where: Any, path: str, depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise _err(path, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(where, Mapping):
        raise _err(path, f"expected an object, got {type(where).__name__}")
    if not where:
        raise _err(path, "empty object; pass None for no filter")
    parts = []
    for key, value in where.items():
        sub = f"{path}[{key!r}]"
        if not isinstance(key, str):
            raise _err(sub, "keys must be strings")
        parts.append(_logical(key, value, sub, depth) if key.startswith("$") else _field(key, value, sub))
    return _and(parts)


def _logical(op: str, value: Any, path: str, depth: int) -> Node:
    if op in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise _err(path, f"{op} takes a non-empty list of filters")
        children = tuple(_parse(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
        return And(children) if op == "$and" else Or(children)
    if op == "$not":
        return Not(_parse(value, path, depth + 1))
    if op == "$contains":
        if not isinstance(value, str) or not value:
            raise _err(path, "document $contains takes a non-empty string")
        return DocContains(value)
    raise _err(path, f"unknown operator {op!r}; top-level operators are $and, $or, $not, $contains")


def _field(name: str, cond: Any, path: str) -> Node:
    if '"' in name or "\\" in name:
        raise _err(path, "field names in filters may not contain quotes or backslashes")
    if not isinstance(cond, Mapping):
        return _op(name, "$eq", cond, path)
    if not cond:
        raise _err(path, "empty operator object")
    parts = []
    for op, value in cond.items():
        sub = f"{path}[{op!r}]"
        if not isinstance(op, str) or not op.startswith("$"):
            raise _err(sub, f"expected an operator such as $eq or $gt, got {op!r} (nested fields are not filterable)")
        if op not in FIELD_OPS:
            raise _err(sub, f"unknown operator {op!r}; known: {', '.join(sorted(FIELD_OPS))}")
        parts.append(_op(name, op, value, sub))
    return _and(parts)


def _scalar(value: Any, path: str) -> Any:
    if kind(value) not in ("null", "bool", "number", "text"):
        raise _err(path, f"expected a string, number, bool or null, got {type(value).__name__}")
    return value


def _op(name: str, op: str, value: Any, path: str) -> Node:
    if op == "$eq":
        return Field(name, "$eq", _scalar(value, path))
    if op == "$ne":
        return Not(Field(name, "$eq", _scalar(value, path)))
    if op in COMPARISONS:
        if kind(value) not in ("number", "text"):
            raise _err(path, f"{op} takes a number or a string, got {type(value).__name__}")
        return Field(name, op, value)
    if op in ("$in", "$nin"):
        if not isinstance(value, (list, tuple)):
            raise _err(path, f"{op} takes a list, got {type(value).__name__}")
        if len(value) > MAX_IN:
            raise _err(path, f"{op} takes at most {MAX_IN} values, got {len(value)}")
        node = Field(name, "$in", tuple(_scalar(v, f"{path}[{i}]") for i, v in enumerate(value)))
        return node if op == "$in" else Not(node)
    if op == "$exists":
        if not isinstance(value, bool):
            raise _err(path, f"$exists takes true or false, got {value!r}")
        return Field(name, "$exists", value)
    if op == "$not":
        if not isinstance(value, Mapping) or not value:
            raise _err(path, "$not on a field takes an operator object such as {'$gt': 3}")
        parts = []
        for sub_op, sub_value in value.items():
            sub = f"{path}[{sub_op!r}]"
            if sub_op not in FIELD_OPS:
                raise _err(sub, f"unknown operator {sub_op!r}")
            parts.append(_op(name, sub_op, sub_value, sub))
        return Not(_and(parts))
    if op == "$contains":
        if kind(value) not in ("number", "text", "bool"):
            raise _err(path, f"$contains takes a string, number or bool, got {type(value).__name__}")
        return Field(name, "$contains", value)
    raise _err(path, f"unknown operator {op!r}")  # pragma: no cover - guarded by the callers


def to_dict(node: Node | None) -> dict | None:
    """The filter that parses to ``node`` (``parse(to_dict(n)) == n``): how a tree crosses a
    wire (the remote backend sends it; the server parses it again)."""
    if node is None:
        return None
    if isinstance(node, (And, Or)):
        return {"$and" if isinstance(node, And) else "$or": [to_dict(c) for c in node.children]}
    if isinstance(node, Not):
        return {"$not": to_dict(node.child)}
    if isinstance(node, DocContains):
        return {"$contains": node.text}
    return {node.name: {node.op: list(node.value) if node.op == "$in" else node.value}}


# -- the reference semantics -------------------------------------------------------------
_MISSING = object()


def _json_kind(v: Any) -> str:
    k = kind(v)
    if k in ("null", "bool", "number", "text"):
        return k
    return "array" if isinstance(v, list) else "object"


def _eq(a: Any, b: Any) -> bool:
    return a is not _MISSING and _json_kind(a) == _json_kind(b) and a == b


def _field_matches(node: Field, metadata: Mapping) -> bool:
    value = metadata.get(node.name, _MISSING)
    op, arg = node.op, node.value
    if op == "$eq":
        return _eq(value, arg)
    if op in COMPARISONS:
        if value is _MISSING or _json_kind(value) != _json_kind(arg):
            return False
        return {"$gt": value > arg, "$gte": value >= arg, "$lt": value < arg, "$lte": value <= arg}[op]
    if op == "$in":
        return any(_eq(value, a) for a in arg)
    if op == "$exists":
        return (value is not _MISSING) == arg
    if op == "$contains":
        if isinstance(value, list):
            return any(_eq(v, arg) for v in value)
        return isinstance(value, str) and isinstance(arg, str) and arg in value
    raise AssertionError(op)  # pragma: no cover - the parser makes no other ops


def matches(node: Node | None, document: str | None, metadata: Mapping) -> bool:
    """Whether a record passes the filter tree ``node`` (the reference every backend's
    compiled filter is tested against)."""
    if node is None:
        return True
    if isinstance(node, Field):
        return _field_matches(node, metadata)
    if isinstance(node, And):
        return all(matches(c, document, metadata) for c in node.children)
    if isinstance(node, Or):
        return any(matches(c, document, metadata) for c in node.children)
    if isinstance(node, Not):
        return not matches(node.child, document, metadata)
    if isinstance(node, DocContains):
        return node.text in (document or "")
    raise AssertionError(type(node))  # pragma: no cover
