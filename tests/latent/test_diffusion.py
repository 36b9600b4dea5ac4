"""Latent diffusion on real digits: a small VAE trained here, a denoiser over its latents
conditioned on classes or on text embeddings, saved and loaded with both spaces checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import latentspace as ls
from latentspace.data import digits
from latentspace.latent import LatentCache, LatentConfig, LatentModel, save_model, train
from latentspace.latent.diffusion import DiffusionConfig, LatentDiffusion, load_diffusion

SMALL = {"hidden": 128, "blocks": 2}


@pytest.fixture(scope="module")
def data():
    return digits.load("train"), digits.load("test")


@pytest.fixture(scope="module")
def vae(data, tmp_path_factory):
    (xtr, _), _ = data
    m = LatentModel(LatentConfig(input_shape=(1, 8, 8), latent_dim=6, hidden=(128, 64), name="digits-vae"), seed=0)
    train(m, xtr, epochs=40, patience=40, kl_warmup=10, lr_schedule="constant", seed=0)  # quick
    folder = tmp_path_factory.mktemp("vae") / "vae"
    save_model(m, folder)
    return m, folder


def latent_reader(vae, xtr, ytr):
    """Reads a latent's digit: the nearest class mean of the real training digits' latents."""
    z = vae.latents(xtr)
    means = np.stack([z[ytr == k].mean(0) for k in range(10)])
    return lambda latents: np.argmin(((np.asarray(latents)[:, None] - means[None]) ** 2).sum(-1), axis=1)


@pytest.fixture(scope="module")
def class_model(vae, data):
    (xtr, ytr), _ = data
    model = LatentDiffusion.create(vae[0], cond="class", class_names=list(digits.WORDS), **SMALL)
    report = model.fit(xtr, ytr, epochs=60, seed=0)
    return model, report


def test_class_conditioned_samples_are_the_requested_digits(class_model, vae, data):
    (xtr, ytr), _ = data
    model, report = class_model
    assert report.history[-1]["loss"] < report.history[0]["loss"]
    read = latent_reader(vae[0], xtr, ytr)
    want = np.arange(10).repeat(20)
    unguided = (read(model.sample_latents(list(range(10)), n=20, guidance=1.0, steps=20).numpy()) == want).mean()
    guided = (read(model.sample_latents(list(range(10)), n=20, guidance=3.0, steps=20).numpy()) == want).mean()
    assert guided >= 0.85 and guided >= unguided + 0.15  # measured 0.96 and 0.64; chance is 0.1
    # class names work as labels; images come out in the VAE's data range
    images = model.generate(["seven", 7], n=2, steps=10)
    assert images.shape == (4, 1, 8, 8) and float(images.min()) >= 0 and float(images.max()) <= 1
    # seeded: the same call gives the same images; another seed others
    again = model.generate(["seven", 7], n=2, steps=10)
    torch.testing.assert_close(images, again)
    assert not torch.allclose(images, model.generate(["seven", 7], n=2, steps=10, seed=1))
    ddpm = model.sample_latents([3], n=20, guidance=3.0, steps=50, sampler="ddpm").numpy()
    assert (read(ddpm) == 3).mean() >= 0.8


def test_the_schedulers_do_not_clip_latents(class_model):
    """diffusers' default clip_sample=True clamps x0 to [-1, 1], which destroys guidance
    (DESIGN §12): both samplers must be built with it off."""
    from latentspace.latent.diffusion import _scheduler

    model, _ = class_model
    for kind in ("ddim", "ddpm"):
        assert _scheduler(model.config, kind).config.clip_sample is False


def test_text_conditioned_model_follows_unseen_wordings(vae, data, default_enc):
    (xtr, ytr), _ = data
    model = LatentDiffusion.create(vae[0], cond="text", text_encoder=default_enc, **SMALL)
    assert model.config.cond_dim == 384 and model.text_spec == default_enc.spec
    model.fit(xtr, digits.captions_for(ytr), epochs=60, seed=0)
    read = latent_reader(vae[0], xtr, ytr)
    prompts = [digits.caption(k, t) for k in range(10) for t in digits.HELD_OUT_TEMPLATES for _ in range(5)]
    want = np.arange(10).repeat(len(digits.HELD_OUT_TEMPLATES) * 5)
    acc = (read(model.sample_latents(prompts, guidance=3.0, steps=20).numpy()) == want).mean()
    assert acc >= 0.7, acc  # wordings never seen in training (measured 0.79); chance is 0.1
    # a path between two prompts: one noise, the condition moving; the ends are the two digits
    path = model.path_latents("a handwritten one", "a handwritten seven", frames=6, steps=20)
    ends = read(path.numpy())
    assert path.shape == (6, 6) and ends[0] == 1 and ends[-1] == 7


def test_save_load_and_both_spaces_enforced(class_model, vae, data, tmp_path, tiny_encoder, default_enc):
    (xtr, ytr), _ = data
    model, _ = class_model
    folder = model.save(tmp_path / "diff", vae_path=vae[1])
    meta = json.loads((folder / "config.json").read_text())
    assert meta["vae"]["fingerprint"] == vae[0].spec.fingerprint and meta["vae"]["path"]
    assert meta["training"]["vae_weights_sha256"] == vae[0].weights_sha256() and meta["training"]["data_sha256"]
    back = load_diffusion(folder)  # the VAE from the recorded folder
    torch.testing.assert_close(back.generate([2, 5], n=3, steps=10), model.generate([2, 5], n=3, steps=10))
    # another VAE (other weights): refused, naming the field
    other = LatentModel(LatentConfig(input_shape=(1, 8, 8), latent_dim=6, hidden=(128, 64), name="digits-vae"))
    with pytest.raises(ls.SpaceMismatchError, match="weights_sha256"):
        load_diffusion(folder, vae=other)
    # a text model: another text encoder is refused
    text = LatentDiffusion.create(vae[0], cond="text", text_encoder=default_enc, **SMALL)
    text.fit(latents=vae[0].latents(xtr[:64]), conditions=digits.captions_for(ytr[:64]), epochs=1)
    tfolder = text.save(tmp_path / "text", vae_path=vae[1])
    with pytest.raises(ls.SpaceMismatchError, match="model"):
        load_diffusion(tfolder, text_encoder=tiny_encoder)
    assert load_diffusion(tfolder, text_encoder=default_enc).text_spec == default_enc.spec
    # corrupt weights, a pickle, a folder of something else
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text((folder / "config.json").read_text())
    (tmp_path / "bad" / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:100])
    with pytest.raises(ls.ModelLoadError, match="corrupt"):
        load_diffusion(tmp_path / "bad")
    (tmp_path / "bad" / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (tmp_path / "bad" / "weights.pt").write_bytes(b"x")
    with pytest.raises(ls.ModelLoadError, match="never unpickles"):
        load_diffusion(tmp_path / "bad")
    with pytest.raises(ls.ModelLoadError, match="not a latentspace latent diffusion"):
        load_diffusion(vae[1])
    with pytest.raises(ls.NotFoundError):
        load_diffusion(tmp_path / "missing")


def test_training_reads_latents_through_the_cache(vae, data, tmp_path):
    (xtr, ytr), _ = data
    cache = LatentCache(tmp_path / "latents.db")
    for _ in range(2):
        model = LatentDiffusion.create(vae[0], cond="class", num_classes=10, **SMALL)
        model.fit(xtr[:200], ytr[:200], epochs=1, cache=cache)
    assert (cache.misses, cache.hits) == (200, 200)  # encoded once; the second model read the cache
    cache.close()


def test_bad_input_is_refused(class_model, vae, data, default_enc):
    (xtr, ytr), _ = data
    model, _ = class_model
    for kwargs, match in (({"guidance": -1.0}, "guidance"), ({"steps": 0}, "steps"), ({"n": 0}, "n"),
                          ({"sampler": "euler"}, "sampler")):
        with pytest.raises(ls.InvalidInputError, match=match):
            model.generate([1], **kwargs)
    for cond in (10, -1, "eleven", 2.5):
        with pytest.raises(ls.InvalidInputError, match="class"):
            model.generate([cond])
    with pytest.raises(ls.InvalidInputError):
        model.generate([])
    text = LatentDiffusion.create(vae[0], cond="text", text_encoder=default_enc, **SMALL)
    with pytest.raises(ls.InvalidInputError, match="empty"):
        text.generate(["a handwritten one", "  "])
    with pytest.raises(ls.InvalidInputError, match="one condition per item"):
        text.fit(xtr[:10], ["a one"] * 9, epochs=1)
    bad = vae[0].latents(xtr[:10])
    bad[3, 0] = np.nan
    with pytest.raises(ls.InvalidInputError, match="finite"):
        model.fit(latents=bad, conditions=ytr[:10], epochs=1)
    with pytest.raises(ls.InvalidInputError, match="UNet"):
        DiffusionConfig(latent_shape=(8,), arch="unet", num_classes=3, cond="class")
    with pytest.raises(ls.InvalidInputError, match="text_encoder"):
        LatentDiffusion(DiffusionConfig(latent_shape=(6,), cond_dim=384), vae[0])


def test_unet_denoiser_over_a_tiny_autoencoder_kl(tmp_path, tiny_encoder):
    """The same code over a diffusers AutoencoderKL and a UNet2DConditionModel."""
    from diffusers import AutoencoderKL

    from latentspace.latent.diffusers_vae import DiffusersVAE

    torch.manual_seed(0)
    kl = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                       up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                       layers_per_block=1, norm_num_groups=4, sample_size=16)
    kl.save_pretrained(tmp_path / "kl", safe_serialization=True)
    vae = DiffusersVAE(str(tmp_path / "kl"), image_size=16)
    model = LatentDiffusion.create(vae, cond="text", text_encoder=tiny_encoder, channels=(16, 32))
    assert model.config.arch == "unet" and model.config.latent_shape == (4, 8, 8)
    x = np.random.default_rng(0).uniform(size=(8, 3, 16, 16)).astype(np.float32)
    report = model.fit(x, ["red square"] * 4 + ["blue circle"] * 4, epochs=2, batch_size=4)
    assert report.steps == 4
    images = model.generate(["red square"], n=2, steps=3)
    assert images.shape == (2, 3, 16, 16)
    folder = model.save(tmp_path / "unet", vae_path=tmp_path / "kl")
    back = load_diffusion(folder, text_encoder=tiny_encoder)
    torch.testing.assert_close(back.generate(["red square"], n=2, steps=3), images)


def test_cli_trains_generates_and_walks_a_path(tmp_path, vae):
    from PIL import Image

    from ..cli_runner import run

    out = json.loads(run("latent", "diffusion-train", tmp_path / "d", "--vae", vae[1], "--cond", "text",
                         "--epochs", "2", "--hidden", "64", "--blocks", "1", "--json").stdout)
    assert out["epochs"] == 2 and out["text_space"] and out["vae_space"] == vae[0].spec.fingerprint
    gen = json.loads(run("latent", "generate", tmp_path / "d", "a handwritten seven", "the number 1", "-n", "3",
                         "--steps", "5", "-o", tmp_path / "g.png", "--json").stdout)
    assert gen["shape"] == [6, 1, 8, 8] and Image.open(tmp_path / "g.png").size[0] > 0
    run("latent", "generate", tmp_path / "d", "seven", "-n", "2", "--steps", "5", "-o", tmp_path / "g.npy")
    assert np.load(tmp_path / "g.npy").shape == (2, 1, 8, 8)
    run("latent", "generate-path", tmp_path / "d", "a handwritten one", "a handwritten seven", "--frames", "4",
        "--steps", "5", "-o", tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    # a class model from the CLI takes class names and numbers
    run("latent", "diffusion-train", tmp_path / "c", "--vae", vae[1], "--cond", "class", "--epochs", "1",
        "--hidden", "64", "--blocks", "1")
    assert json.loads(run("latent", "generate", tmp_path / "c", "seven", "3", "-n", "1", "--steps", "3", "-o",
                          tmp_path / "c.png", "--json").stdout)["shape"] == [2, 1, 8, 8]
    bad = run("latent", "generate", tmp_path / "c", "eleven", "--steps", "3", check=False)
    assert bad.returncode == ls.InvalidInputError.exit_code and "Unknown class" in bad.stderr
    bad = run("latent", "diffusion-train", tmp_path / "x", "--vae", vae[1], "--cond", "pixels", check=False)
    assert bad.returncode == ls.InvalidInputError.exit_code and "--cond" in bad.stderr
