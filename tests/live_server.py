"""A real ``latentspace serve`` application on loopback, in a thread of the test process:
what the remote backend's suites talk to (real HTTP, no subprocess start-up)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

#: servers started by the running test, stopped by tests/storage/conftest.py after it
RUNNING: list = []


def serve_in_thread(store: str | Path, **settings) -> str:
    """Start a server on ``store`` (a folder: the embedded store) and return its URL."""
    import uvicorn

    from latentspace.server.app import Settings, create_app

    app = create_app(Settings(store=str(store), **settings))
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else 40 ms per keep-alive request
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    RUNNING.append((server, thread, sock, url))
    return url


_STOPPING: list = []


def stop_all(keep: int = 0, wait: bool = False) -> list[str]:
    """Stop the servers started after the first ``keep`` (without waiting the ~0.2 s each
    takes to wind down, unless ``wait``); their URLs."""
    stopped = []
    while len(RUNNING) > keep:
        server, thread, sock, url = RUNNING.pop()
        server.should_exit = True
        _STOPPING.append((thread, sock))
        stopped.append(url)
    if wait:
        while _STOPPING:
            thread, sock = _STOPPING.pop()
            thread.join(timeout=10)
            sock.close()
    return stopped
