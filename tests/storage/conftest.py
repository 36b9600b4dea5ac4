"""The storage suites run on every backend: the `store` fixture here is parametrised over them.

A check that needs what a backend declares it cannot do (``store.capabilities``) is skipped
with the reason, by :func:`require`.
"""

from __future__ import annotations

import pytest

import latentspace as ls

from ..live_server import RUNNING, serve_in_thread, stop_all


def _remote(path):
    """A client of a real server (in a thread) on the embedded store in ``path``: one server per folder."""
    url = _SERVED.get(str(path))
    if url is None:
        url = _SERVED[str(path)] = serve_in_thread(path)
    return ls.connect(url)


_SERVED: dict[str, str] = {}

#: every backend the suites run on: name -> how to open a fresh store in a folder
BACKENDS = {
    "embedded": lambda path: ls.open_store(path),
    "memory": lambda path: ls.open_store(":memory:"),
    "milvus": lambda path: ls.open_store(f"milvus+lite://{path}"),
    "remote": _remote,
}


@pytest.fixture(autouse=True)
def _stop_servers():
    """A remote backend's server lives as long as the fixture that started it (a test's
    servers stop after it; a module fixture's at the end of the session)."""
    started_before = len(RUNNING)
    yield
    gone = set(stop_all(keep=started_before))
    for path in [p for p, u in _SERVED.items() if u in gone]:
        del _SERVED[path]


@pytest.fixture(autouse=True, scope="session")
def _stop_all_servers():
    yield
    stop_all(wait=True)


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
