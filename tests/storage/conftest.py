"""The storage suites run on every backend: the `store` fixture here is parametrised over them.

A check that needs what a backend declares it cannot do (``store.capabilities``) is skipped
with the reason, by :func:`require`.
"""

from __future__ import annotations

import pytest

import latentspace as ls

#: every backend the suites run on: name -> how to open a fresh store in a folder
BACKENDS = {
    "embedded": lambda path: ls.open_store(path),
    "memory": lambda path: ls.open_store(":memory:"),
    "milvus": lambda path: ls.open_store(f"milvus+lite://{path}"),
}


def require(store, capability: str) -> None:
    """Skip the calling test, saying why, unless ``store``'s backend has ``capability``."""
    if not getattr(store.capabilities, capability):
        pytest.skip(f"{type(store._backend).__name__} declares {capability}=False")


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request):
    return request.param


@pytest.fixture
def store(backend_name, tmp_path):
    s = BACKENDS[backend_name](tmp_path / "store")
    yield s
    s.close()
