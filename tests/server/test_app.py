"""The server in process (FastAPI's TestClient over ASGI): every route, every error class,
keys and scopes, limits; the store unchanged by every refused call."""

from __future__ import annotations

import json

import numpy as np
import pytest

import latentspace as ls

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from latentspace.server.app import Settings, create_app  # noqa: E402
from latentspace.server.keys import KeyStore  # noqa: E402

SPEC = ls.SpaceSpec(model="test/vectors", dim=8)


def unit(n, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, 8))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).round(6).tolist()


@pytest.fixture
def store_dir(tmp_path):
    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("docs", space=SPEC)
    col.add([f"r{i}" for i in range(20)], vectors=unit(20), documents=[f"doc {i}" for i in range(20)],
            metadatas=[{"i": i} for i in range(20)])
    st.create_collection("other", space=SPEC)
    st.close()
    return tmp_path / "s"


def client(store_dir, **kw):
    return TestClient(create_app(Settings(store=str(store_dir), **kw)), raise_server_exceptions=False)


def test_routes_without_keys_on_loopback(store_dir):
    c = client(store_dir)
    assert c.get("/v1/health").json()["status"] == "ok"
    assert {i["name"] for i in c.get("/v1/collections").json()} == {"docs", "other"}
    info = c.get("/v1/collections/docs").json()
    assert info["count"] == 20 and info["fingerprint"] == SPEC.fingerprint
    q = unit(1, seed=5)[0]
    hits = c.post("/v1/collections/docs/search", json={"vector": q, "space": SPEC.to_dict(), "k": 3}).json()
    st = ls.open_store(store_dir)
    local = st.get_collection("docs").search(vector=np.asarray(q, np.float32), k=3)
    assert [h["id"] for h in hits] == [h.id for h in local]
    batch = c.post("/v1/collections/docs/search_batch",
                   json={"vectors": unit(2, seed=6), "space": SPEC.to_dict(), "k": 2}).json()
    assert len(batch) == 2 and len(batch[0]) == 2
    filtered = c.post("/v1/collections/docs/search", json={"vector": q, "space": SPEC.to_dict(), "k": 5,
                                                          "where": {"i": {"$lt": 3}}}).json()
    assert {h["metadata"]["i"] for h in filtered} <= {0, 1, 2}
    res = c.post("/v1/collections/docs/upsert", json={"ids": ["r0", "new"], "vectors": unit(2, seed=7),
                                                      "space": SPEC.to_dict(), "documents": ["a", "b"]}).json()
    assert res == {"added": 1, "replaced": 1, "unchanged": 0, "truncated": 0}
    got = c.post("/v1/collections/docs/get", json={"ids": ["new"], "include_vectors": True}).json()
    assert got[0]["document"] == "b" and len(got[0]["vector"]) == 8
    assert c.post("/v1/collections/docs/delete", json={"ids": ["new"]}).json() == {"deleted": 1}
    made = c.post("/v1/collections", json={"name": "fresh", "space": SPEC.to_dict()})
    assert made.status_code == 201 and made.json()["name"] == "fresh"
    assert c.delete("/v1/collections/fresh").json() == {"dropped": "fresh"}
    st.close()


def test_every_error_is_typed_json_and_changes_nothing(store_dir):
    c = client(store_dir)
    q = unit(1)[0]
    cases = [
        (c.post("/v1/collections/docs/search", json={"vector": q, "k": 3}), 422, "must name their space"),
        (c.post("/v1/collections/docs/search", json={"vector": q, "space": SPEC.replace(model="other/model").to_dict()}),
         409, "model"),
        (c.post("/v1/collections/docs/search", json={"vector": q[:4], "space": SPEC.replace(dim=4).to_dict()}), 409,
         "dim"),
        (c.post("/v1/collections/docs/search", json={"vector": q, "space": SPEC.to_dict(), "k": 10**9}), 422, "k must"),
        (c.post("/v1/collections/docs/search", headers={"content-type": "application/json"},
                content=json.dumps({"vector": [float("nan")] + q[1:], "space": SPEC.to_dict()})), 422, ""),
        (c.post("/v1/collections/nope/search", json={"vector": q, "space": SPEC.to_dict()}), 404, "nope"),
        (c.get("/v1/collections/..etc"), 422, "name"),
        (c.get("/v1/collections/..%2F..%2Fetc"), 404, "No route"),
        (c.get("/v1/collections/%2Fetc%2Fpasswd"), 404, "No route"),
        (c.post("/v1/collections/docs/search", json={"vector": q, "space": SPEC.to_dict(), "bogus": 1}), 422,
         "bogus"),
        (c.post("/v1/collections/docs/upsert", json={"ids": ["x"], "vectors": [q[:4]], "space": SPEC.to_dict()}), 422,
         ""),
        (c.post("/v1/collections", json={"name": "docs", "space": SPEC.to_dict()}), 409, "docs"),
        (c.post("/v1/collections/docs/upsert", json={"ids": [f"b{i}" for i in range(1001)]}), 422, "at most"),
    ]
    for resp, status, text in cases:
        body = resp.json()
        assert resp.status_code == status, (resp.status_code, body)
        assert set(body) == {"error", "message"} and text in body["message"] and "Traceback" not in body["message"]
    big = c.post("/v1/collections/docs/upsert", content=b"x" * 100, headers={"content-length": str(64 * 2**20),
                                                                             "content-type": "application/json"})
    assert big.status_code == 413
    assert c.get("/v1/collections/docs").json()["count"] == 20


