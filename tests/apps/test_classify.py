"""kNN vote, linear probe and zero-shot labels on real data (digits, stdlib docstrings)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import latentspace as ls
from latentspace.apps.classify import LinearProbe, ZeroShotClassifier, knn_classify

from .conftest import DIGITS_SPACE


def test_a_record_s_label_key_must_be_a_valid_name(digits_col):
    with pytest.raises(ls.InvalidInputError, match="metadata key"):
        knn_classify(digits_col, "bad key", vectors=np.zeros((1, 64), np.float32), space=DIGITS_SPACE)


def test_knn_vote_on_held_out_digits(digits_col):
    test = digits_col.get(where={"split": "test"}, include_vectors=True)
    preds = knn_classify(digits_col, "label", vectors=np.stack([r.vector for r in test]), space=DIGITS_SPACE,
                         k=5, where={"split": "train"})
    acc = np.mean([p.label == r.metadata["label"] for p, r in zip(preds, test)])
    assert acc >= 0.95, acc
    assert all(0 < p.confidence <= 1 and abs(sum(p.scores.values()) - 1) < 1e-9 for p in preds)


def test_knn_refuses_vectors_of_another_space(digits_col):
    other = ls.SpaceSpec(model="sklearn/other", dim=64, normalize=False, metric="l2", modality="vector")
    with pytest.raises(ls.SpaceMismatchError, match="model"):
        knn_classify(digits_col, vectors=np.zeros((1, 64), np.float32), space=other)


def test_knn_with_no_labelled_records(digits_col):
    with pytest.raises(ls.InvalidInputError, match=r"no records with metadata 'topic'.*keys present: label, split.*"
                                                   r"--label-key"):
        knn_classify(digits_col, "topic", vectors=np.zeros((1, 64), np.float32), space=DIGITS_SPACE)


def test_probe_without_labels_names_the_keys_present(digits_col):
    with pytest.raises(ls.InvalidInputError, match=r"LinearProbe.fit found no records.*keys present: label, split"):
        LinearProbe("topic").fit(digits_col)


def test_probe_fits_saves_and_loads_without_pickle(digits_col, tmp_path):
    probe = LinearProbe("label").fit(digits_col, where={"split": "train"})
    acc = probe.score(digits_col, where={"split": "test"})
    assert acc >= 0.93, acc
    folder = probe.save(tmp_path / "probe")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "probe.safetensors"]
    again = LinearProbe.load(folder)
    test = digits_col.get(where={"split": "test"}, include_vectors=True)
    x = np.stack([r.vector for r in test])
    np.testing.assert_allclose(again.predict_proba(x, space=DIGITS_SPACE), probe.predict_proba(x, space=DIGITS_SPACE))
    assert again.classes_ == list(range(10))
    preds = again.predict_collection(digits_col, where={"split": "test"})
    assert len(preds) == len(test) and np.mean([preds[r.id].label == r.metadata["label"] for r in test]) == acc
    written = again.predict_collection(digits_col, where={"split": "test"}, write_to="predicted")
    assert {r.id: r.metadata["predicted"] for r in digits_col.get(where={"split": "test"})} == {
        i: p.label for i, p in written.items()}
    assert digits_col.count({"predicted": {"$exists": True}}) == len(test)


def test_probe_binary_and_string_labels(store, real_docs, default_enc):
    from ..corpus import split

    texts, vecs, _, _ = real_docs
    # the package each paragraph comes from, for two packages of about equal size
    pick = [i for i, r in enumerate(split()[0]) if r["package"] in ("asyncio", "email")]
    lab = [split()[0][i]["package"] for i in pick]
    col = store.create_collection("docs", space=default_enc.spec)
    col.add([f"p{i}" for i in pick], documents=[texts[i] for i in pick], vectors=vecs[pick],
            metadatas=[{"pkg": v, "split": "test" if n % 5 == 0 else "train"} for n, v in enumerate(lab)])
    probe = LinearProbe("pkg", C=10.0).fit(col, where={"split": "train"})
    assert probe.classes_ == ["asyncio", "email"]
    majority = max(lab.count("asyncio"), lab.count("email")) / len(lab)
    assert 1 - probe.score(col, where={"split": "test"}) < (1 - majority) / 2  # half the majority guess's errors


def test_probe_refuses_other_spaces_and_bad_files(digits_col, tmp_path):
    with pytest.raises(ls.NotFittedError):
        LinearProbe().predict(np.zeros((1, 64)), space=DIGITS_SPACE)
    probe = LinearProbe("label").fit(digits_col)
    other = ls.SpaceSpec(model="sklearn/load_digits-pixels", dim=64, normalize=True, metric="l2", modality="vector")
    with pytest.raises(ls.SpaceMismatchError, match="normalize: False != True"):
        probe.predict(np.zeros((1, 64), np.float32) + 0.1, space=other)
    with pytest.raises(ls.InvalidInputError, match="64"):
        probe.predict(np.zeros((1, 8), np.float32), space=DIGITS_SPACE)
    with pytest.raises(ls.InvalidInputError, match="space="):
        probe.predict(np.zeros((1, 64), np.float32), space=None)
    folder = probe.save(tmp_path / "p")
    # a truncated weights file, mismatched shapes, a foreign config, a pickle next to it
    data = (folder / "probe.safetensors").read_bytes()
    (folder / "probe.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ls.InvalidInputError, match="unreadable"):
        LinearProbe.load(folder)
    probe.save(folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "classes": cfg["classes"][:5]}))
    with pytest.raises(ls.InvalidInputError, match="do not match"):
        LinearProbe.load(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "kind": "sklearn.LogisticRegression"}))
    with pytest.raises(ls.InvalidInputError, match="not a LinearProbe"):
        LinearProbe.load(folder)
    with pytest.raises(ls.NotFoundError):
        LinearProbe.load(tmp_path / "nowhere")


def test_probe_fit_needs_two_classes(digits_col):
    with pytest.raises(ls.InvalidInputError, match="at least 2 classes"):
        LinearProbe("label").fit(digits_col, where={"label": 3})


@pytest.fixture(scope="module")
def topics():
    from ..corpus import topics

    return topics(40)  # the committed corpus: 480 paragraphs of 12 packages


def test_zero_shot_on_docstrings_labelled_by_package(default_enc, topics):
    texts, labels, descriptions = topics
    zs = ZeroShotClassifier(default_enc, descriptions)
    preds = zs.predict(texts)
    acc = np.mean([p.label == y for p, y in zip(preds, labels)])
    assert acc >= 0.6, acc  # 12 labels: chance is 0.08
    assert set(preds[0].scores) == set(descriptions)


def test_zero_shot_on_a_collection_writes_labels(store, default_enc, topics):
    texts, labels, descriptions = topics
    col = store.create_collection("t", encoder=default_enc)
    col.add([f"t{i}" for i in range(len(texts))], documents=texts)
    zs = ZeroShotClassifier(default_enc, descriptions)
    preds = zs.predict_collection(col, write_to="topic")
    direct = zs.predict(texts)
    assert [preds[f"t{i}"].label for i in range(len(texts))] == [p.label for p in direct]
    assert col.count({"topic": "asyncio"}) == sum(p.label == "asyncio" for p in direct)


def test_zero_shot_refuses_a_collection_of_another_space(store, default_enc, tiny_encoder, topics):
    col = store.create_collection("t", encoder=tiny_encoder)
    zs = ZeroShotClassifier(default_enc, topics[2])
    with pytest.raises(ls.SpaceMismatchError):
        zs.predict_collection(col)
    with pytest.raises(ls.InvalidInputError, match="at least 2 labels"):
        ZeroShotClassifier(default_enc, ["only"])
    with pytest.raises(ls.InvalidInputError, match="template"):
        ZeroShotClassifier(default_enc, ["a", "b"], template="no slot")
