"""The REST routes beyond records: a collection's life, migration as a job, the apps and
the analysis the explorer draws; each against the Python API on the same store."""

from __future__ import annotations

import time

import numpy as np
import pytest

import latentspace as ls

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from latentspace.server.app import Settings, create_app  # noqa: E402

from ..conftest import build_tiny_st  # noqa: E402

TOPICS = {"pets": ["the cat sat on the mat", "a kitten sleeps on a rug", "dogs chase cats in the park",
                   "my puppy loves walks", "the parrot talks all day"],
          "money": ["stock markets fell sharply", "bond yields rose today", "the central bank raised rates",
                    "inflation cools in spring", "banks report record profits"]}


@pytest.fixture
def served(tmp_path, tiny_encoder):
    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("t", encoder=tiny_encoder)
    docs = [(t, d) for t, ds in TOPICS.items() for d in ds]
    col.add([f"d{i}" for i in range(len(docs))], documents=[d for _, d in docs],
            metadatas=[{"topic": t, "i": i} for i, (t, _) in enumerate(docs)])
    c = TestClient(create_app(Settings(store=str(tmp_path / "s"))), raise_server_exceptions=False)
    yield c, st
    c.close()
    st.close()


def ok(resp, status=200):
    assert resp.status_code == status, resp.text
    return resp.json()


def test_a_collections_life_count_update_rename(served):
    c, st = served
    assert ok(c.post("/v1/collections/t/count", json={"where": {"topic": "pets"}}))["count"] == 5
    ok(c.post("/v1/collections/t/update", json={"ids": ["d0"], "metadatas": [{"seen": True}]}))
    assert st.get_collection("t").get(ids=["d0"])[0].metadata == {"topic": "pets", "i": 0, "seen": True}
    r = c.post("/v1/collections/t/update", json={"ids": ["nope"], "metadatas": [{}]})
    assert r.status_code == 404 and r.json()["error"] == "NotFoundError"
    ok(c.post("/v1/collections/t/rename", json={"new_name": "u"}))
    assert st.list_names() == ["u"] and ok(c.get("/v1/collections/u/history")) == []
    assert c.post("/v1/collections/u/rename", json={"new_name": "../x"}).status_code == 422


