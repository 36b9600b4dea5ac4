"""Fine-tuning an encoder on pairs makes a new space (tiny models the tests build; the real
MiniLM runs are in bench/finetune.py)."""

from __future__ import annotations

import json
import random

import pytest

import latentspace as ls

from .cli_runner import run
from .conftest import WORDS

pytest.importorskip("datasets")
pytest.importorskip("accelerate")

from latentspace.embed.finetune import (
    data_sha256,
    finetune,
    label_scores,
    labelled_from_collection,
    pairs_from_collection,
    pairs_from_labels,
    read_pairs,
)

CONTENT = [w for w in WORDS if len(w) > 3]


def make_pairs(n: int = 240, seed: int = 0) -> list[tuple[str, str]]:
    """A query of two content words; its passage holds both among others: learnable, and
    the untrained tiny model ranks it poorly."""
    rng = random.Random(seed)
    pairs = set()
    while len(pairs) < n:
        a, b, c, d = rng.sample(CONTENT, 4)
        pairs.add((f"{a} {b}", f"the {c} with {a} and {d} by {b}"))
    return sorted(pairs)


@pytest.fixture(scope="module")
def tuned(tiny_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "model"
    return finetune(tiny_encoder, make_pairs(), out, epochs=4, batch_size=16, learning_rate=1e-3, progress=False,
                    held_out=0.25)


def test_finetuning_improves_held_out_retrieval(tuned):
    assert set(tuned.before) == {"recall@10", "ndcg@10", "mrr@10"} and tuned.held_out == 60
    assert tuned.after["mrr@10"] >= tuned.before["mrr@10"] + 0.1, (tuned.before, tuned.after)
    assert tuned.after["ndcg@10"] > tuned.before["ndcg@10"]


def test_the_result_is_a_new_space_that_names_its_origin(tuned, tiny_encoder):
    new = tuned.encoder.spec
    assert new.fingerprint != tiny_encoder.spec.fingerprint and new.weights_sha256 != tiny_encoder.spec.weights_sha256
    training = new.metadata["training"]
    assert training["base_fingerprint"] == tiny_encoder.spec.fingerprint
    assert training["base_weights_sha256"] == tiny_encoder.spec.weights_sha256
    assert training["train_pairs"] == tuned.train_pairs == 180
    assert training["settings"]["loss"] == "mnrl"
    files = {p.name for p in tuned.path.iterdir()}
    assert "model.safetensors" in files and not {f for f in files if f.endswith((".bin", ".pt", ".pkl"))}
    again = ls.SentenceTransformerEncoder(str(tuned.path), precision="fp32")
    assert again.spec.fingerprint == new.fingerprint
    with pytest.raises(ls.SpaceMismatchError):
        tiny_encoder.spec.require_same(new, "test")


def test_a_collection_migrates_to_the_new_space(tuned, tiny_encoder):
    st = ls.open_store(":memory:")
    col = st.create_collection("docs", encoder=tiny_encoder)
    pairs = make_pairs(60, seed=5)
    col.add([f"p{i}" for i in range(len(pairs))], documents=[p for _, p in pairs])
    report = col.migrate(tuned.encoder, queries=20)
    assert report.switched and report.records == 60
    assert st.get_collection("docs").spec.fingerprint == tuned.encoder.spec.fingerprint


def test_matryoshka_scores_every_dimension(tiny_encoder, tmp_path):
    res = finetune(tiny_encoder, make_pairs(160, seed=1), tmp_path / "m", loss="matryoshka",
                   matryoshka_dims=[32, 16, 8], epochs=3, batch_size=16, learning_rate=1e-3, progress=False,
                   held_out=0.25)
    assert {"recall@10@16", "mrr@10@8", "ndcg@10@16"} <= set(res.after) and "recall@10@32" not in res.after
    assert res.after["mrr@10@8"] > res.before["mrr@10@8"]
    assert res.encoder.spec.metadata["training"]["settings"]["matryoshka_dims"] == [16, 8]


def test_labelled_texts_make_setfit_pairs(tiny_encoder, tmp_path):
    texts = [f"{w} {v}" for w in ("cat", "dog", "kitten", "stock", "market", "python") for v in ("sat", "mat", "rose")]
    labels = ["animal" if t.split()[0] in ("cat", "dog", "kitten") else "other" for t in texts]
    pairs = pairs_from_labels(texts, labels, per_text=2, seed=0)
    assert len(pairs) == 4 * len(texts)
    for a, b, y in pairs:
        assert a != b and y == float(labels[texts.index(a)] == labels[texts.index(b)])
    res = finetune(tiny_encoder, pairs, tmp_path / "c", loss="cosine", batch_size=8, progress=False, held_out=0.0)
    assert res.train_pairs == len(pairs) and res.before == {}
    with pytest.raises(ls.InvalidInputError, match="two labels"):
        pairs_from_labels(texts, ["x"] * len(texts))


TOPICS = {"animal": ("cat", "dog", "kitten"), "market": ("stock", "market", "fell"),
          "code": ("python", "code", "function")}
FILLER = [w for w in CONTENT if not any(w in ws for ws in TOPICS.values())]


def labelled_texts(n: int, seed: int) -> list[tuple[str, str]]:
    """A topic word hidden among five filler words: the label is in one token of six."""
    rng = random.Random(seed)
    rows = set()
    while len(rows) < n:
        label = rng.choice(sorted(TOPICS))
        words = rng.sample(FILLER, 5)
        words.insert(rng.randrange(6), rng.choice(TOPICS[label]))
        rows.add((" ".join(words), label))
    return sorted(rows)


def test_labels_train_a_space_for_classification(tiny_encoder, tmp_path):
    rows = labelled_texts(240, seed=0)
    res = finetune(tiny_encoder, rows, tmp_path / "t", loss="triplet", epochs=3, batch_size=24, learning_rate=1e-3,
                   progress=False, held_out=0.25)
    assert set(res.before) == {"knn_accuracy", "probe_accuracy"} and res.held_out == 60
    assert res.after["knn_accuracy"] >= res.before["knn_accuracy"] + 0.15, (res.before, res.after)
    # the saved model is the trained one: on new texts it beats the base model as well
    fresh = [r for r in labelled_texts(120, seed=9) if r not in set(rows)]
    base = label_scores(tiny_encoder, rows, fresh)
    again = label_scores(ls.SentenceTransformerEncoder(str(res.path), precision="fp32"), rows, fresh)
    assert again["knn_accuracy"] >= base["knn_accuracy"] + 0.05, (res.before, res.after, base, again)
    assert res.encoder.spec.metadata["training"]["settings"]["loss"] == "triplet"
    st = ls.open_store(":memory:")
    col = st.create_collection("c", encoder=tiny_encoder)
    col.add(["a", "b", "c"], documents=["cat sat", "stock fell", "x"], metadatas=[{"y": "animal"}, {"y": 3}, {"z": 1}])
    assert labelled_from_collection(col, "y") == [("cat sat", "animal"), ("stock fell", 3)]
    with pytest.raises(ls.InvalidInputError, match=r"keys present: \['y', 'z'\]"):
        labelled_from_collection(col, "label")


@pytest.mark.parametrize("rows,match", [
    ([("a b", "x"), ("", "y")], "non-empty text"),
    ([("a b", "x"), ("c d", None)], "string or an integer"),
    ([("a b", "x"), ("c d", True)], "string or an integer"),
    ([("a b", "x"), ("c d", "x")], "two labels"),
    ([("a b", "x"), ("a b", "x"), ("c d", "y")], "duplicate"),
])
def test_bad_labelled_rows_are_refused(tiny_encoder, tmp_path, rows, match):
    with pytest.raises(ls.InvalidInputError, match=match):
        finetune(tiny_encoder, rows, tmp_path / "out", loss="triplet", batch_size=2, progress=False)
    assert not (tmp_path / "out").exists()


def test_pairs_from_files_and_collections(tmp_path, tiny_encoder):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"q": q, "p": p}) + "\n" for q, p in make_pairs(5)))
    assert read_pairs(path, query_field="q", passage_field="p") == make_pairs(5)
    st = ls.open_store(":memory:")
    col = st.create_collection("c", encoder=tiny_encoder)
    col.add(["a", "b", "c"], documents=["the cat sat", "the dog", "data file"],
            metadatas=[{"q": "cat"}, {}, {"q": "file"}])
    assert sorted(pairs_from_collection(col, "q")) == [("cat", "the cat sat"), ("file", "data file")]
    with pytest.raises(ls.InvalidInputError, match="metadata"):
        pairs_from_collection(col, "nothing")
    assert data_sha256(make_pairs(5)) == data_sha256(list(make_pairs(5))) != data_sha256(make_pairs(6))


