"""Matryoshka truncation as its own space, and the funnel search on real MiniLM vectors."""

from __future__ import annotations

import numpy as np
import pytest

import latentspace as ls
from latentspace.apps.matryoshka import MatryoshkaFunnel
from latentspace.core.frozen import FrozenDict
from latentspace.embed.truncated import TruncatedEncoder, truncate


def test_truncated_encoder_is_the_truncate_dim_space(tiny_st, tiny_encoder):
    cut = TruncatedEncoder(tiny_encoder, 16)
    direct = ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32", truncate_dim=16)
    assert cut.spec.fingerprint == direct.spec.fingerprint != tiny_encoder.spec.fingerprint
    texts = ["the cat sat on the mat", "stock market fell sharply"]
    np.testing.assert_allclose(cut.encode_documents(texts), direct.encode_documents(texts), atol=1e-6)
    np.testing.assert_allclose(cut.encode_documents(texts), truncate(tiny_encoder.encode_documents(texts),
                                                                     tiny_encoder.spec, 16), atol=1e-6)
    full = tiny_encoder.encode_documents(texts)
    kept = full.copy()
    truncate(full[:1], tiny_encoder.spec, 16)
    np.testing.assert_array_equal(full, kept)  # the input is never changed in place
    again = ls.encoder_from_config(cut.config())
    assert again.spec.fingerprint == cut.spec.fingerprint
    with pytest.raises(ls.InvalidInputError, match="dim"):
        TruncatedEncoder(tiny_encoder, 33)


def test_a_truncated_space_refuses_full_vectors(store, tiny_encoder):
    f = MatryoshkaFunnel.create(store, "docs", tiny_encoder, 8)
    f.add(["a", "b"], ["the cat sat", "stock market rose"])
    full_q = tiny_encoder.encode_queries(["cat"])[0]
    with pytest.raises(ls.SpaceMismatchError, match="truncate_dim: 8 != None"):
        f.coarse.search(vector=full_q[:8] / np.linalg.norm(full_q[:8]), space=tiny_encoder.spec)
    assert [h.id for h in f.search("the cat sat", k=1)] == ["a"]
    # reopened from the store alone, the coarse collection rebuilds its truncated encoder
    again = MatryoshkaFunnel.open(store, "docs", 8)
    assert again.coarse.encoder.spec.fingerprint == f.coarse.spec.fingerprint
    assert [h.id for h in again.search("the cat sat", k=1)] == ["a"]


def test_funnel_needs_a_truncation_of_the_same_model(store, tiny_encoder, default_enc):
    a = store.create_collection("full", encoder=tiny_encoder)
    b = store.create_collection("small", encoder=TruncatedEncoder(default_enc, 16))
    with pytest.raises(ls.SpaceMismatchError, match="model"):
        MatryoshkaFunnel(b, a)
    with pytest.raises(ls.SpaceMismatchError, match="truncation"):
        MatryoshkaFunnel(a, a)


def test_funnel_recall_on_real_vectors(store, real_docs, default_enc):
    texts, vecs, _, qvecs = real_docs
    n = 8_000
    f = MatryoshkaFunnel.create(store, "docs", default_enc, 128)
    f.add([f"p{i}" for i in range(n)], texts[:n], vectors=vecs[:n], space=default_enc.spec)
    q = qvecs[:200]
    truth = np.argsort(-(q @ vecs[:n].T), axis=1)[:, :10]
    qc = truncate(q, default_enc.spec, 128)
    coarse_only = f.coarse.search_batch(vectors=qc, space=f.coarse.spec, k=10, mode="exact")

    def recall(results):
        return np.mean([len({h.id for h in hits} & {f"p{i}" for i in t}) / 10 for hits, t in zip(results, truth)])

    funnel = [f.search(vector=v, space=default_enc.spec, k=10, candidates=100) for v in q]
    r_coarse, r_funnel = recall(coarse_only), recall(funnel)
    # the re-rank closes most of what truncation lost, whatever the data's own coarse recall
    assert r_funnel >= 0.9 and (1 - r_funnel) <= 0.5 * (1 - r_coarse), (r_coarse, r_funnel)
    # the funnel's scores are the full vectors' cosines
    top = funnel[0][0]
    np.testing.assert_allclose(top.score, float(vecs[int(top.id[1:])] @ q[0]), atol=1e-5)


def test_bad_input(store, tiny_encoder):
    f = MatryoshkaFunnel.create(store, "docs", tiny_encoder, 8)
    f.add(["a"], ["the cat"])
    with pytest.raises(ls.InvalidInputError, match="candidates"):
        f.search("cat", k=10, candidates=5)
    with pytest.raises(ls.InvalidInputError, match="non-empty"):
        f.search("")
    with pytest.raises(ls.AlreadyExistsError):
        MatryoshkaFunnel.create(store, "docs", tiny_encoder, 8)
    assert len(f) == 1


def test_build_from_an_existing_collection_reuses_its_vectors(store, real_docs, default_enc):
    texts, vecs, _, qvecs = real_docs
    full = store.create_collection("docs", encoder=default_enc)
    full.add([f"p{i}" for i in range(2000)], documents=texts[:2000], vectors=vecs[:2000], space=default_enc.spec)
    funnel = MatryoshkaFunnel.build(full, 64)
    assert funnel.coarse.name == "docs-d64" and len(funnel.coarse) == 2000
    np.testing.assert_allclose(funnel.coarse.get(ids=["p7"], include_vectors=True)[0].vector,
                               truncate(vecs[7:8], default_enc.spec, 64)[0], atol=1e-6)
    full.delete(ids=["p7"])
    full.add(["new"], documents=["a new paragraph"])
    MatryoshkaFunnel.build(full, 64)  # brought up to date
    assert {"new"} <= {r.id for r in funnel.coarse.get()} and not funnel.coarse.get(ids=["p7"])
    hits = funnel.search(vector=qvecs[0], space=default_enc.spec, k=5)
    exact = full.search(vector=qvecs[0], space=default_enc.spec, k=5, mode="exact")
    assert hits[0].id == exact[0].id
    assert all(isinstance(h.metadata, FrozenDict) for h in hits + exact)  # read-only like every hit
    raw = store.create_collection("raw", space=ls.SpaceSpec(model="test/x", dim=8))
    raw.add(["a", "b"], vectors=np.eye(8, dtype=np.float32)[:2])
    assert MatryoshkaFunnel.build(raw, 4).coarse.spec.truncate_dim == 4
    with pytest.raises(ls.InvalidInputError, match="dim"):
        MatryoshkaFunnel.build(raw, 8)
