"""CKA against a reference written from the paper's formulas; alignment on rotated spaces."""

import numpy as np
import pytest

import latentspace as ls
from latentspace.analysis import (
    Aligner,
    compare,
    debiased_linear_cka,
    knn_overlap,
    linear_cka,
    rbf_cka,
    retrieval_precision,
    similarity_rank_correlation,
)


# -- the reference, from Kornblith et al. (2019) eqs. 1-4 and Song et al. (2012), in Gram form --
def _hsic_biased(k, l_):
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l_ @ h) / (n - 1) ** 2


def _hsic_unbiased(k, l_):
    n = k.shape[0]
    k, l_ = k.copy(), l_.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l_, 0)
    one = np.ones(n)
    return (np.trace(k @ l_) + (one @ k @ one) * (one @ l_ @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ k @ l_ @ one)) / (n * (n - 3))


def _cka(k, l_, hsic):
    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def _rbf(x, threshold=1.0):
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * threshold**2 * np.median(d2)))


@pytest.fixture(scope="module")
def demo():
    """The reference demo: seeded random X and Y = X + noise."""
    rng = np.random.default_rng(1234)
    x = rng.normal(size=(100, 10))
    y = x + rng.normal(size=(100, 10))
    return x, y


def test_matches_reference_implementation(demo):
    x, y = demo
    assert linear_cka(x, y) == pytest.approx(_cka(x @ x.T, y @ y.T, _hsic_biased), abs=1e-6)
    assert debiased_linear_cka(x, y) == pytest.approx(_cka(x @ x.T, y @ y.T, _hsic_unbiased), abs=1e-6)
    assert rbf_cka(x, y)["cka"] == pytest.approx(_cka(_rbf(x), _rbf(y), _hsic_biased), abs=1e-6)


def test_invariances(demo):
    x, y = demo
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    base = linear_cka(x, y)
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert debiased_linear_cka(x, x) == pytest.approx(1.0)
    assert rbf_cka(x, x)["cka"] == pytest.approx(1.0)
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-9)        # orthogonal transform
    assert linear_cka(7.5 * x, y) == pytest.approx(base, abs=1e-9)      # isotropic scaling
    assert debiased_linear_cka(x @ q * 3, y) == pytest.approx(debiased_linear_cka(x, y), abs=1e-9)
    skew = np.diag(np.linspace(0.1, 10, 10)) @ rng.normal(size=(10, 10))  # invertible, not orthogonal
    assert abs(linear_cka(x @ skew, y) - base) > 0.01


def test_neighbourhood_measures(demo):
    x, y = demo
    assert knn_overlap(x, x, k=5) == 1.0
    assert similarity_rank_correlation(x, x) == pytest.approx(1.0)
    rnd = np.random.default_rng(5).normal(size=x.shape)
    assert knn_overlap(x, y, k=5) > knn_overlap(x, rnd, k=5)
    out = compare(x, y, k=5)
    assert set(out) >= {"linear_cka", "debiased_linear_cka", "rbf_cka", "knn_overlap@5", "similarity_rank_correlation"}


@pytest.mark.parametrize("fn", [linear_cka, debiased_linear_cka, knn_overlap, similarity_rank_correlation])
def test_bad_pairs(fn):
    x = np.random.default_rng(0).normal(size=(30, 4))
    with pytest.raises(ls.InvalidInputError, match="rows"):
        fn(x, x[:20])
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ls.InvalidInputError, match="NaN"):
        fn(x, bad)
    with pytest.raises(ls.InvalidInputError, match="2-D"):
        fn(x[0], x[1])


