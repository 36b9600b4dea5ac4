"""A tiny AutoencoderKL, built and saved by a fixture, behind the LatentModel interface."""

import numpy as np
import pytest
import torch

import latentspace as ls


@pytest.fixture(scope="module")
def tiny_vae_dir(tmp_path_factory):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 16, 16), latent_channels=4,
        layers_per_block=1, norm_num_groups=4, sample_size=32, scaling_factor=0.18215,
    )
    folder = tmp_path_factory.mktemp("vae") / "tiny-kl"
    vae.save_pretrained(folder, safe_serialization=True)
    return folder


def test_interface_shapes_and_scaling(tiny_vae_dir):
    from latentspace.latent.diffusers_vae import DiffusersVAE

    m = DiffusersVAE(str(tiny_vae_dir), image_size=32)
    assert m.config.latent_shape == (4, 8, 8)  # (4, h/8, w/8) with three blocks
    x = np.random.default_rng(0).uniform(size=(3, 3, 32, 32)).astype(np.float32)
    post = m.encode(x)
    assert post.mean.shape == (3, 256)
    raw = m.vae.encode(torch.as_tensor(x) * 2 - 1).latent_dist.mean.flatten(1)
    torch.testing.assert_close(post.mean, raw * 0.18215)  # the scaling factor is applied
    rec = m.reconstruct(x)
    assert rec.shape == (3, 3, 32, 32) and float(rec.min()) >= 0 and float(rec.max()) <= 1
    assert m.sample(2, seed=0).shape == (2, 3, 32, 32)
    assert m.spec.dim == 256 and m.spec.weights_sha256 and m.spec.modality == "latent"
    with pytest.raises(ls.InvalidInputError):
        m.decode(np.zeros((1, 10)))
    with pytest.raises(ls.InvalidInputError):
        m.encode(x * 5)


def test_navigation_works_on_the_loaded_vae(tiny_vae_dir, tmp_path):
    from latentspace.latent import LatentCache, to_collection
    from latentspace.latent.diffusers_vae import DiffusersVAE
    from latentspace.latent.navigate import anomaly_scores, interpolate, traverse

    m = DiffusersVAE(str(tiny_vae_dir), image_size=32)
    x = np.random.default_rng(1).uniform(size=(6, 3, 32, 32)).astype(np.float32)
    path = interpolate(m, x[0], x[1], steps=4)
    assert path.shape == (4, 3, 32, 32)
    z = m.latents(x)
    strip = traverse(m, z[0], np.eye(256)[0], steps=3)
    assert strip.shape == (3, 3, 32, 32)
    assert anomaly_scores(m, x, kind="elbo").shape == (6,)
    st = ls.open_store(tmp_path / "s")
    col = to_collection(m, x, st, "kl", cache=LatentCache(tmp_path / "c.db"))
    assert len(col) == 6 and col.search(vector=z[2], space=m.spec, k=1)[0].metadata["input_sha256"]
    st.close()


def test_pickle_only_vae_folder_is_refused(tmp_path):
    from latentspace.latent.diffusers_vae import DiffusersVAE

    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ls.ModelLoadError, match="pickle"):
        DiffusersVAE(str(folder))


def test_cli_commands_take_an_autoencoder_kl_folder(tiny_vae_dir, tmp_path):
    """The latent CLI opens a diffusers AutoencoderKL folder like a latentspace model."""
    import json

    from tests.test_cli import run

    rng = np.random.default_rng(0)
    data = tmp_path / "images.npy"
    np.save(data, rng.uniform(size=(6, 3, 32, 32)).astype(np.float32), allow_pickle=False)
    enc = json.loads(run("latent", "encode", tiny_vae_dir, "--data", data, "-o", tmp_path / "z.npy", "--json").stdout)
    assert enc["shape"] == [6, 256] and enc["space"]["modality"] == "latent"
    run("latent", "interpolate", tiny_vae_dir, "--data", data, "--steps", "4", "-o", tmp_path / "path.png")
    run("latent", "traverse", tiny_vae_dir, "--data", data, "--steps", "3", "-o", tmp_path / "dims.png")
    run("latent", "sample", tiny_vae_dir, "-n", "4", "-o", tmp_path / "s.png")
    an = json.loads(run("latent", "anomalies", tiny_vae_dir, "--data", data, "--top", "3", "--json").stdout)
    assert len(an["top"]) == 3
    assert all((tmp_path / f).stat().st_size > 0 for f in ("path.png", "dims.png", "s.png"))
    bad = run("latent", "encode", tmp_path / "nowhere", "--data", data, check=False)
    assert bad.returncode == 4 and "No model folder" in bad.stderr
