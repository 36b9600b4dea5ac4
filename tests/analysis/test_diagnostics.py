"""Each diagnostic on data whose answer is known."""

import numpy as np
import pytest

import latentspace as ls
from latentspace.analysis import (
    diagnose,
    distance_concentration,
    hubness,
    isotropy,
    knn,
    mle_dimension,
    norm_stats,
    twonn_dimension,
)

rng = np.random.default_rng(0)


@pytest.mark.parametrize("true_dim", [2, 5, 8])
def test_intrinsic_dimension_of_a_linear_subspace(true_dim):
    z = np.random.default_rng(true_dim).normal(size=(4000, true_dim))
    x = z @ np.random.default_rng(1).normal(size=(true_dim, 120))  # a true_dim-d plane in 120-d
    assert twonn_dimension(x) == pytest.approx(true_dim, rel=0.15)
    assert mle_dimension(x) == pytest.approx(true_dim, rel=0.15)


def test_isotropy_known_cases():
    g = rng.normal(size=(4000, 32))
    assert isotropy(g)["partition_isotropy"] > 0.5
    assert isotropy(g + 5.0)["partition_isotropy"] < 1e-3  # one common direction dominates
    line = np.outer(rng.normal(size=4000), rng.normal(size=32)) + 0.01 * rng.normal(size=(4000, 32))
    assert isotropy(line)["top1_variance_share"] > 0.99
    assert isotropy(g)["top1_variance_share"] < 0.1


def test_hubness_known_cases():
    low = hubness(rng.normal(size=(3000, 2)), k=10)
    high = hubness(rng.normal(size=(3000, 400)), k=10)
    assert abs(low["k_occurrence_skewness"]) < 1.0
    assert high["k_occurrence_skewness"] > 3.0  # the dimensionality curse (Radovanovic et al. 2010)
    # a point at the centre of a sphere shell is everyone's nearest neighbour: a perfect hub
    shell = rng.normal(size=(500, 200))  # in 200-d, shell points are ~1.4 apart, the centre 1.0 away
    shell /= np.linalg.norm(shell, axis=1, keepdims=True)
    star = np.vstack([shell, np.zeros((1, 200))])
    h = hubness(star, k=1)
    assert h["max_k_occurrence"] >= 450 and h["antihub_share"] > 0.5


def test_distance_concentration_known_cases():
    low = distance_concentration(rng.uniform(size=(2000, 2)))
    high = distance_concentration(rng.normal(size=(2000, 2000)))
    assert low["relative_contrast"] > 10 and low["min_max_ratio"] < 0.05
    assert high["relative_contrast"] < 1.2 and high["min_max_ratio"] > 0.8


def test_norm_stats():
    x = rng.normal(size=(100, 8))
    x[:60] /= np.linalg.norm(x[:60], axis=1, keepdims=True)
    s = norm_stats(x)
    assert s["non_unit_share"] == pytest.approx(0.4)
    assert s["min"] <= 1.0 <= s["max"]


def test_knn_exact_and_hnsw_agree():
    x = rng.normal(size=(3000, 16))
    a, da = knn(x, 5, method="exact")
    b, db = knn(x, 5, method="hnsw")
    assert np.mean([len(set(r) & set(s)) / 5 for r, s in zip(a.tolist(), b.tolist())]) > 0.97
    assert not (a == np.arange(3000)[:, None]).any()
    brute = np.sqrt(((x[:50, None] - x[None]) ** 2).sum(-1))
    brute[np.arange(50), np.arange(50)] = np.inf
    np.testing.assert_allclose(da[:50], np.sort(brute, axis=1)[:, :5], rtol=1e-4)


def test_diagnose_report_and_collection_sampling(tmp_path):
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("c", space=ls.SpaceSpec(model="m", dim=16))
    col.add([str(i) for i in range(3000)], vectors=x)
    d = diagnose(col, sample=1000)
    assert d.sampled and d.n_points == 3000 and "1,000 of 3,000" in d.notes[0]
    assert d.claims_normalized is True and d.norms["non_unit_share"] == 0.0
    names = [f[0] for f in d.findings()]
    assert {"relative contrast", "hubness", "isotropy", "intrinsic dimension", "norms"} <= set(names)
    full = diagnose(x)
    assert not full.sampled and full.dim == 16
    st.close()


@pytest.mark.parametrize("bad", [np.zeros(10), np.ones((3, 4)), [[1.0, np.nan]] * 30, "abc", np.ones((0, 3))])
def test_bad_inputs(bad):
    with pytest.raises(ls.InvalidInputError):
        diagnose(bad)


def test_too_few_points_for_k():
    with pytest.raises(ls.InvalidInputError, match="at least"):
        hubness(rng.normal(size=(5, 3)), k=10)


def test_exact_duplicates_are_counted_and_left_out_of_the_statistics(real_docs):
    """Real MiniLM vectors with a fifth of them repeated: before, 1 - cos of equal vectors (~1e-7,
    not 0) made the relative contrast explode; now the duplicates are counted, said, and the
    statistics are those of the distinct vectors."""
    x = real_docs[1][:2000]
    with_dups = np.vstack([x, x[:400]])
    d = diagnose(with_dups, metric="cosine")
    clean = diagnose(x, metric="cosine")
    assert d.duplicates == 400 and d.distinct == 2000 and clean.duplicates == 0
    assert d.concentration == clean.concentration and d.hubness == clean.hubness
    assert clean.concentration["relative_contrast"] < 10  # an ordinary value for real text vectors
    assert any("400 of 2,400 points are exact duplicates" in n for n in d.notes)
    name, text, concern = d.findings()[0]
    assert name == "exact duplicates" and concern and "16.7%" in text
    assert not clean.findings()[0][2]