@pytest.mark.parametrize("pairs,kw,match", [
    ([("", "x")] + make_pairs(40), {}, "empty"),
    ([("a b", "   ")] + make_pairs(40), {}, "empty"),
    (make_pairs(40) + make_pairs(40)[:1], {}, "duplicate"),
    (make_pairs(10), {}, "fewer than one batch"),
    (make_pairs(40), {"loss": "contrastive"}, "loss"),
    (make_pairs(40), {"eval_against": "train"}, "eval_against"),
    (make_pairs(40), {"matryoshka_dims": [8]}, "goes with loss='matryoshka'"),
    (make_pairs(40), {"loss": "matryoshka", "matryoshka_dims": [64]}, r"\[1, 32\]"),
    (make_pairs(40), {"held_out": 1.5}, "held_out"),
    (make_pairs(40), {"learning_rate": -1.0}, "learning_rate"),
    ([("a", "b", "c")] + make_pairs(40), {}, "hard negative or none"),
])
def test_bad_input_is_refused_before_training(tiny_encoder, tmp_path, pairs, kw, match):
    with pytest.raises(ls.InvalidInputError, match=match):
        finetune(tiny_encoder, pairs, tmp_path / "out", batch_size=16, progress=False, **kw)
    assert not (tmp_path / "out").exists()