def test_an_internal_error_sends_no_details(store_dir, monkeypatch):
    from latentspace.collections.collection import Collection

    def boom(*a, **k):
        raise RuntimeError("secret path /etc/shadow")

    monkeypatch.setattr(Collection, "search", boom)
    resp = client(store_dir).post("/v1/collections/docs/search", json={"vector": unit(1)[0], "space": SPEC.to_dict()})
    assert resp.status_code == 500 and resp.json()["error"] == "InternalError" and "shadow" not in resp.text


def test_keys_scopes_and_collections(store_dir):
    keys = KeyStore(store_dir / "keys.json")
    read, _ = keys.create("read")
    write, _ = keys.create("write")
    admin, _ = keys.create("admin")
    limited, _ = keys.create("write", collections=["other"])
    revoked, entry = keys.create("admin")
    keys.revoke(entry.id)
    assert "sha256" not in entry.public() and read not in (store_dir / "keys.json").read_text()
    c = client(store_dir)
    q = {"vector": unit(1)[0], "space": SPEC.to_dict(), "k": 2}
    write_body = {"ids": ["z"], "vectors": unit(1, 3), "space": SPEC.to_dict()}

    def call(method, path, key, body=None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return c.request(method, path, json=body, headers=headers)

    assert call("GET", "/v1/health", None).status_code == 200  # health needs no key
    for key in (None, "ls_00000000_" + "x" * 43, read + "x", revoked, "not-a-key"):
        r = call("POST", "/v1/collections/docs/search", key, q)
        assert r.status_code == 401 and r.json()["error"] == "AuthError"
    assert call("POST", "/v1/collections/docs/search", read, q).status_code == 200
    assert c.post("/v1/collections/docs/search", json=q, headers={"X-API-Key": read}).status_code == 200
    assert call("POST", "/v1/collections/docs/upsert", read, write_body).status_code == 403
    assert call("POST", "/v1/collections/docs/upsert", write, write_body).status_code == 200
    assert call("DELETE", "/v1/collections/other", write).status_code == 403
    assert call("POST", "/v1/collections/docs/upsert", limited, write_body).status_code == 403
    assert call("POST", "/v1/collections/other/upsert", limited, write_body).status_code == 200
    assert [i["name"] for i in call("GET", "/v1/collections", limited).json()] == ["other"]
    assert call("POST", "/v1/collections", admin, {"name": "made", "space": SPEC.to_dict()}).status_code == 201
    assert call("GET", "/v1/collections/docs", admin).json()["count"] == 21  # only the one accepted write


def test_text_queries_are_embedded_by_the_collections_encoder(tmp_path, tiny_encoder, monkeypatch):
    import latentspace.embed as embed

    st = ls.open_store(tmp_path / "s")
    st.create_collection("t", encoder=tiny_encoder).add(["a", "b"], documents=["the cat sat", "stock markets"])
    st.close()
    loads = []
    real = embed.encoder_from_config
    monkeypatch.setattr(embed, "encoder_from_config", lambda cfg: loads.append(cfg) or real(cfg))
    c = client(tmp_path / "s")
    for _ in range(3):
        hits = c.post("/v1/collections/t/search", json={"query": "the cat sat", "k": 1}).json()
        assert hits[0]["id"] == "a"
    assert len(loads) == 1  # the model is loaded once, not per request
    kw = c.post("/v1/collections/t/search", json={"query": "markets", "mode": "keyword", "k": 1}).json()
    assert kw[0]["id"] == "b"


def test_openapi_names_the_error_responses(store_dir):
    spec = client(store_dir).get("/openapi.json").json()
    search = spec["paths"]["/v1/collections/{name}/search"]["post"]
    assert {"401", "403", "404", "409", "422"} <= set(search["responses"])


def test_cli_keys_and_a_real_server_on_loopback(store_dir):
    """keys create / list / revoke in process; `latentspace serve` as a real process: it refuses
    a public address without keys, and on loopback answers with keys enforced."""
    import socket
    import time

    import httpx

    from ..cli_runner import run, run_process

    refused = run_process("serve", store_dir, "--host", "0.0.0.0", check=False, timeout=120)
    assert refused.returncode == ls.InvalidInputError.exit_code and "without API keys" in refused.stderr
    made = json.loads(run("keys", "create", store_dir, "--scope", "read", "--json").stdout)
    assert made["key"].startswith("ls_") and "sha256" not in made
    listed = json.loads(run("keys", "list", store_dir, "--json").stdout)
    assert [k["id"] for k in listed] == [made["id"]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "latentspace.cli.app", "serve", str(store_dir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(url + "/v1/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert httpx.get(url + "/v1/collections/docs").status_code == 401
        ok = httpx.get(url + "/v1/collections/docs", headers={"Authorization": f"Bearer {made['key']}"})
        assert ok.status_code == 200 and ok.json()["count"] == 20
        run("keys", "revoke", store_dir, made["id"])
        assert httpx.get(url + "/v1/collections/docs",
                         headers={"Authorization": f"Bearer {made['key']}"}).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(store_dir, port, workers: int = 1):
    import subprocess
    import sys
    import time

    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "latentspace.cli.app", "serve", str(store_dir), "--port", str(port),
                             "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None:
                raise AssertionError("the server exited")
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not start")


def test_sigkill_during_writes_loses_no_acknowledged_write(store_dir):
    """Writers post batches to a real server; the server is SIGKILLed mid-stream and
    restarted: every batch the server acknowledged (200) is stored, and reads never got 5xx."""
    import signal
    import threading

    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_server(store_dir, port)
    acked: list[list[str]] = []
    errors: list[int] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            for b in range(10_000):
                if stop.is_set():
                    return
                ids = [f"w{w}-{b}-{i}" for i in range(20)]
                try:
                    r = c.post("/v1/collections/docs/upsert", json={"ids": ids, "vectors": unit(20, seed=b * 7 + w),
                                                                     "space": SPEC.to_dict()})
                except httpx.TransportError:
                    return  # the server is gone: what it acknowledged is what counts
                if r.status_code == 200:
                    acked.append(ids)
                elif r.status_code >= 500:
                    errors.append(r.status_code)

    def reader() -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/collections/docs/search", json={"vector": unit(1)[0], "space": SPEC.to_dict()})
                except httpx.TransportError:
                    return
                if r.status_code >= 500:
                    errors.append(r.status_code)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    import time

    deadline = time.time() + 30
    while len(acked) < 15 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= 15 and errors == []
    proc = _start_server(store_dir, port)
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            want = [i for batch in acked for i in batch]
            got = set()
            for s in range(0, len(want), 500):
                got |= {r["id"] for r in c.post("/v1/collections/docs/get", json={"ids": want[s:s + 500]}).json()}
            assert got == set(want)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_bounded_soak_of_readers_and_a_writer_on_two_workers(store_dir):
    """Two worker processes on one store; readers search and read back while a writer adds
    batches, for a set time (4 s; 30 s with LATENTSPACE_SLOW=1): no 5xx, no transport
    error, every acknowledged write readable afterwards, and each reader's searches see the
    collection grow, never shrink."""
    import os
    import threading
    import time

    import httpx

    seconds = 30 if os.environ.get("LATENTSPACE_SLOW") else 4
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_server(store_dir, port, workers=2)
    acked: list[str] = []
    problems: list[str] = []
    counts: list[list[int]] = [[], []]
    stop = time.monotonic() + seconds

    def writer() -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            b = 0
            while time.monotonic() < stop:
                ids = [f"soak-{b}-{i}" for i in range(10)]
                r = c.post("/v1/collections/docs/add", json={"ids": ids, "vectors": unit(10, seed=1000 + b),
                                                              "space": SPEC.to_dict()})
                if r.status_code == 200:
                    acked.extend(ids)
                else:
                    problems.append(f"write {r.status_code}: {r.text[:200]}")
                b += 1

    def reader(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            while time.monotonic() < stop:
                r = c.post("/v1/collections/docs/search", json={"vector": unit(1, seed=n)[0], "space": SPEC.to_dict(),
                                                               "k": 5})
                if r.status_code != 200 or len(r.json()) != 5:
                    problems.append(f"search {r.status_code}: {r.text[:200]}")
                r = c.get("/v1/collections/docs")
                if r.status_code != 200:
                    problems.append(f"info {r.status_code}")
                else:
                    counts[n].append(r.json()["count"])

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(n,)) for n in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 60)
        assert problems == [] and len(acked) >= 50
        with httpx.Client(base_url=url, timeout=30) as c:
            stored = set()
            for s in range(0, len(acked), 1000):
                got = c.post("/v1/collections/docs/get", json={"ids": acked[s:s + 1000]}).json()
                stored |= {r["id"] for r in got}
        assert stored == set(acked)
        for seen in counts:  # a reader never sees the collection shrink, whichever worker answers
            assert seen and all(a <= b for a, b in zip(seen, seen[1:]))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
