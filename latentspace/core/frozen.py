"""A read-only dict: the metadata of search hits, shared with the store's row cache."""

from __future__ import annotations

import copy
from typing import Any, NoReturn


class FrozenDict(dict):
    """A ``dict`` whose contents cannot change.

    Search hits hand out the row cache's own metadata object instead of a copy per hit (a
    copy was a tenth of a query's cost), so the object must not change under the cache.
    Everything that reads a dict works (``json.dumps``, ``dict(m)``, ``{**m}``, ``m | x``,
    pandas); ``m.copy()``, ``copy.copy(m)`` and ``dict(m)`` give an ordinary, mutable dict.
    """

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            "hit metadata is read-only (it is shared with the store's cache); "
            "take a mutable copy with dict(hit.metadata)"
        )

    __setitem__ = __delitem__ = __ior__ = _readonly
    clear = pop = popitem = setdefault = update = _readonly

    def __reduce__(self):
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> dict:
        return dict(self)

    def __deepcopy__(self, memo: dict) -> dict:
        return copy.deepcopy(dict(self), memo)


EMPTY = FrozenDict()
