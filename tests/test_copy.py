"""Copying a collection between stores: embedded <-> Milvus (Lite) <-> memory, nothing
re-embedded, the space carried and checked, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest

import latentspace as ls

from .cli_runner import run
from .conftest import unit_rows

SPEC = ls.SpaceSpec(model="test/model", dim=8, metric="cosine", modality="vector")


def filled(store, name="docs", n=120):
    col = store.create_collection(name, space=SPEC, hnsw={"M": 8}, metadata={"owner": "me"})
    col.add([f"r{i}" for i in range(n)], vectors=unit_rows(n, 8, seed=2), documents=[f"text {i}" for i in range(n)],
            metadatas=[{"i": i, "tags": ["a", str(i % 3)]} for i in range(n)])
    return col


def same(a, b):
    ra = {r.id: r for r in a.get(include_vectors=True)}
    rb = {r.id: r for r in b.get(include_vectors=True)}
    assert set(ra) == set(rb)
    for i, r in ra.items():
        assert (r.document, r.metadata) == (rb[i].document, rb[i].metadata)
        np.testing.assert_array_equal(r.vector, rb[i].vector)
    assert a._storage.hashes(list(ra)) == b._storage.hashes(list(ra))


@pytest.mark.parametrize("dst_kind", ["milvus", "embedded", "memory"])
def test_copy_carries_records_and_space_and_resumes(tmp_path, dst_kind):
    if dst_kind == "milvus":
        pytest.importorskip("milvus_lite")
    src = ls.open_store(tmp_path / "src")
    col = filled(src)
    dst = ls.open_store({"milvus": f"milvus+lite://{tmp_path}/m", "embedded": str(tmp_path / "dst"),
                         "memory": ":memory:"}[dst_kind])
    seen = []

    def stop_after_two(done, total):
        seen.append((done, total))
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ls.copy_collection(src, "docs", dst, "copy", batch_size=50, progress=stop_after_two)
    assert seen == [(50, 120), (100, 120)] and len(dst.get_collection("copy")) == 100
    report = ls.copy_collection(src, "docs", dst, "copy", batch_size=50)
    assert (report.records, report.copied, report.unchanged, report.created) == (120, 20, 100, False)
    copy = dst.get_collection("copy")
    assert copy.spec == SPEC and copy.metadata == {"owner": "me"} and copy.info().hnsw.M == 8
    same(col, copy)
    q = unit_rows(1, 8, seed=7)[0]
    assert [h.id for h in copy.search(vector=q, k=5, mode="exact")] == [h.id for h in col.search(vector=q, k=5,
                                                                                                 mode="exact")]
    col.upsert(["r3"], vectors=unit_rows(1, 8, seed=99), documents=["changed"])
    again = ls.copy_collection(src, "docs", dst, "copy")
    assert (again.copied, again.unchanged) == (1, 119) and dst.get_collection("copy").get(ids=["r3"])[0].document == \
        "changed"
    back = ls.copy_collection(dst, "copy", src, "round-trip")
    assert back.copied == 120
    same(col, src.get_collection("round-trip"))
    dst.close()
    src.close()


def test_copy_refuses_another_space_and_itself(tmp_path):
    src = ls.open_store(tmp_path / "src")
    filled(src)
    dst = ls.open_store(":memory:")
    dst.create_collection("docs", space=SPEC.replace(model="other/model"))
    with pytest.raises(ls.SpaceMismatchError, match="model"):
        ls.copy_collection(src, "docs", dst)
    assert len(dst.get_collection("docs")) == 0
    with pytest.raises(ls.InvalidInputError, match="onto itself"):
        ls.copy_collection(src, "docs", src)
    with pytest.raises(ls.NotFoundError):
        ls.copy_collection(src, "nope", dst, "x")
    src.close()


def test_cli_copy_embedded_to_milvus_and_back(tmp_path):
    pytest.importorskip("milvus_lite")
    with ls.open_store(tmp_path / "src") as st:
        filled(st, n=30)
    uri = f"milvus+lite://{tmp_path}/m"
    out = json.loads(run("collection", "copy", tmp_path / "src", "docs", uri, "--json").stdout)
    assert out["copied"] == 30 and out["created"]
    listed = json.loads(run("collection", "list", uri, "--json").stdout)
    assert [c["name"] for c in listed] == ["docs"] and listed[0]["count"] == 30
    text = run("collection", "copy", uri, "docs", tmp_path / "src", "docs2").stdout
    assert "Copied 30 of 30 records" in text
    assert "Copied 0 of 30 records" in run("collection", "copy", uri, "docs", tmp_path / "src", "docs2").stdout
