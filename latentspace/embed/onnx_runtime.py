"""An ONNX Runtime copy of a sentence-transformers model: the fast way to embed a few texts.

A one-shot CLI search spends its time loading libraries, not embedding: measured here,
``import sentence_transformers`` alone takes ~6.5 s, while onnxruntime and tokenizers
load, read an exported MiniLM and embed a query in ~0.45 s. So a sentence-transformers
model (transformer, pooling and any later modules, traced as one graph) is exported once
with torch's exporter, checked against the sentence-transformers fp32 output on the
calibration texts (cosine >= AGREEMENT_BAR, else refused), and cached under
``cache_dir()/onnx/<key>/``: ``model.onnx``, ``tokenizer.json`` and ``meta.json`` (the
export's sha256, the agreement, and the facts the SpaceSpec is built from). The key is
the model's weights sha256 and the modules kept, so a changed model is a new export; a
cached file that fails its sha256 is exported again. The copy computes in fp32: its
vectors are the same space as the torch model's (compute precision is not geometry).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ModelLoadError
from ..core.io import cache_dir, read_json, sha256_file, write_json
from . import _loading
from .precision import AGREEMENT_BAR, CALIBRATION_TEXTS, min_cosine

EXPORT_FORMAT = 1
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_key(weights_sha256: str, modules: list[str]) -> str:
    """The cache key of one export: the weights and the module list traced."""
    text = f"{EXPORT_FORMAT}|{weights_sha256}|{','.join(modules)}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def export_folder(key: str) -> Path:
    return cache_dir() / "onnx" / key


class OnnxTextModel:
    """A cached export: tokenizer (``tokenizers``) and graph (``onnxruntime``), no torch."""

    def __init__(self, folder: Path, threads: int | None = None):
        ort = _loading.require("onnxruntime", "embed")
        from tokenizers import Tokenizer

        self.folder = folder
        meta = read_json(folder / "meta.json")
        if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
            raise ModelLoadError(f"{folder / 'meta.json'} is not an export of format {EXPORT_FORMAT}.")
        got = sha256_file(folder / "model.onnx")
        if got != meta.get("onnx_sha256"):
            raise ModelLoadError(f"{folder / 'model.onnx'} has sha256 {got}, its meta.json says "
                                 f"{meta.get('onnx_sha256')}: the cached export is damaged.")
        self.meta = meta
        self.facts: dict[str, Any] = meta["facts"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(self.facts["max_seq_length"]))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own error types for a bad graph
            raise ModelLoadError(f"onnxruntime could not load {folder / 'model.onnx'}: {exc}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]

    def _prepare(self, texts: list[str]) -> list[str]:
        texts = [t.strip() for t in texts]  # as sentence-transformers' Transformer.tokenize
        return [t.lower() for t in texts] if self.facts.get("do_lower_case") else texts

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        encs = self.tokenizer.encode_batch(self._prepare(texts))
        out = np.empty((len(texts), int(self.facts["native_dim"])), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encs[i].ids))  # little padding per batch
        pad = int(self.facts["pad_id"])
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encs[i].ids) for i in idx)
            feeds = {name: np.full((len(idx), width), pad if name == "input_ids" else 0, dtype=np.int64)
                     for name in self.input_names}
            for row, i in enumerate(idx):
                e, n = encs[i], len(encs[i].ids)
                feeds["input_ids"][row, :n] = e.ids
                if "attention_mask" in feeds:
                    feeds["attention_mask"][row, :n] = 1
                if "token_type_ids" in feeds:
                    feeds["token_type_ids"][row, :n] = e.type_ids
            out[idx] = self.session.run(None, feeds)[0]
        return out

    def count_tokens(self, texts: list[str]) -> list[int]:
        tok = self.tokenizer
        tok.no_truncation()
        try:
            return [len(e.ids) for e in tok.encode_batch(self._prepare(list(texts)))]
        finally:
            tok.enable_truncation(int(self.facts["max_seq_length"]))


def load_cached(key: str, threads: int | None = None) -> OnnxTextModel | None:
    """The cached export under ``key``, or None when there is none or it is damaged."""
    folder = export_folder(key)
    if not (folder / "meta.json").is_file():
        return None
    try:
        return OnnxTextModel(folder, threads)
    except (ModelLoadError, OSError, ValueError, KeyError, TypeError):
        return None  # damaged: the caller exports it again


def export(st_model, key: str, facts: dict[str, Any], threads: int | None = None) -> OnnxTextModel:
    """Trace ``st_model`` (a SentenceTransformer) to ONNX, check it agrees with the model in
    fp32, and cache it under ``key``. Raises ModelLoadError when it cannot be exported or
    disagrees."""
    torch = _loading.require("torch", "embed")
    _loading.require("onnx", "embed")
    tokenizer = getattr(st_model, "tokenizer", None)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelLoadError("Only models with a fast (Rust) tokenizer can be exported to ONNX.")
    sample = st_model.tokenize(["an example sentence", "a second, longer example sentence to pad"])
    names = [n for n in INPUTS if n in sample]

    class Graph(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(dict(zip(names, tensors)))["sentence_embedding"]

    final = export_folder(key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on Python-level branches
            axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"embedding": {0: "batch"}}
            torch.onnx.export(Graph(st_model).eval(), tuple(sample[n] for n in names), str(tmp / "model.onnx"),
                              input_names=names, output_names=["embedding"], dynamic_axes=axes, opset_version=17,
                              dynamo=False)
        backend.save(str(tmp / "tokenizer.json"))
        ref = st_model.encode(CALIBRATION_TEXTS, convert_to_numpy=True, normalize_embeddings=False,
                              show_progress_bar=False, batch_size=len(CALIBRATION_TEXTS))
        meta = {"format": EXPORT_FORMAT, "onnx_sha256": sha256_file(tmp / "model.onnx"), "facts": facts,
                "torch": torch.__version__}
        write_json(tmp / "meta.json", meta)
        copy = OnnxTextModel(tmp, threads)
        agreement = round(min_cosine(ref, copy.encode(CALIBRATION_TEXTS)), 7)
        if agreement < AGREEMENT_BAR:
            raise ModelLoadError(f"The ONNX export agrees with the model only at cosine {agreement} "
                                 f"(< {AGREEMENT_BAR}); use runtime='torch'.")
        meta["calibration_min_cosine"] = agreement
        write_json(tmp / "meta.json", meta)
        shutil.rmtree(final, ignore_errors=True)
        try:
            tmp.rename(final)
        except OSError:  # another process exported it meanwhile: use theirs
            pass
    except ModelLoadError:
        raise
    except Exception as exc:  # the exporter raises many kinds; the user needs one
        raise ModelLoadError(f"Could not export the model to ONNX: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    model = load_cached(key, threads)
    if model is None:
        raise ModelLoadError(f"The ONNX export in {final} could not be read back.")
    return model
