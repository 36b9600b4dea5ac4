"""Embedding on a Ray cluster: a local two-CPU cluster started here, the tiny model on
every actor, the driver the one writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

import latentspace as ls
from latentspace.ingest import Item, ingest

from .cli_runner import run

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def items(n: int, prefix: str = "text"):
    return [Item(f"r{i}", f"{prefix} {i} the cat sat on the mat with a file", {"i": i}) for i in range(n)]


def test_ray_ingest_matches_local_and_resumes(cluster, tmp_path, tiny_encoder):
    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("docs", encoder=tiny_encoder)
    ingest(col, items(50))  # an interrupted job: the first 50 stored
    seen = []
    report = ingest(col, items(70), engine="ray", workers=2, batch_size=8, on_batch=seen.append)
    assert (report.records, report.added, report.skipped) == (70, 20, 50) and sum(seen) == 70
    local = st.create_collection("local", encoder=tiny_encoder)
    ingest(local, items(70))
    a = {r.id: r for r in col.get(include_vectors=True)}
    b = {r.id: r for r in local.get(include_vectors=True)}
    assert set(a) == set(b) and all(a[i].document == b[i].document and a[i].metadata == b[i].metadata for i in a)
    np.testing.assert_allclose(np.stack([a[i].vector for i in sorted(a)]), np.stack([b[i].vector for i in sorted(a)]),
                               atol=1e-5)
    # content hashes agree with a local ingest's: neither engine finds anything to embed again
    assert ingest(col, items(70)).skipped == 70
    assert ingest(col, items(70), engine="ray").skipped == 70
    st.close()


def test_a_worker_in_another_space_writes_nothing(cluster, tmp_path, tiny_st, tiny_encoder):
    from latentspace.ray_ingest import embed_on_ray

    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("docs", encoder=tiny_encoder)
    other = ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32", normalize=False)
    with pytest.raises(ls.SpaceMismatchError, match="Nothing from that worker was written"):
        embed_on_ray(col, items(40), workers=1, batch_size=8, encoder_config=other.config())
    assert len(col) == 0
    with pytest.raises(ls.InvalidInputError, match="precomputed vectors"):
        embed_on_ray(st.create_collection("vecs", space=ls.SpaceSpec(model="m", dim=4)), items(3))
    st.close()


def test_cli_ingest_on_ray(cluster, tmp_path, tiny_st):
    rows = tmp_path / "d.jsonl"
    rows.write_text("".join(json.dumps({"id": f"r{i}", "text": f"text {i} about the cat"}) + "\n" for i in range(30)))
    store = tmp_path / "s"
    out = json.loads(run("ingest", store, "docs", rows, "--model", tiny_st, "--engine", "ray", "--workers", "1",
                         "--json").stdout)
    assert out["added"] == 30 and out["stored_chunks"] == 30
    out = json.loads(run("ingest", store, "docs", rows, "--engine", "ray", "--json").stdout)
    assert out["added"] == 0 and out["skipped"] == 30
