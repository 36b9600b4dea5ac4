"""``ls.connect``: a remote Store over a real server (in a thread), with the local API.

The storage suites (tests/storage/) run on this backend too; here is what only a remote
store has: text embedded by the server, keys, the space checked again by the server,
writes larger than one request, an unreachable server.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

import latentspace as ls

pytest.importorskip("fastapi")

from latentspace.server.keys import KeyStore  # noqa: E402
from latentspace.storage.remote import RemoteEncoder, pack  # noqa: E402

from ..conftest import build_tiny_st, unit_rows  # noqa: E402
from ..live_server import serve_in_thread, stop_all  # noqa: E402

SPEC = ls.SpaceSpec(model="test/vectors", dim=8)
DOCS = ["the cat sat on the mat", "stock markets fell sharply", "a kitten sleeps on a rug",
        "bond yields rose today", "dogs chase cats in the park", "the central bank raised rates"]


@pytest.fixture(autouse=True)
def _servers():
    yield
    stop_all()


def test_connect_gives_the_local_api_with_text_embedded_on_the_server(tmp_path, tiny_encoder, tiny_bert_other):
    local = ls.open_store(tmp_path / "s")
    local.create_collection("t", encoder=tiny_encoder).add([f"d{i}" for i in range(4)], documents=DOCS[:4],
                                                          metadatas=[{"i": i} for i in range(4)])
    expected = local.get_collection("t").search("a cat on a mat", k=3)
    st = ls.connect(serve_in_thread(tmp_path / "s"))
    col = st.get_collection("t")
    assert isinstance(col.encoder, RemoteEncoder) and col.encoder.spec == tiny_encoder.spec
    got = col.search("a cat on a mat", k=3)
    assert [h.id for h in got] == [h.id for h in expected]
    np.testing.assert_allclose([h.score for h in got], [h.score for h in expected], atol=1e-5)
    res = col.add(["d4", "d5"], documents=DOCS[4:])  # embedded by the server's encoder
    assert res.added == 2
    np.testing.assert_allclose(col.get(ids=["d5"], include_vectors=True)[0].vector,
                               tiny_encoder.encode_documents([DOCS[5]])[0], atol=1e-5)
    assert [h.id for h in col.search("rates", mode="hybrid", k=2)][0] in {"d5", "d3"}
    # the apps run on a remote collection as on a local one
    here = local.get_collection("t")
    np.testing.assert_array_equal(ls.apps.cluster(col, n_clusters=2, seed=0).labels,
                                  ls.apps.cluster(here, n_clusters=2, seed=0).labels)
    assert ls.apps.find_duplicates(col, threshold=0.5).pairs == ls.apps.find_duplicates(here, threshold=0.5).pairs
    # a migration from the client: the new model embeds here, the switch happens on the server
    other = ls.SentenceTransformerEncoder(str(build_tiny_st(tiny_bert_other, tmp_path / "other")), precision="fp32")
    report = col.migrate(other, queries=3)
    assert report.switched and st.get_collection("t", encoder=other).spec == other.spec
    assert [h["action"] for h in st.collection_history("t")] == [report_action(report)]
    st.rollback_collection("t")
    assert st.get_collection("t").spec == tiny_encoder.spec and len(st.get_collection("t")) == 6
    st.close()


def report_action(report) -> str:
    return f"migrate {report.old_fingerprint} -> {report.new_fingerprint}"


def test_keys_scopes_and_collections_over_the_client(tmp_path):
    local = ls.open_store(tmp_path / "s")
    local.create_collection("docs", space=SPEC).add(["a"], vectors=unit_rows(1, 8))
    local.create_collection("other", space=SPEC)
    local.close()
    keys = KeyStore(tmp_path / "s" / "keys.json")
    read, _ = keys.create("read")
    write_other, _ = keys.create("write", collections=["other"])
    url = serve_in_thread(tmp_path / "s")
    for key in (None, read + "x"):
        with pytest.raises(ls.AuthError):
            ls.connect(url, api_key=key)
    st = ls.connect(url, api_key=read)
    col = st.get_collection("docs")
    assert [h.id for h in col.search(vector=unit_rows(1, 8)[0], k=1)] == ["a"]
    with pytest.raises(ls.AuthError, match="does not allow a write"):
        col.add(["b"], vectors=unit_rows(1, 8, seed=2))
    with pytest.raises(ls.AuthError):
        st.create_collection("new", space=SPEC)
    limited = ls.connect(url, api_key=write_other)
    assert limited.list_names() == ["other"]
    with pytest.raises(ls.AuthError):
        limited.get_collection("docs")
    limited.get_collection("other").add(["x"], vectors=unit_rows(1, 8, seed=3))
    assert len(st.get_collection("docs")) == 1 and len(st.get_collection("other")) == 1


def test_the_server_checks_the_space_of_every_vector_again(tmp_path):
    url = serve_in_thread(tmp_path / "s")
    st = ls.connect(url)
    st.create_collection("c", space=SPEC).add(["a"], vectors=unit_rows(1, 8))
    raw = httpx.Client(base_url=url)
    other = SPEC.replace(model="another/model")
    body = {"ids": ["b"], "vectors": pack(unit_rows(1, 8, seed=1)), "documents": [None], "metadatas": [{}],
            "hashes": ["0" * 64], "replace": True, "space": other.to_dict()}
    r = raw.post("/v1/backend/collections/c/write", json=body)
    assert r.status_code == 409 and r.json()["error"] == "SpaceMismatchError" and "model" in r.json()["message"]
    r = raw.post("/v1/backend/collections/c/search", json={"queries": pack(unit_rows(1, 8)), "k": 1,
                                                            "space": other.to_dict()})
    assert r.status_code == 409
    for bad, status in (({**body, "space": SPEC.to_dict(), "vectors": pack(np.full((1, 8), np.nan))}, 422),
                        ({**body, "space": SPEC.to_dict(), "vectors": pack(unit_rows(1, 4))}, 422),
                        ({**body, "space": SPEC.to_dict(), "vectors": {"shape": [1, 8], "b64": "!!"}}, 422),
                        ({**body, "space": SPEC.to_dict(), "hashes": ["x"]}, 422),
                        ({**body, "space": SPEC.to_dict(), "ids": ["b", "c"]}, 422)):
        r = raw.post("/v1/backend/collections/c/write", json=bad)
        assert r.status_code == status and r.json()["error"] == "InvalidInputError", r.json()
    for name in ("~c", "~c~..%2Fx", "%2E%2E", "~c~a%2Fb", "c%00"):
        r = raw.post(f"/v1/backend/collections/{name}/count", json={})
        assert r.status_code in (404, 422)
    assert [r.id for r in st.get_collection("c").get()] == ["a"]  # nothing refused was written
    # a handle on a space the name no longer has is refused, not served another space's records
    col = st.get_collection("c")
    local = ls.connect(url)
    local.delete_collection("c")
    local.create_collection("c", space=other)
    with pytest.raises(ls.SpaceMismatchError):
        col.search(vector=unit_rows(1, 8)[0])
    st.close()


def test_writes_and_reads_larger_than_one_request(tmp_path):
    st = ls.connect(serve_in_thread(tmp_path / "s", max_batch=10, max_queries=4))
    col = st.create_collection("c", space=SPEC)
    x = unit_rows(25, 8)
    assert col.add([f"r{i}" for i in range(25)], vectors=x).added == 25
    with pytest.raises(ls.AlreadyExistsError):  # one id exists: checked before the first request
        col.add([f"n{i}" for i in range(24)] + ["r3"], vectors=unit_rows(25, 8, seed=1))
    assert len(col) == 25 and [r.id for r in col.get()] == [f"r{i}" for i in range(25)]
    assert [r.id for r in col.get(limit=12, offset=7)] == [f"r{i}" for i in range(7, 19)]
    hits = col.search_batch(vectors=x[:9], k=1)
    assert [h[0].id for h in hits] == [f"r{i}" for i in range(9)]
    assert col.delete(ids=[f"r{i}" for i in range(22)]) == 22 and len(col) == 3
    st.close()


def test_an_unreachable_server_or_a_bad_url_is_a_typed_error():
    with pytest.raises(ls.BackendUnavailableError, match="Cannot reach the latentspace server"):
        ls.connect("http://127.0.0.1:9")
    with pytest.raises(ls.InvalidInputError):
        ls.connect("ftp://example.org")
    with pytest.raises(ls.InvalidInputError):
        ls.open_store("http://127.0.0.1:9", token="x")
