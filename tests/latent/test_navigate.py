"""Navigation on a VAE trained on real digits (small, seeded, a few seconds)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

import latentspace as ls
from latentspace.latent import LatentConfig, LatentModel, train
from latentspace.latent.navigate import (
    GaussianMixtureSampler,
    anomaly_scores,
    arithmetic,
    attribute_direction,
    image_grid,
    interpolate,
    lerp,
    slerp,
    traverse,
    traverse_dimensions,
)


@pytest.fixture(scope="module")
def trained():
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    m = LatentModel(LatentConfig(input_shape=(1, 8, 8), latent_dim=6, hidden=(128, 64)))
    train(m, x[:1400], epochs=40, patience=40, seed=0)
    return m, x, d.target


def test_paths():
    a, b = np.array([3.0, 0.0]), np.array([0.0, 3.0])
    lp, sp = lerp(a, b, 5), slerp(a, b, 5)
    np.testing.assert_allclose(lp[[0, -1]], [a, b])
    np.testing.assert_allclose(sp[[0, -1]], [a, b], atol=1e-6)
    assert np.linalg.norm(lp[2]) < 2.5  # the chord cuts inside the shell
    np.testing.assert_allclose(np.linalg.norm(sp, axis=1), 3.0, rtol=1e-6)  # slerp stays on it
    with pytest.raises(ls.InvalidInputError):
        lerp(a, np.zeros(3))


def test_interpolation_moves_smoothly_between_the_ends(trained):
    m, x, y = trained
    a, b = x[y == 0][0], x[y == 1][0]
    path = interpolate(m, a, b, steps=8)
    assert path.shape == (8, 1, 8, 8)
    ends = m.reconstruct(np.stack([a, b])).numpy()
    np.testing.assert_allclose(path[[0, -1]], ends, atol=1e-5)
    steps = np.abs(np.diff(path, axis=0)).mean(axis=(1, 2, 3))
    assert steps.max() < 3 * np.abs(ends[0] - ends[1]).mean() / 7  # no jumps along the way


def test_attribute_direction_moves_toward_the_class(trained):
    m, x, y = trained
    z = m.latents(x[:1400])
    for method in ("means", "probe"):
        d = attribute_direction(z, y[:1400], 0, method=method)
        assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5)
        proj = z @ d
        assert proj[y[:1400] == 0].mean() > proj[y[:1400] != 0].mean()
    strip = traverse(m, z[y[:1400] == 1][0], d, span=2, steps=5)
    assert strip.shape == (5, 1, 8, 8)
    grid = traverse_dimensions(m, z[0], steps=3)
    assert grid.shape == (6, 3, 1, 8, 8)
    assert traverse_dimensions(m, z[0], steps=3, dims=2).shape == (2, 3, 1, 8, 8)
    picked = traverse_dimensions(m, z[0], steps=3, dims=[4])
    np.testing.assert_allclose(picked[0], grid[4], atol=1e-6)
    for bad in (0, 7, [6], []):
        with pytest.raises(ls.InvalidInputError):
            traverse_dimensions(m, z[0], dims=bad)
    with pytest.raises(ls.InvalidInputError):
        attribute_direction(z, y[:1400], 42)
    with pytest.raises(ls.InvalidInputError, match="6 dimensions"):
        traverse(m, np.zeros(5), d)


def test_arithmetic_returns_an_image(trained):
    m, x, y = trained
    out = arithmetic(m, x[0], x[1], x[2])
    assert out.shape == (1, 8, 8) and 0 <= out.min() and out.max() <= 1


def test_gmm_sampler_stays_nearer_the_data_than_the_prior(trained):
    m, x, _ = trained
    z = m.latents(x[:1400])
    s = GaussianMixtureSampler(8, seed=0).fit(z)
    zg, zp = s.sample(500, seed=1), np.random.default_rng(1).normal(size=(500, 6))
    from latentspace.analysis import knn  # distance of each sample to the nearest real latent

    def nn_dist(samples):
        both = np.vstack([z, samples])
        idx, dist = knn(both, 1)
        return dist[len(z):, 0].mean()

    assert nn_dist(zg) < nn_dist(zp)
    with pytest.raises(ls.NotFittedError):
        GaussianMixtureSampler().sample(3)


def test_anomaly_scores_rank_noise_above_digits(trained, tmp_path):
    m, x, _ = trained
    noise = np.random.default_rng(0).uniform(size=(100, 1, 8, 8)).astype(np.float32)
    for kind in ("reconstruction", "elbo"):
        s_real = anomaly_scores(m, x[1400:1500], kind=kind)
        s_noise = anomaly_scores(m, noise, kind=kind)
        assert np.median(s_noise) > np.percentile(s_real, 90)
    path = image_grid(interpolate(m, x[0], x[1], 6), tmp_path / "g.png", rows=1)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_class_conditional_sampler_draws_from_each_labels_latents():
    from latentspace.latent.navigate import ClassConditionalSampler

    rng = np.random.default_rng(0)
    z = np.r_[rng.normal(-3, 0.5, (200, 4)), rng.normal(3, 0.5, (200, 4))]
    labels = np.r_[["a"] * 200, ["b"] * 200]
    s = ClassConditionalSampler().fit(z, labels)
    a, b = s.sample(100, "a", seed=0), s.sample(100, "b", seed=0)
    assert a.shape == (100, 4) and np.abs(a.mean(0) + 3).max() < 0.3 and np.abs(b.mean(0) - 3).max() < 0.3
    np.testing.assert_array_equal(a, s.sample(100, "a", seed=0))
    with pytest.raises(ls.InvalidInputError, match="Unknown label"):
        s.sample(3, "c")
    with pytest.raises(ls.NotFittedError):
        ClassConditionalSampler().sample(3, "a")
    with pytest.raises(ls.InvalidInputError, match="needs 2"):
        ClassConditionalSampler().fit(z[:3], ["a", "b", "b"])