def rotated_noised(n=3000, d=48, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return x, x @ q + noise * rng.normal(size=(n, d))


@pytest.mark.parametrize("method", ["procrustes", "lstsq"])
def test_alignment_recovers_a_rotation(method):
    x, y = rotated_noised()
    before = retrieval_precision(x[2000:], y[2000:])
    al = Aligner(method).fit(x[:2000], y[:2000])
    after = al.evaluate(x[2000:], y[2000:])
    assert before["p_at_1_nn"] < 0.05
    assert after["p_at_1_nn"] > 0.95 and after["p_at_1_csls"] > 0.95
    if method == "procrustes":
        np.testing.assert_allclose(al.W_ @ al.W_.T, np.eye(48), atol=1e-8)


def test_aligned_vectors_enter_a_collection_only_with_the_target_space(tmp_path):
    x, y = rotated_noised(d=16)
    target = ls.SpaceSpec(model="target/model", dim=16, normalize=True)
    st = ls.open_store(tmp_path / "s")
    col = st.create_collection("t", space=target)
    yn = (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)
    col.add([f"y{i}" for i in range(100)], vectors=yn[:100])
    al = Aligner(target_space=target).fit(x[:2000], y[:2000])
    moved = al.to_target(x[:100])
    assert moved.space == target
    col.add([f"x{i}" for i in range(100)], vectors=moved.vectors, space=moved.space)
    hits = col.search(vector=moved.vectors[7], space=moved.space, k=2)
    assert {"x7", "y7"} == {h.id for h in hits}
    with pytest.raises(ls.SpaceMismatchError):
        col.add(["raw"], vectors=yn[:1], space=ls.SpaceSpec(model="source/model", dim=16))
    st.close()


def test_aligner_errors():
    x, y = rotated_noised(n=50, d=8)
    with pytest.raises(ls.NotFittedError):
        Aligner().transform(x)
    with pytest.raises(ls.InvalidInputError, match="rows"):
        Aligner().fit(x, y[:40])
    al = Aligner().fit(x, y)
    with pytest.raises(ls.InvalidInputError, match="features"):
        al.transform(x[:, :5])
    with pytest.raises(ls.InvalidInputError, match="target_space"):
        al.to_target(x)
    with pytest.raises(ls.InvalidInputError, match="anchor pairs"):
        Aligner("lstsq").fit(x[:5], y[:5])
    with pytest.raises(ls.InvalidInputError):
        Aligner("magic").fit(x, y)


def test_analysis_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, latentspace.analysis; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_alignment_between_real_text_spaces(default_enc, real_docs):
    """Real MiniLM vectors of standard-library docstrings: a rotated, noised copy is another
    space that nearest neighbours cannot cross (P@1 ~ 0) until Procrustes aligns it; MiniLM's
    CLS token and its mean pooling are two spaces sharing one basis, which least squares maps
    onto each other almost perfectly."""
    from latentspace.embed.sentence_transformers import default_model_path

    step = len(real_docs[0]) // 900
    texts, mean = real_docs[0][::step][:900], real_docs[1][::step][:900]
    cls_enc = ls.TransformersEncoder(str(default_model_path()), pooling="cls", max_length=256)
    cls = cls_enc.encode_documents(texts)
    assert default_enc.spec.fingerprint != cls_enc.spec.fingerprint
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    tr, te = order[:600], order[600:]
    q, _ = np.linalg.qr(rng.normal(size=(384, 384)))
    rot = mean @ q + 0.02 * rng.normal(size=mean.shape)
    assert retrieval_precision(mean[te], rot[te])["p_at_1_nn"] < 0.02
    after = Aligner().fit(mean[tr], rot[tr]).evaluate(mean[te], rot[te])
    assert after["p_at_1_nn"] > 0.95 and after["p_at_1_csls"] > 0.95
    lsq = Aligner("lstsq").fit(cls[tr], mean[tr]).evaluate(cls[te], mean[te])
    assert lsq["p_at_1_nn"] > 0.95


def test_aligner_save_load_roundtrip_and_damage(tmp_path):
    x, y = rotated_noised(n=300, d=8)
    spec = ls.SpaceSpec(model="t", dim=8)
    al = Aligner(target_space=spec).fit(x, y)
    al.save(tmp_path / "al")
    back = Aligner.load(tmp_path / "al")
    np.testing.assert_allclose(back.transform(x[:10]), al.transform(x[:10]))
    assert back.target_space == spec
    assert not list((tmp_path / "al").glob("*.pkl"))
    raw = (tmp_path / "al" / "aligner.safetensors").read_bytes()
    (tmp_path / "al" / "aligner.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ls.InvalidInputError):
        Aligner.load(tmp_path / "al")
    with pytest.raises(ls.NotFoundError):
        Aligner.load(tmp_path / "nothing")
