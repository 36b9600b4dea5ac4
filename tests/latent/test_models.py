"""Latent models: configs, shapes, saving, training guards (first increment of the latent half)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import latentspace as ls
from latentspace.latent import LatentConfig, LatentModel, evaluate, load_model, save_model, train


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[:, None], d.target


@pytest.mark.parametrize("bad", [
    {"kind": "gan"}, {"arch": "transformer"}, {"likelihood": "poisson"}, {"latent_dim": 0}, {"hidden": ()},
    {"input_shape": (8, 8), "arch": "conv"}, {"beta": 4.0}, {"input_shape": (0,)},
])
def test_config_rejects_unknown_options(bad):
    kwargs = {"input_shape": (64,), **bad}
    with pytest.raises(ls.InvalidInputError):
        LatentConfig(**kwargs)
    with pytest.raises(ls.InvalidInputError, match="Unknown LatentConfig option"):
        LatentConfig.from_dict({"input_shape": [64], "colour": "red"})


@pytest.mark.parametrize("arch,kind", [("mlp", "ae"), ("mlp", "vae"), ("conv", "vae"), ("conv", "beta_vae")])
def test_shapes_and_interface(digits, arch, kind):
    x, _ = digits
    cfg = LatentConfig(input_shape=(1, 8, 8), latent_dim=6, arch=arch, kind=kind, hidden=(64, 32),
                       beta=4.0 if kind == "beta_vae" else 1.0)
    m = LatentModel(cfg)
    post = m.encode(x[:10])
    assert post.mean.shape == (10, 6) and (post.logvar is None) == (kind == "ae")
    assert m.decode(post.sample()).shape == (10, 1, 8, 8)
    r = m.reconstruct(x[:10])
    assert r.shape == (10, 1, 8, 8) and float(r.min()) >= 0 and float(r.max()) <= 1  # Bernoulli means
    assert m.sample(4, seed=1).shape == (4, 1, 8, 8)
    torch.testing.assert_close(m.sample(4, seed=1), m.sample(4, seed=1))
    assert m.reconstruct(x[:10].reshape(10, 64)).shape == (10, 1, 8, 8)  # flat images accepted
    spec = m.spec
    assert spec.dim == 6 and spec.modality == "latent" and spec.weights_sha256


def test_bad_inputs(digits):
    x, _ = digits
    m = LatentModel(LatentConfig(input_shape=(1, 8, 8), latent_dim=4, hidden=(32,)))
    with pytest.raises(ls.InvalidInputError, match="expected"):
        m.encode(np.zeros((3, 3, 8, 8)))
    with pytest.raises(ls.InvalidInputError, match="4 dimensions"):
        m.decode(np.zeros((2, 5)))
    with pytest.raises(ls.InvalidInputError, match=r"\[0, 1\]"):
        train(m, x * 16, epochs=1)
    bad = x[:20].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ls.InvalidInputError, match="NaN"):
        m.encode(bad)


def test_training_learns_and_is_repeatable(digits):
    x, _ = digits
    cfg = LatentConfig(input_shape=(1, 8, 8), latent_dim=8, hidden=(128, 64))
    before = evaluate(LatentModel(cfg), x[1500:])
    torch.manual_seed(0)
    a = LatentModel(cfg)
    torch.manual_seed(0)
    b = LatentModel(cfg)
    ra = train(a, x[:1500], epochs=8, seed=3)
    rb = train(b, x[:1500], epochs=8, seed=3)
    assert ra.history == rb.history
    after = evaluate(a, x[1500:])
    assert after["neg_elbo"] < before["neg_elbo"] - 5
    assert ra.best_epoch >= 1 and ra.device == "cpu"


def test_early_stopping(digits):
    x, _ = digits
    m = LatentModel(LatentConfig(input_shape=(1, 8, 8), latent_dim=2, hidden=(16,)))
    rep = train(m, x[:300], epochs=500, patience=2, lr=0.05, seed=0)
    assert rep.stopped_early and rep.epochs < 500


def test_nan_guard_keeps_last_good_weights(digits, monkeypatch):
    x, _ = digits
    m = LatentModel(LatentConfig(input_shape=(1, 8, 8), latent_dim=4, hidden=(32,)))
    train(m, x[:200], epochs=2, seed=0)
    real = m.loss_terms
    calls = {"n": 0}

    def poisoned(xb, generator=None):
        calls["n"] += 1
        out = real(xb, generator)
        if calls["n"] > 3:
            out["reconstruction"] = out["reconstruction"] * float("nan")
        return out

    monkeypatch.setattr(m, "loss_terms", poisoned)
    with pytest.raises(ls.TrainingDivergedError, match="keeps the weights"):
        train(m, x[:200], epochs=3, seed=0, val_fraction=0.0)
    for k, v in m.state_dict().items():
        assert torch.isfinite(v).all()


def test_save_load_roundtrip_and_refusals(tmp_path, digits):
    x, _ = digits
    m = LatentModel(LatentConfig(input_shape=(1, 8, 8), latent_dim=4, arch="conv", hidden=(32,)))
    folder = save_model(m, tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    back = load_model(folder)
    torch.testing.assert_close(back.reconstruct(x[:5]), m.reconstruct(x[:5]))
    assert back.spec.fingerprint == m.spec.fingerprint
    # a pickle file in the folder
    (folder / "extra.pt").write_bytes(b"\x80\x04")
    with pytest.raises(ls.ModelLoadError, match="pickle"):
        load_model(folder)
    (folder / "extra.pt").unlink()
    # an unknown option in the config
    cfg = json.loads((folder / "config.json").read_text())
    cfg["config"]["colour"] = "red"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ls.ModelLoadError, match="Unknown"):
        load_model(folder)
    # weights whose shapes do not fit the config
    cfg["config"].pop("colour")
    cfg["config"]["latent_dim"] = 5
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ls.ModelLoadError, match="do not fit"):
        load_model(folder)
    cfg["config"]["latent_dim"] = 4
    (folder / "config.json").write_text(json.dumps(cfg))
    raw = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ls.ModelLoadError, match="truncated or corrupt"):
        load_model(folder)
    with pytest.raises(ls.NotFoundError):
        load_model(tmp_path / "missing")


def test_latents_live_in_their_own_space(tmp_path, digits):
    x, _ = digits
    m1 = LatentModel(LatentConfig(input_shape=(1, 8, 8), latent_dim=4, hidden=(32,), name="digits-a"))
    m2 = LatentModel(LatentConfig(input_shape=(1, 8, 8), latent_dim=4, hidden=(32,), name="digits-a"))
    assert m1.spec.fingerprint != m2.spec.fingerprint  # same config, other weights: another space
    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("z", space=m1.spec)
    z1 = m1.latents(x[:50])
    col.add([str(i) for i in range(50)], vectors=z1, space=m1.spec)
    assert col.search(vector=z1[3], space=m1.spec, k=1)[0].id == "3"
    with pytest.raises(ls.SpaceMismatchError, match="weights_sha256"):
        col.search(vector=m2.latents(x[:1])[0], space=m2.spec, k=1)
    st.close()


def test_latents_to_collection_with_cache_and_provenance(tmp_path, digits):
    from latentspace.latent import LatentCache, to_collection

    x, y = digits
    m = LatentModel(LatentConfig(input_shape=(1, 8, 8), latent_dim=4, hidden=(32,), name="digits"))
    cache = LatentCache(tmp_path / "cache.db")
    st = ls.open_store(tmp_path / "s")
    col = to_collection(m, x[:300], st, "z", ids=[f"d{i}" for i in range(300)],
                        metadatas=[{"label": int(v)} for v in y[:300]], cache=cache)
    assert (cache.hits, cache.misses) == (0, 300)
    to_collection(m, x[:400], st, "z", ids=[f"d{i}" for i in range(400)], cache=cache)
    assert (cache.hits, cache.misses) == (300, 400)  # only the 100 new items were encoded
    rec = col.get(ids=["d5"], include_vectors=True)[0]
    assert rec.metadata["weights_sha256"] == m.spec.weights_sha256 and len(rec.metadata["input_sha256"]) == 64
    np.testing.assert_allclose(rec.vector, m.latents(x[5:6])[0], atol=1e-6)
    other = LatentModel(LatentConfig(input_shape=(1, 8, 8), latent_dim=4, hidden=(32,), name="digits"))
    with pytest.raises(ls.SpaceMismatchError):
        to_collection(other, x[:10], st, "z", cache=cache)
    with pytest.raises(ls.SpaceMismatchError):
        col.search(vector=other.latents(x[:1])[0], space=other.spec, k=3)
    cache.close()
    st.close()
