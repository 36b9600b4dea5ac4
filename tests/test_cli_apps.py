"""The application commands as a user runs them (in-process, see cli_runner): real stores, JSON out, typed errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import latentspace as ls

from .apps.conftest import DIGITS_SPACE, split_of
from .cli_runner import run


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory, digits):
    x, y = digits
    path = tmp_path_factory.mktemp("cli-apps") / "store"
    with ls.open_store(path) as st:
        col = st.create_collection("digits", space=DIGITS_SPACE)
        col.add([f"d{i}" for i in range(len(x))], vectors=x,
                metadatas=[{"label": int(v), "split": split_of(i)} for i, v in enumerate(y)])
        col.add(["copy0", "copy1"], vectors=x[:2], metadatas=[{"copy": True}] * 2)
    return path


@pytest.fixture(scope="module")
def text_store(tmp_path_factory, default_enc):
    from .corpus import topics

    texts, labels, _ = topics(25)
    path = tmp_path_factory.mktemp("cli-apps") / "text"
    with ls.open_store(path) as st:
        col = st.create_collection("docs", encoder=default_enc)
        col.add([f"t{i}" for i in range(len(texts))], documents=texts,
                metadatas=[{"package": p, "split": split_of(i)} for i, p in enumerate(labels)])
    return path, texts, labels


def test_digits_commands(digits_store, tmp_path):
    s = digits_store
    rec = json.loads(run("recommend", s, "digits", "-p", "d0", "-p", "d10", "-k", "5", "--json").stdout)
    assert len(rec) == 5 and not {"d0", "d10"} & {h["id"] for h in rec}
    assert sum(h["metadata"].get("label") == 0 for h in rec) >= 4
    best = json.loads(run("recommend", s, "digits", "-p", "d0", "--strategy", "best_score", "--json").stdout)
    assert len(best) == 10
    cl = json.loads(run("cluster", s, "digits", "--n-clusters", "10", "--json").stdout)
    assert len(cl["clusters"]) == 10 and sum(c["size"] for c in cl["clusters"]) == 1799
    out = run("cluster", s, "digits", "--method", "hdbscan", "--min-cluster-size", "20").stdout
    assert "clusters (hdbscan)" in out
    dd = json.loads(run("dedup", s, "digits", "--threshold", "0.9999", "--json").stdout)
    groups = {frozenset(g["ids"]) for g in dd["groups"]}
    assert {frozenset({"d0", "copy0"}), frozenset({"d1", "copy1"})} <= groups and dd["deleted"] == 0
    ol = json.loads(run("outliers", s, "digits", "--method", "knn", "--top", "3", "--json").stdout)
    assert len(ol["top"]) == 3 and ol["records"] == 1799
    probe = tmp_path / "probe"
    tr = json.loads(run("classify", "probe-train", s, "digits", "--out", probe, "--where", '{"split": "train"}',
                        "--test-where", '{"split": "test"}', "--json").stdout)
    assert tr["test_accuracy"] >= 0.93 and (probe / "probe.safetensors").is_file()
    pr = json.loads(run("classify", "probe-predict", s, "digits", probe, "--where", '{"split": "test"}',
                        "--write-to", "predicted", "--json").stdout)
    assert len(pr) == 450 and all("label" in p for p in pr)
    with ls.open_store(s) as st:
        assert st.get_collection("digits").count({"predicted": {"$exists": True}}) == 450
    gone = json.loads(run("dedup", s, "digits", "--threshold", "0.9999", "--delete", "--json").stdout)
    assert gone["deleted"] == len(gone["groups"]) >= 2


def test_text_commands(text_store, tmp_path):
    s, texts, labels = text_store
    ctx = json.loads(run("rag", s, "docs", "How do I run coroutines concurrently?", "--budget", "300", "--json").stdout)
    assert 0 < ctx["tokens"] <= 300 and ctx["sources"][0]["n"] == 1 and ctx["text"].startswith("[1] ")
    shown = run("rag", s, "docs", "How do I run coroutines concurrently?", "--budget", "300").stdout
    assert "[1]" in shown and "tokens" in shown
    from .openai_stub import StubServer

    stub = StubServer()
    try:
        ans = json.loads(run("rag", s, "docs", "How do I run coroutines concurrently?", "--budget", "300",
                             "--answer-url", stub.url, "--answer-model", "stub-chat", "--json").stdout)
    finally:
        stub.close()
    assert [c["n"] for c in ans["cited"]] == [1, 2] and ans["unknown_citations"] == [99]
    assert ans["cited"][0]["id"] == ans["context"]["sources"][0]["id"] and ans["model"] == "stub-chat"
    zs = json.loads(run("classify", "zero-shot", s, "docs", "-l", "asyncio=asynchronous I/O, event loop, coroutines",
                        "-l", "email=email messages and MIME", "--text", "await the task in the event loop",
                        "--json").stdout)
    assert zs[0]["label"] == "asyncio"
    probe = [texts[i] for i, p in enumerate(labels) if p == "email"][:3]
    kn = json.loads(run("classify", "knn", s, "docs", *probe, "--label-key", "package", "-k", "5", "--json").stdout)
    assert [p["label"] for p in kn] == ["email"] * 3 and [p["input"] for p in kn] == probe
    fb = json.loads(run("funnel", "build", s, "docs", "--dim", "128", "--json").stdout)
    assert fb["coarse"] == "docs-d128" and fb["records"] == len(texts)
    fs = json.loads(run("funnel", "search", s, "docs", "parse an XML document", "--dim", "128", "-k", "3",
                        "--json").stdout)
    assert len(fs) == 3 and fs[0]["metadata"]["package"] == "xml"


def test_images_commands(tmp_path, tiny_clip, digits):
    x, y = digits
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(0, 200, 4):
        Image.fromarray((x[i].reshape(8, 8) * 255).astype(np.uint8)).save(folder / f"digit{i}-{y[i]}.png")
    s = tmp_path / "store"
    run("collection", "create", s, "pics", "--model", tiny_clip, "--kind", "clip")
    added = json.loads(run("images", "add", s, "pics", folder, "--json").stdout)
    assert added["added"] == 50 == added["records"]
    by_img = json.loads(run("images", "search", s, "pics", "--image", folder / "digit8-8.png", "-k", "1",
                            "--json").stdout)
    assert by_img[0]["id"] == "digit8-8"
    by_text = json.loads(run("images", "search", s, "pics", "--text", "a photo of the digit zero", "--json").stdout)
    assert sum(h["id"].endswith("-0") for h in by_text) >= 4


def test_errors_are_one_line_with_exit_codes(digits_store, text_store):
    s = digits_store
    for args, code, text in [
        (("recommend", s, "digits", "-p", "nope"), 4, "nope"),
        (("cluster", s, "digits", "--n-clusters", "5000"), 2, "clusters, or add records"),
        (("dedup", s, "digits", "--threshold", "2"), 2, "threshold"),
        (("outliers", s, "digits", "--method", "forest"), 2, "method"),
        (("rag", text_store[0], "docs", "asyncio", "--budget", "2"), 2, "smaller than every retrieved passage"),
        (("classify", "zero-shot", text_store[0], "docs", "-l", "only"), 2, "NAME=DESCRIPTION"),
        (("images", "add", text_store[0], "docs", s), 2, "No image files"),
        (("funnel", "search", text_store[0], "docs", "x", "--dim", "64"), 4, "docs-d64"),
    ]:
        proc = run(*args, check=False)
        assert proc.returncode == code, (args, proc.returncode, proc.stderr)
        assert text in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2


def test_interactions_commands(tmp_path):
    """fit -> a model folder and an item collection; recommend (known and new users, with
    explanations), similar; a second fit into the same name is refused before any work."""
    pytest.importorskip("implicit")
    from .apps.test_interactions import group, planted

    ratings = tmp_path / "ratings.csv"
    ratings.write_text("user,item,weight\n" + "".join(f"{u},{i},{w}\n" for u, i, w in planted()))
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"{g}{j}", "title": f"Item {g}{j}", "group": g}) + "\n"
                             for g in "ab" for j in range(20)))
    store, model = tmp_path / "store", tmp_path / "model"
    out = json.loads(run("interactions", "fit", store, "items", ratings, "-o", model, "--factors", "4",
                         "--regularization", "1.0", "--items", items, "--title-field", "title", "--json").stdout)
    assert out["users"] == 120 and out["items"] == out["stored_items"] == out["items_with_metadata"] == 40
    with ls.open_store(store) as st:
        col = st.get_collection("items")
        assert col.spec.fingerprint == out["fingerprint"] and col.get(ids=["a3"])[0].document == "Item a3"
    recs = json.loads(run("interactions", "recommend", store, "items", "-m", model, "-u", "u7", "-k", "3",
                          "--explain", "--json").stdout)
    assert len(recs) == 3 and all(r["metadata"]["group"] == "a" and r["because"] for r in recs)
    new = json.loads(run("interactions", "recommend", store, "items", "-m", model, "--liked", "b1,b2,b3",
                         "--json").stdout)
    assert sum(group(r["item"]) == "b" for r in new) >= 8
    sim = json.loads(run("interactions", "similar", store, "items", "a1", "-m", model, "-k", "5", "--json").stdout)
    assert len(sim) == 5 and "a1" not in {r["item"] for r in sim}
    table = run("interactions", "recommend", store, "items", "-m", model, "-u", "v2", "--explain").stdout
    assert "because you liked" in table and "Item b" in table
    for args, code, text in [
        (("interactions", "fit", store, "items", ratings, "-o", tmp_path / "m2"), 5, "exists"),
        (("interactions", "recommend", store, "items", "-m", model, "-u", "nobody"), 4, "liked="),
        (("interactions", "recommend", store, "items", "-m", model), 2, "--user or --liked"),
        (("interactions", "fit", store, "new", ratings, "-o", model), 2, "not an empty folder"),
        (("interactions", "fit", store, "new", ratings, "-o", tmp_path / "m3", "--kind", "svd"), 2, "kind"),
    ]:
        proc = run(*args, check=False)
        assert proc.returncode == code, (args, proc.returncode, proc.stderr)
        assert text in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m2").exists() and not (tmp_path / "m3").exists()
