"""The CLI as a user runs it: real files, one-line errors, exit codes; in-process (the same `main`
the script calls) with a handful of real subprocesses."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest

import latentspace as ls

from .cli_runner import run, run_process


@pytest.fixture(scope="module")
def docs_jsonl(tmp_path_factory):
    from .corpus import spread

    items = spread(120)  # the committed corpus: the same paragraphs on every machine
    path = tmp_path_factory.mktemp("data") / "docs.jsonl"
    with open(path, "w") as f:
        for it in items:
            f.write(json.dumps(it) + "\n")
    return path, items


def test_ingest_search_and_resume(tmp_path, docs_jsonl):
    path, items = docs_jsonl
    store = tmp_path / "store"
    out = json.loads(run_process("ingest", store, "docs", path, "--chunk-size", "400", "--json").stdout)
    assert out["records"] == len(items) and out["chunks"] > out["records"] and out["split_records"] > 0
    assert out["added"] == out["chunks"] == out["stored_chunks"]
    again = json.loads(run("ingest", store, "docs", path, "--chunk-size", "400", "--json").stdout)
    assert again["added"] == 0 and again["skipped"] == again["chunks"]  # resumable: nothing re-embedded
    hits = json.loads(run_process("search", store, "docs", "compress data", "-k", "3", "--json").stdout)
    assert len(hits) == 3 and all(h["score"] <= hits[0]["score"] for h in hits)
    hits = json.loads(run("search", store, "docs", "file", "--mode", "hybrid", "--where",
                          '{"kind": "function"}', "--json").stdout)
    assert hits and all(h["metadata"]["kind"] == "function" for h in hits)
    table = run("search", store, "docs", "compress data", "-k", "2").stdout
    assert "score" in table and "first line" in table
    listed = json.loads(run("collection", "list", store, "--json").stdout)
    assert listed[0]["name"] == "docs" and listed[0]["spec"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    info = json.loads(run("collection", "info", store, "docs", "--json").stdout)
    assert info["count"] == out["stored_chunks"]
    assert json.loads(run("collection", "rename", store, "docs", "stdlib", "--json").stdout) == {
        "renamed": "docs", "to": "stdlib"}
    bad = run("collection", "rename", store, "docs", "x", check=False)
    assert bad.returncode != 0 and "No collection named 'docs'" in bad.stderr + bad.stdout
    assert "Dropped" in run("collection", "drop", store, "stdlib", "--yes").stdout
    assert json.loads(run("collection", "list", store, "--json").stdout) == []


def test_ingest_formats(tmp_path):
    rows = [{"id": f"d{i}", "body": f"text number {i} about cats", "year": 2000 + i} for i in range(6)]
    csv_path = tmp_path / "d.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "body", "year"])
        w.writeheader()
        w.writerows(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq_path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "id": "p" + r["id"]} for r in rows]), pq_path)
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# A note\nabout dogs")
    (folder / "sub" / "b.txt").write_text("another note about birds")
    store = tmp_path / "s"
    run("collection", "create", store, "mixed")
    run("ingest", store, "mixed", csv_path, "--text-field", "body")
    run("ingest", store, "mixed", pq_path, "--text-field", "body", "--metadata-fields", "year")
    run("ingest", store, "mixed", folder)
    with ls.open_store(store) as st:
        col = st.get_collection("mixed")
        assert len(col) == 14
        assert col.get(ids=["d3"])[0].metadata == {"year": 2003}
        assert col.get(ids=["pd3"])[0].metadata == {"year": 2003}
        assert col.get(ids=["sub/b.txt"])[0].document == "another note about birds"
        assert col.count(where={"year": {"$gte": 2004}}) == 4


def test_create_for_own_vectors_and_errors_are_one_line(tmp_path):
    store = tmp_path / "s"
    out = json.loads(run("collection", "create", store, "vecs", "--dim", "8", "--space-model", "mine", "--json").stdout)
    assert out["spec"]["dim"] == 8 and out["encoder"] is None
    cases = [
        (("collection", "create", store, "vecs", "--dim", "8"), ls.AlreadyExistsError),
        (("collection", "create", store, "bad/name", "--dim", "8"), ls.InvalidInputError),
        (("search", store, "nope", "q"), ls.NotFoundError),
        (("search", store, "vecs", "q"), ls.InvalidInputError),  # no encoder for text
        (("search", store, "vecs", "q", "--mode", "keyword", "--where", "{bad json"), ls.InvalidInputError),
        (("search", store, "vecs", "q", "--mode", "keyword", "-k", "0"), ls.InvalidInputError),
        (("collection", "list", tmp_path / "missing"), ls.NotFoundError),
        (("ingest", store, "vecs", tmp_path / "none.jsonl"), ls.NotFoundError),
    ]
    for args, error in cases:
        proc = run(*args, check=False)
        assert proc.returncode == error.exit_code, (args, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert error.__name__ in proc.stderr
    debug = run_process("--debug", "search", store, "nope", "q", check=False)
    assert "Traceback" in debug.stderr


def test_every_command_is_documented_in_the_readme():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for cmd in ("latentspace demo", "latentspace collection create", "collection list|info|drop",
                "latentspace ingest", "latentspace search"):
        assert cmd in readme
    help_text = run("--help").stdout
    for cmd in ("demo", "collection", "ingest", "search"):
        assert cmd in help_text


def test_demo_runs_and_reuses_its_store(tmp_path):
    store = tmp_path / "demo"
    first = json.loads(run("demo", "--store", store, "--limit", "150", "--json").stdout)
    assert first["action"] == "rebuilt" and first["chunks"] >= first["docstrings"] == 150
    assert first["refused"].startswith("SpaceMismatchError") and "dim: 384 != 128" in first["refused"]
    for label in ("vector", "keyword", "hybrid", "filtered"):
        assert first["searches"][label]["hits"], label
    assert all(h["metadata"]["kind"] == "function" for h in first["searches"]["filtered"]["hits"])
    second = json.loads(run("demo", "--store", store, "--limit", "150", "--json").stdout)
    assert second["action"] == "reused" and second["chunks"] == first["chunks"]
    text = run("demo", "--store", store, "--limit", "150").stdout
    assert "reusing" in text and "refused" in text


def test_analyze_commands(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    arr = rng.normal(size=(300, 12)).astype(np.float32)
    npy = tmp_path / "v.npy"
    np.save(npy, arr)
    d = json.loads(run("analyze", "diagnose", npy, "--json").stdout)
    assert d["n_points"] == 300 and d["dim"] == 12
    out = json.loads(run("analyze", "project", npy, "-o", tmp_path / "p.png", "--json").stdout)
    assert Path(out["output"]).stat().st_size > 5000
    rep = json.loads(run("analyze", "report", npy, "-o", tmp_path / "r.html", "--compare", npy, "--json").stdout)
    assert "linear_cka" in Path(rep["report"]).read_text()
    store = tmp_path / "s"
    run("collection", "create", store, "vecs", "--dim", "12", "--no-normalize", "--metric", "l2")
    with ls.open_store(store) as st:
        st.get_collection("vecs").add([str(i) for i in range(300)], vectors=arr, metadatas=[{"g": i % 3} for i in range(300)])
    txt = run("analyze", "diagnose", store, "vecs").stdout
    assert "hubness" in txt
    run("analyze", "report", store, "vecs", "-o", tmp_path / "r2.html", "--color-by", "g")
    bad = run("analyze", "project", npy, "-o", tmp_path / "p.gif", check=False)
    assert bad.returncode == ls.InvalidInputError.exit_code
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    refused = run("analyze", "diagnose", pickled, check=False)
    assert refused.returncode == ls.InvalidInputError.exit_code and "Traceback" not in refused.stderr


def test_analyze_compare_and_align(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    y = (x @ q).astype(np.float32)
    store = tmp_path / "s"
    with ls.open_store(store) as st:
        a = st.create_collection("a", space=ls.SpaceSpec(model="model-a", dim=16, normalize=False, modality="vector"))
        b = st.create_collection("b", space=ls.SpaceSpec(model="model-b", dim=16, normalize=False, modality="vector"))
        a.add([f"i{i}" for i in range(400)], vectors=x)
        b.add([f"i{i}" for i in range(400)], vectors=y)
    cmp = json.loads(run("analyze", "compare", store, "a", "b", "--json").stdout)
    assert cmp["linear_cka"] > 0.999 and cmp["points"] == 400
    out = json.loads(run("analyze", "align", store, "a", "b", "-o", tmp_path / "al", "--json").stdout)
    assert out["p_at_1_nn_before"] < 0.1 and out["p_at_1_nn_after"] > 0.95
    from latentspace.analysis import Aligner

    al = Aligner.load(tmp_path / "al")
    assert al.target_space.model == "model-b"
    moved = al.to_target(x[:5])
    with ls.open_store(store) as st:
        st.get_collection("b").add(["new"], vectors=moved.vectors[:1] * np.linalg.norm(y[0]), space=moved.space)
    assert "P@1" in run("analyze", "align", store, "a", "b").stdout


def test_latent_commands(tmp_path):
    model = tmp_path / "vae"
    out = json.loads(run("latent", "train", model, "--epochs", "5", "--latent-dim", "4", "--hidden", "64",
                         "--json").stdout)
    assert out["epochs"] == 5 and (model / "model.safetensors").exists()
    enc = json.loads(run("latent", "encode", model, "-o", tmp_path / "z.npy", "--json").stdout)
    assert enc["shape"] == [1797, 4]
    for args in (("sample", model, "-o", tmp_path / "s.png", "--sampler", "gmm", "-n", "9"),
                 ("interpolate", model, "-o", tmp_path / "i.png", "--a", "0", "--b", "1"),
                 ("traverse", model, "-o", tmp_path / "t.png", "--toward", "0"),
                 ("traverse", model, "-o", tmp_path / "d.png")):
        run("latent", *args)
        assert Path(args[args.index("-o") + 1]).read_bytes()[:4] == b"\x89PNG"
    top = json.loads(run("latent", "anomalies", model, "--top", "3", "--json").stdout)
    assert len(top["top"]) == 3 and top["top"][0]["score"] >= top["top"][1]["score"]
    bad = run("latent", "train", tmp_path / "x", "--kind", "gan", "--epochs", "1", check=False)
    assert bad.returncode == ls.InvalidInputError.exit_code and "kind" in bad.stderr
    (model / "weights.pkl").write_bytes(b"x")
    refused = run("latent", "encode", model, check=False)
    assert refused.returncode == ls.ModelLoadError.exit_code and "pickle" in refused.stderr


def test_usage_errors_are_click_messages_not_crashes():
    proc = run("search", "--no-such-flag", check=False)
    assert proc.returncode == 2 and "No such option" in proc.stderr and "unexpected" not in proc.stderr


def test_collection_migrate_rollback_history(tmp_path, tiny_st):
    store = tmp_path / "s"
    rows = tmp_path / "d.jsonl"
    rows.write_text("".join(json.dumps({"id": f"r{i}", "text": f"text {i} about the cat and the file"}) + "\n"
                            for i in range(30)))
    run("ingest", store, "docs", rows)
    out = json.loads(run("collection", "migrate", store, "docs", "--model", tiny_st, "--queries", "5",
                         "--json").stdout)
    assert out["switched"] and out["records"] == 30
    info = json.loads(run("collection", "info", store, "docs", "--json").stdout)
    assert info["fingerprint"] == out["new_fingerprint"]
    hist = json.loads(run("collection", "history", store, "docs", "--json").stdout)
    assert hist[0]["fingerprint"] == out["new_fingerprint"]
    back = json.loads(run("collection", "rollback", store, "docs", "--json").stdout)
    assert back["fingerprint"] == out["old_fingerprint"]
    same = run("collection", "migrate", store, "docs", "--model", "sentence-transformers/all-MiniLM-L6-v2",
               check=False)
    assert same.returncode == ls.InvalidInputError.exit_code and "already in the space" in same.stderr
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "pytorch_model.bin").write_bytes(b"\x80\x04")
    failed = run("collection", "migrate", store, "docs", "--model", broken, check=False)
    assert failed.returncode == ls.ModelLoadError.exit_code and "Traceback" not in failed.stderr
    info_after = json.loads(run("collection", "info", store, "docs", "--json").stdout)
    assert info_after["fingerprint"] == out["old_fingerprint"] and info_after["count"] == 30  # nothing changed
    assert json.loads(run("collection", "drop-retired", store, "docs", "--json").stdout)["dropped"] == 1
    assert run("collection", "rollback", store, "docs", check=False).returncode == ls.NotFoundError.exit_code


def test_ingest_precomputed_vectors(tmp_path):
    import numpy as np

    x = np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    path = tmp_path / "vecs.jsonl"
    path.write_text("".join(json.dumps({"id": f"v{i}", "text": f"row number {i}", "emb": x[i].tolist(), "g": i % 2}) + "\n"
                            for i in range(30)))
    store = tmp_path / "store"
    missing = run("ingest", store, "vecs", path, "--vector-field", "emb", check=False)
    assert missing.returncode != 0 and "--vector-model" in missing.stderr + missing.stdout
    out = json.loads(run("ingest", store, "vecs", path, "--vector-field", "emb", "--vector-model", "ext/m",
                         "--json").stdout)
    assert out["added"] == 30 and out["stored_chunks"] == 30 == out["records"]
    info = json.loads(run("collection", "info", store, "vecs", "--json").stdout)
    assert info["spec"]["model"] == "ext/m" and info["spec"]["dim"] == 6 and info["encoder"] is None
    again = json.loads(run("ingest", store, "vecs", path, "--vector-field", "emb", "--json").stdout)
    assert again["skipped"] == 30 and again["added"] == 0
    hits = json.loads(run("search", store, "vecs", "number 7", "--mode", "keyword", "-k", "1", "--json").stdout)
    assert hits[0]["id"] == "v7" and hits[0]["metadata"] == {"g": 1}
    with ls.open_store(store) as st:
        col = st.get_collection("vecs")
        np.testing.assert_allclose(col.get(ids=["v3"], include_vectors=True)[0].vector, x[3], atol=1e-7)
        assert col.search(vector=x[3], k=1)[0].id == "v3"
    wrong = run("ingest", store, "vecs", path, "--vector-field", "emb", "--vector-model", "other/m", check=False)
    assert wrong.returncode != 0 and "other/m" in wrong.stderr + wrong.stdout


def test_ingest_vectors_into_an_encoder_collection_must_name_its_model(tmp_path, tiny_st):
    import latentspace as ls

    store = tmp_path / "store"
    with ls.open_store(store) as st:
        enc = ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32")
        col = st.create_collection("docs", encoder=enc)
        model, vec = col.spec.model, enc.encode_documents(["a cat"])[0]
    path = tmp_path / "v.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "a cat", "emb": vec.tolist()}) + "\n")
    refused = run("ingest", store, "docs", path, "--vector-field", "emb", check=False)
    assert refused.returncode != 0 and "--vector-model" in refused.stderr + refused.stdout
    out = json.loads(run("ingest", store, "docs", path, "--vector-field", "emb", "--vector-model", model,
                         "--json").stdout)
    assert out["added"] == 1


def test_update_command(tmp_path):
    import numpy as np

    store = tmp_path / "store"
    with ls.open_store(store) as st:
        col = st.create_collection("v", space=ls.SpaceSpec(model="ext/m", dim=4, modality="vector"))
        col.add(["a", "b"], documents=["first", "second"], metadatas=[{"n": 1}, {"n": 2}],
                vectors=np.eye(4, dtype=np.float32)[:2])
    out = json.loads(run("update", store, "v", "a", "b", "--metadata", '{"seen": true}', "--json").stdout)
    assert out == {"collection": "v", "updated": 2, "unchanged": 0}
    run("update", store, "v", "a", "--metadata", '{"only": 1}', "--replace-metadata")
    run("update", store, "v", "b", "--document", "second, revised")
    with ls.open_store(store) as st:
        recs = {r.id: r for r in st.get_collection("v").get(include_vectors=True)}
    assert recs["a"].metadata == {"only": 1} and recs["b"].metadata == {"n": 2, "seen": True}
    assert recs["b"].document == "second, revised" and recs["b"].vector.tolist() == [0.0, 1.0, 0.0, 0.0]
    missing = run("update", store, "v", "zz", "--metadata", "{}", check=False)
    assert missing.returncode == 4 and "'zz'" in missing.stderr + missing.stdout
    bad = run("update", store, "v", "a", "--metadata", "{nope", check=False)
    assert bad.returncode == 2 and "--metadata" in bad.stderr + bad.stdout


def test_ctrl_c_during_ingest_exits_130_and_says_how_to_resume(tmp_path):
    """A real process and a real SIGINT while batches are being written."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    from .corpus import spread

    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in spread(600)))
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "latentspace.cli.app", "ingest", str(store), "docs", str(path),
                             "--batch-size", "32"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    deadline, stored = time.time() + 300, 0
    while time.time() < deadline and proc.poll() is None and stored < 32:
        time.sleep(0.2)
        if (store / "latentspace.db").exists():
            con = sqlite3.connect(store / "latentspace.db", timeout=5)
            try:
                stored = con.execute("SELECT COALESCE(MAX(count), 0) FROM collections").fetchone()[0]
            except sqlite3.OperationalError:  # created meanwhile: look again
                pass
            finally:
                con.close()
    assert proc.poll() is None, "the ingest finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "interrupted" in err and "run the same command again to resume" in err and "Traceback" not in err
    held = int(re.search(r"holds ([\d,]+) chunks", err).group(1).replace(",", ""))
    with ls.open_store(store) as st:
        assert len(st.get_collection("docs")) == held >= 32
    again = json.loads(run("ingest", store, "docs", path, "--json").stdout)
    assert again["skipped"] == held and again["added"] == again["chunks"] - held  # resumed where it stopped


@pytest.mark.parametrize("columns", [80, 100, 160])
def test_search_tables_keep_rank_score_and_whole_ids_at_any_width(columns):
    from rich.console import Console

    from latentspace.cli.common import hits_table
    from latentspace.storage.hits import Hit

    ids = ["email._header_value_parser.get_bare_quoted_string#3", "x7", "tkinter.ttk.Treeview.selection_toggle"]
    hits = [Hit(i, 0.9 - n / 10, "A first line that is much longer than any terminal is wide. " * 4,
                {"package": i.split(".")[0], "n": n}, 0.1, None, None) for n, i in enumerate(ids)]
    console = Console(width=columns, record=True, force_terminal=False)
    console.print(hits_table(hits, "search", show=["package"], width=columns))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= columns
    for n, h in enumerate(hits, start=1):
        line = next(line for line in text.splitlines() if f" {h.id} " in line)  # whole, on one line
        assert f" {n} " in line and f"{h.score:.4f}" in line and h.metadata["package"] in line
    # the document column is what shrinks: it goes last, when nothing of it would fit
    assert ("first line" in text) == (columns >= 100)
