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
    out = json.loads(run("ingest", store, "docs", rows, "--json").stdout)  # the local engine finds it all stored
    assert out["added"] == 0 and out["skipped"] == 30


def write_corpus(folder):
    """A JSONL file whose long records are chunked, a CSV with numbers, a folder of text files."""
    folder.mkdir()
    words = "the cat sat on the mat while a dog read the file about vectors and spaces".split()
    long = [" ".join(words[(i + j) % len(words)] for j in range(60 + 7 * i)) + "." for i in range(12)]
    (folder / "d.jsonl").write_text("".join(json.dumps({"id": f"r{i}", "text": t, "n": i, "tag": "x" * (i % 3)}) + "\n"
                                            for i, t in enumerate(long)) + "\n")
    (folder / "d.csv").write_text("id,text,score\n" + "".join(f'c{i},"text {i}, with a comma",{i / 4}\n'
                                                              for i in range(9)))
    (folder / "txt").mkdir()
    for i in range(5):
        (folder / "txt" / f"{i}.md").write_text(f"# note {i}\n\n" + " ".join(words * (i + 1)))
    return folder


@pytest.mark.parametrize("sources", [["d.jsonl", "d.csv"], ["txt"]], ids=["jsonl+csv", "folder"])
def test_ray_data_reads_and_chunks_files_as_the_local_engine_does(cluster, tmp_path, tiny_encoder, sources):
    from latentspace.ingest import chunk_items, read_items
    from latentspace.ray_ingest import ingest_files_on_ray

    folder = write_corpus(tmp_path / "data")
    paths = [folder / s for s in sources]
    st = ls.open_store(tmp_path / "s")
    local, remote = (st.create_collection(n, encoder=tiny_encoder) for n in ("local", "ray"))

    def items():
        return list(chunk_items((it for p in paths for it in read_items(p)), 200, 40,
                                count_tokens=tiny_encoder.count_tokens, max_tokens=tiny_encoder.token_limit))

    want = ingest(local, items())
    seen = []
    got = ingest_files_on_ray(remote, paths if len(paths) > 1 else paths[0], chunk_size=200, chunk_overlap=40,
                              workers=2, batch_size=4, on_batch=seen.append)
    assert got.to_dict() == want.to_dict() and sum(seen) == want.chunks
    if "d.jsonl" in sources:
        assert got.split == 12 and got.chunks > 24 + 9  # long records split into several chunks each
    a = {r.id: r for r in local.get(include_vectors=True)}
    b = {r.id: r for r in remote.get(include_vectors=True)}
    assert set(a) == set(b) and all(a[i].document == b[i].document and a[i].metadata == b[i].metadata for i in a)
    np.testing.assert_allclose(np.stack([a[i].vector for i in sorted(a)]), np.stack([b[i].vector for i in sorted(a)]),
                               atol=1e-5)
    # the same content hashes: neither engine finds anything to embed again in the other's collection
    assert ingest(remote, items()).skipped == want.chunks  # (Ray resuming from local hashes: the next test)
    st.close()


def test_ray_ingest_of_a_changed_file_embeds_only_what_changed(cluster, tmp_path, tiny_encoder):
    from latentspace.ray_ingest import ingest_files_on_ray

    rows = tmp_path / "d.jsonl"
    rows.write_text("".join(json.dumps({"id": f"r{i}", "text": f"text {i}"}) + "\n" for i in range(20)))
    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("docs", encoder=tiny_encoder)
    from latentspace.ingest import read_items

    assert ingest(col, read_items(rows)).added == 20  # stored by the local engine, resumed on Ray
    lines = rows.read_text().splitlines()
    lines[3] = json.dumps({"id": "r3", "text": "a new text"})
    lines.append(json.dumps({"id": "r3", "text": "the later r3 wins"}))  # one id twice: the later record is kept
    rows.write_text("\n".join(lines) + "\n")
    report = ingest_files_on_ray(col, [rows])
    assert (report.added, report.replaced, report.skipped) == (0, 1, 20)
    assert col.get(ids=["r3"])[0].document == "the later r3 wins" and len(col) == 20
    st.close()


def test_ray_ingest_refuses_bad_files_and_writes_nothing(cluster, tmp_path, tiny_encoder):
    from latentspace.ray_ingest import ingest_files_on_ray

    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("docs", encoder=tiny_encoder)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "text": "fine"}) + "\n{not json\n")
    with pytest.raises(ls.InvalidInputError, match=r"bad.jsonl:2 is not valid JSON"):
        ingest_files_on_ray(col, bad)
    with pytest.raises(ls.NotFoundError):
        ingest_files_on_ray(col, tmp_path / "missing.jsonl")
    with pytest.raises(ls.InvalidInputError, match="has no .txt"):
        ingest_files_on_ray(col, tmp_path / "s")  # a folder without text files (the store's own)
    (tmp_path / "d.xml").touch()
    with pytest.raises(ls.InvalidInputError, match="Cannot read d.xml on Ray"):
        ingest_files_on_ray(col, [bad, tmp_path / "d.xml"])
    assert len(col) == 0
    st.close()
