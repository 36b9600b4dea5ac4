"""A plain-Python reference for the filter language, used to check the SQL compiler."""

from __future__ import annotations

MISSING = object()


def _kind(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "text"
    if isinstance(v, list):
        return "array"
    return "object"


def _eq(a, b):
    return a is not MISSING and _kind(a) == _kind(b) and a == b


def _cmp(a, op, b):
    if a is MISSING or _kind(a) != _kind(b) or _kind(b) not in ("number", "text"):
        return False
    return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]


def _op(value, op, arg):
    if op == "$eq":
        return _eq(value, arg)
    if op == "$ne":
        return not _eq(value, arg)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return _cmp(value, op, arg)
    if op == "$in":
        return any(_eq(value, a) for a in arg)
    if op == "$nin":
        return not any(_eq(value, a) for a in arg)
    if op == "$exists":
        return (value is not MISSING) == arg
    if op == "$not":
        return not all(_op(value, o, a) for o, a in arg.items())
    if op == "$contains":
        if isinstance(value, list):
            return any(_eq(v, arg) for v in value)
        return isinstance(value, str) and isinstance(arg, str) and arg in value
    raise AssertionError(op)


def matches(where, document, metadata) -> bool:
    if where is None:
        return True
    for key, cond in where.items():
        if key == "$and":
            ok = all(matches(w, document, metadata) for w in cond)
        elif key == "$or":
            ok = any(matches(w, document, metadata) for w in cond)
        elif key == "$not":
            ok = not matches(cond, document, metadata)
        elif key == "$contains":
            ok = cond in (document or "")
        else:
            value = metadata.get(key, MISSING)
            if isinstance(cond, dict):
                ok = all(_op(value, op, arg) for op, arg in cond.items())
            else:
                ok = _eq(value, cond)
        if not ok:
            return False
    return True