def test_migration_runs_as_a_job_then_switches_and_rolls_back(served, tiny_bert_other, tmp_path, tiny_encoder):
    c, st = served
    other = ls.SentenceTransformerEncoder(str(build_tiny_st(tiny_bert_other, tmp_path / "o")), precision="fp32")
    job = ok(c.post("/v1/collections/t/migration", json={"encoder": other.config(), "queries": 5}), 202)
    deadline = time.monotonic() + 60
    while job["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        job = ok(c.get(f"/v1/jobs/{job['id']}"))
    assert job["state"] == "done", job
    rep = job["report"]
    assert rep["records"] == 10 and rep["embedded"] == 10 and not rep["switched"] and 0 <= rep["overlap_at_10"] <= 1
    assert st.get_collection("t").spec == tiny_encoder.spec  # not switched yet
    info = ok(c.post("/v1/collections/t/migration/switch", json={"fingerprint": job["new_fingerprint"]}))
    assert info["fingerprint"] == other.spec.fingerprint
    assert [h["action"].split()[0] for h in ok(c.get("/v1/collections/t/history"))] == ["migrate"]
    # before and after the migration, side by side: the earlier space stays readable and comparable
    spaces = ok(c.get("/v1/collections/t/spaces"))
    assert [s["current"] for s in spaces] == [True, False]
    assert spaces[1]["fingerprint"] == tiny_encoder.spec.fingerprint and spaces[1]["name"].startswith("~t~retired~")
    before = spaces[1]["name"]
    assert len(ok(c.post(f"/v1/collections/{before}/project", json={}))["x"]) == 10
    cmp = ok(c.post("/v1/collections/t/compare", json={"other": before, "k": 3}))
    assert len(cmp["ids"]) == 10 and 0 <= cmp["mean"] < 1
    assert ok(c.post("/v1/collections/t/rollback"))["fingerprint"] == tiny_encoder.spec.fingerprint
    assert c.get("/v1/jobs/" + "0" * 32).status_code == 404 and c.get("/v1/jobs/../x").status_code == 404
    bad = c.post("/v1/collections/t/migration/switch", json={"fingerprint": "deadbeef"})
    assert bad.status_code == 404


def test_the_apps_answer_as_the_python_api(served):
    c, st = served
    col = st.get_collection("t")
    rec = ok(c.post("/v1/collections/t/recommend", json={"positive": ["d0"], "k": 3}))
    assert [h["id"] for h in rec] == [h.id for h in ls.apps.recommend(col, ["d0"], k=3)]
    ctx = ok(c.post("/v1/collections/t/context", json={"question": "interest rates", "k": 3}))
    assert ctx["text"] == ls.apps.retrieve_context(col, "interest rates", k=3).text and len(ctx["sources"]) == 3
    cl = ok(c.post("/v1/collections/t/cluster", json={"n_clusters": 2, "seed": 0}))
    np.testing.assert_array_equal(cl["labels"], ls.apps.cluster(col, n_clusters=2, seed=0).labels)
    dup = ok(c.post("/v1/collections/t/duplicates", json={"threshold": 0.9}))
    assert dup["pairs"] == ls.apps.find_duplicates(col, 0.9).pairs
    out = ok(c.post("/v1/collections/t/outliers", json={"k": 3, "top": 2}))
    assert [o["id"] for o in out["top"]] == [i for i, _, _ in ls.apps.outlier_scores(col, k=3).top(2)]
    pred = ok(c.post("/v1/collections/t/classify", json={"label_key": "topic", "queries": ["a cat on a mat"], "k": 3}))
    assert pred[0]["label"] == ls.apps.knn_classify(col, "topic", queries=["a cat on a mat"], k=3)[0].label
    assert c.post("/v1/collections/t/classify", json={"vectors": [[0.1] * 32]}).status_code == 422  # no space


def test_maps_are_cached_until_a_write_and_place_queries_and_records(served):
    c, st = served
    p1 = ok(c.post("/v1/collections/t/project", json={"method": "pca", "color_by": "topic"}))
    assert len(p1["x"]) == 10 and p1["labels"][0] == "pets" and "topic" in p1["fields"] and not p1["sampled"]
    p2 = ok(c.post("/v1/collections/t/project", json={"method": "pca"}))
    assert p2["change_seq"] == p1["change_seq"] and p2["seconds"] == p1["seconds"]  # the cached map
    st.get_collection("t").add(["new"], documents=["a goldfish swims"])
    p3 = ok(c.post("/v1/collections/t/project", json={"method": "pca"}))
    assert p3["change_seq"] > p1["change_seq"] and len(p3["x"]) == 11
    placed = ok(c.post("/v1/collections/t/place", json={"query": "cats and kittens", "k": 3}))
    expected = st.get_collection("t").search("cats and kittens", k=3)
    assert [h["id"] for h in placed["hits"]] == [h.id for h in expected]
    assert 0 <= placed["map_recall"] <= 1 and np.isfinite([placed["x"], placed["y"]]).all()
    # PCA is linear: a record placed on the map lands on its own point
    one = ok(c.post("/v1/collections/t/place", json={"id": "d3", "k": 3}))
    at = p3["ids"].index("d3")
    assert one["x"] == pytest.approx(p3["x"][at], abs=1e-3) and one["y"] == pytest.approx(p3["y"][at], abs=1e-3)
    assert "d3" not in [h["id"] for h in one["hits"]]
    small = c.post("/v1/collections/t/diagnose", json={})
    assert small.status_code == 422 and "at least" in small.json()["message"]
    from ..conftest import unit_rows

    st.create_collection("v", space=ls.SpaceSpec(model="m", dim=16)).add([f"v{i}" for i in range(60)],
                                                                        vectors=unit_rows(60, 16))
    diag = ok(c.post("/v1/collections/v/diagnose", json={}))
    assert diag["n_points"] == 60 and diag["findings"]


def test_two_spaces_compared_record_by_record(served, tmp_path, tiny_bert_other):
    c, st = served
    col = st.get_collection("t")
    recs = col.get(include_vectors=True)
    same = st.create_collection("same", space=col.spec)
    same.add([r.id for r in recs], vectors=[r.vector for r in recs], documents=[r.document for r in recs])
    cmp = ok(c.post("/v1/collections/t/compare", json={"other": "same", "k": 3}))
    assert cmp["mean"] == 1.0 and len(cmp["ids"]) == 10
    other = ls.SentenceTransformerEncoder(str(build_tiny_st(tiny_bert_other, tmp_path / "o")), precision="fp32")
    st.create_collection("o", encoder=other).add([r.id for r in recs], documents=[r.document for r in recs])
    cmp = ok(c.post("/v1/collections/t/compare", json={"other": "o", "k": 3}))
    assert 0 <= cmp["mean"] < 1
    assert c.post("/v1/collections/t/compare", json={"other": "missing"}).status_code == 404


def test_latent_maps_and_paths(tmp_path, digits):
    """A latent model's map (its data's latents, or the prior's) and a decoded path."""
    from latentspace.latent import LatentConfig, LatentModel, save_model, train
    from latentspace.server.routes_latent import png_data_uri

    x, y = digits
    vae = LatentModel(LatentConfig(name="vae", input_shape=(64,), latent_dim=4, hidden=(32,)), seed=0)
    train(vae, x[:200], epochs=2, seed=0)
    save_model(vae, tmp_path / "vae")
    np.savez(tmp_path / "d.npz", x=x[:200], y=y[:200])
    ls.open_store(tmp_path / "s").close()
    latent = {"vae": f"{tmp_path / 'vae'}:{tmp_path / 'd.npz'}", "prior": str(tmp_path / "vae")}
    c = TestClient(create_app(Settings(store=str(tmp_path / "s"), latent=latent)), raise_server_exceptions=False)
    assert ok(c.get("/v1/latent")) == ["prior", "vae"]
    m = ok(c.post("/v1/latent/vae/map", json={}))
    assert len(m["x"]) == 200 and sorted(set(m["labels"])) == sorted(set(y[:200].tolist()))
    z = vae.latents(x[:200])
    pick = np.random.default_rng(0).permutation(200)
    np.testing.assert_allclose(np.var(m["x"]) + np.var(m["y"]),  # PCA keeps the latents' top two variances
                               np.sort(np.linalg.eigvalsh(np.cov(z[pick].T, bias=True)))[-2:].sum(), rtol=1e-3)
    assert ok(c.post("/v1/latent/prior/map", json={}))["labels"] is None
    p = ok(c.post("/v1/latent/vae/path", json={"a": 0, "b": 5, "steps": 7, "method": "lerp"}))
    assert len(p["images"]) == 7 and len(p["x"]) == 7
    assert p["x"][0] == pytest.approx(m["x"][0], abs=1e-3) and p["x"][-1] == pytest.approx(m["x"][5], abs=1e-3)
    assert c.post("/v1/latent/vae/path", json={"a": 0, "b": 999}).status_code == 422
    assert c.post("/v1/latent/nope/map", json={}).status_code == 404
    uri = png_data_uri(np.eye(3), scale=1)  # a real PNG: signature, IHDR of 3 x 3 grey
    import base64

    raw = base64.b64decode(uri.split(",")[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[16:24] == (3).to_bytes(4, "big") * 2
