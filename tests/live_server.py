"""Real ``latentspace serve`` applications on loopback, for the tests of the remote backend
and the explorer: one uvicorn server in a thread of the test process (started once), and one
application per store mounted under its own prefix, ``http://127.0.0.1:PORT/s/<n>`` (real
HTTP, without a server start per test; the explorer and the client use relative paths, as
behind a reverse proxy)."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from pathlib import Path

#: applications started by the running test, stopped by the fixtures that started them
RUNNING: list = []
_APPS: dict[str, object] = {}
_SERVER: dict[str, object] = {}
_IDS = itertools.count(1)


async def _mux(scope, receive, send):
    """Dispatch ``/s/<n>/...`` to application ``n``."""
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            kind = msg["type"].split(".")[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    parts = scope["path"].split("/", 3)
    app = _APPS.get(parts[2]) if len(parts) > 2 and parts[1] == "s" else None
    if app is None:
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"no such test app"})
        return
    # as behind a proxy: the full path, and the prefix as the root path (what Starlette strips)
    await app(dict(scope, root_path=scope.get("root_path", "") + f"/s/{parts[2]}"), receive, send)


def _server() -> int:
    if "port" in _SERVER:
        return _SERVER["port"]
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else 40 ms per keep-alive request
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_mux, log_level="warning", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    _SERVER.update(port=sock.getsockname()[1], server=server, thread=thread, sock=sock)
    return _SERVER["port"]


def serve_in_thread(store: str | Path, **settings) -> str:
    """Serve ``store`` (a folder: the embedded store) and return its URL."""
    from latentspace.server.app import Settings, create_app

    port = _server()
    app = create_app(Settings(store=str(store), **settings))
    n = str(next(_IDS))
    _APPS[n] = app
    url = f"http://127.0.0.1:{port}/s/{n}"
    RUNNING.append((n, url))
    return url


def stop_all(keep: int = 0, wait: bool = False) -> list[str]:
    """Stop the applications started after the first ``keep`` (their stores closed, as a
    server's shutdown does); their URLs. ``wait``: nothing is left behind (kept for callers)."""
    stopped = []
    while len(RUNNING) > keep:
        n, url = RUNNING.pop()
        app = _APPS.pop(n)
        app.state.store.close()
        stopped.append(url)
    return stopped