def test_only_sentence_transformers_models_are_fine_tuned(tiny_bert, tiny_encoder, tmp_path):
    with pytest.raises(ls.InvalidInputError, match="not a sentence-transformers model"):
        finetune(str(tiny_bert), make_pairs(40), tmp_path / "a", batch_size=16)
    bare = ls.TransformersEncoder(str(tiny_bert))
    with pytest.raises(ls.InvalidInputError, match="sentence-transformers encoder"):
        finetune(bare, make_pairs(40), tmp_path / "b", batch_size=16)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ls.InvalidInputError, match="not an empty folder"):
        finetune(tiny_encoder, make_pairs(40), tmp_path / "full", batch_size=16)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_finetune_then_migrate(tiny_encoder, tmp_path):
    store = tmp_path / "store"
    with ls.open_store(store) as st:
        col = st.create_collection("docs", encoder=tiny_encoder)
        pairs = make_pairs(120, seed=3)
        col.add([f"p{i}" for i in range(len(pairs))], documents=[p for _, p in pairs],
                metadatas=[{"question": q} for q, _ in pairs])
    out = tmp_path / "tuned"
    res = json.loads(run("finetune", store, "docs", "-o", out, "--query-field", "question", "--epochs", "2",
                         "--batch-size", "16", "--learning-rate", "0.001", "--json").stdout)
    assert res["train_pairs"] == 102 and res["after"]["mrr@10"] > res["before"]["mrr@10"]
    assert res["migrate"].endswith(f"--model {out}")
    moved = json.loads(run("collection", "migrate", store, "docs", "--model", out, "--queries", "10",
                           "--json").stdout)
    assert moved["switched"] and moved["new_fingerprint"] == res["fingerprint"]
    proc = run("finetune", store, "docs", "-o", tmp_path / "again", "--query-field", "nothing", check=False)
    assert proc.returncode == 2 and "metadata" in proc.stderr and not (tmp_path / "again").exists()


def test_cli_finetune_from_labels(tiny_encoder, tmp_path):
    store = tmp_path / "store"
    rows = labelled_texts(96, seed=4)
    with ls.open_store(store) as st:
        col = st.create_collection("docs", encoder=tiny_encoder)
        col.add([f"r{i}" for i in range(len(rows))], documents=[t for t, _ in rows],
                metadatas=[{"topic": y} for _, y in rows])
    res = json.loads(run("finetune", store, "docs", "-o", tmp_path / "t", "--label-key", "topic", "--epochs", "2",
                         "--batch-size", "16", "--learning-rate", "0.001", "--held-out", "0.25", "--json").stdout)
    assert res["settings"]["loss"] == "triplet" and res["train_pairs"] == 72 and res["held_out"] == 24
    assert set(res["after"]) == {"knn_accuracy", "probe_accuracy"}
    bad = run("finetune", store, "docs", "-o", tmp_path / "u", "--label-key", "topic", "--loss", "mnrl", check=False)
    assert bad.returncode != 0 and "--loss triplet" in bad.stderr
