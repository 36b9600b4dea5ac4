"""A real HTTP server on loopback that speaks the OpenAI embeddings API, with scripted faults."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

DIM = 12


def fake_vector(text: str, dim: int = DIM) -> list[float]:
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).normal(size=dim).tolist()


class StubServer:
    """``script`` is a list of behaviours consumed one per request; then 'ok' forever."""

    def __init__(self):
        self.script: list[str] = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                stub.headers.append(dict(self.headers))
                mode = stub.script.pop(0) if stub.script else "ok"
                if self.path.endswith("/chat/completions"):
                    return self._chat(body, mode)
                texts = body["input"]
                if mode == "429":
                    return self._send(429, {"error": "slow down"}, {"Retry-After": "0"})
                if mode == "500":
                    return self._send(500, {"error": "boom"})
                if mode == "401":
                    return self._send(401, {"error": "bad key"})
                if mode == "malformed":
                    return self._send(200, {"result": "nope"})
                if mode == "not-json":
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"<html>hello</html>")
                    return
                vecs = [fake_vector(t) for t in texts]
                if mode == "wrong-dim":
                    vecs = [v + [0.5] for v in vecs]
                if mode == "wrong-count":
                    vecs = vecs[:-1] if len(vecs) > 1 else vecs + vecs
                if mode == "nan":
                    vecs[0][0] = float("nan")
                data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vecs)]
                data.reverse()  # servers may answer out of order; index says where each goes
                self._send(200, {"object": "list", "data": data, "model": body["model"]})

            def _chat(self, body, mode):
                """Replies citing [1], then [2] twice, and a [99] that no context has."""
                if mode in ("429", "500", "401"):
                    return self._send(int(mode), {"error": mode}, {"Retry-After": "0"})
                if mode == "malformed":
                    return self._send(200, {"choices": []})
                n_sources = len(re.findall(r"^\[\d+\] ", body["messages"][-1]["content"], flags=re.M))
                reply = f"From the sources [1] and [2], and again [2]; not [99]. ({n_sources} sources seen)"
                self._send(200, {"model": body["model"], "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]})

            def _send(self, code, payload, headers=None):
                raw = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
