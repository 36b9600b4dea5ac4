"""Projections, pictures and the HTML report, rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

import latentspace as ls
from latentspace.analysis.projection import as_projection, project, to_html, to_png
from latentspace.analysis.report import report_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data, d.target


def test_projection_is_seeded_and_separates_digits(digits):
    x, y = digits
    a = project(x, "pca", seed=3)
    b = project(x, "pca", seed=3)
    np.testing.assert_array_equal(a, b)
    t1 = project(x[:400], "tsne", seed=1, perplexity=20)
    t2 = project(x[:400], "tsne", seed=1, perplexity=20)
    np.testing.assert_allclose(t1, t2)
    # neighbours in the t-SNE picture mostly share a label: the picture shows real structure
    from latentspace.analysis import knn

    idx, _ = knn(t1, 5)
    assert (y[:400][idx] == y[:400][:, None]).mean() > 0.8
    two = np.random.default_rng(0).normal(size=(50, 2))
    np.testing.assert_array_equal(project(two, "umap"), two)  # identity for 2-D input
    assert project(x[:300], "pca", dim=3).shape == (300, 3)


def test_umap_runs_seeded(digits):
    x, _ = digits
    a = project(x[:300], "umap", seed=0)
    b = project(x[:300], "umap", seed=0)
    np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "tsne", "perplexity": 500}, "perplexity"),
    ({"method": "umap", "n_neighbors": 500}, "n_neighbors"),
    ({"method": "mds"}, "method"),
    ({"dim": 4}, "dim"),
])
def test_projection_bad_input(digits, kwargs, match):
    with pytest.raises(ls.InvalidInputError, match=match):
        project(digits[0][:100], **kwargs)


def test_png_and_offline_html(tmp_path, digits):
    x, y = digits
    p = as_projection(x, "pca", labels=list(y), hover=[f"digit {v}" for v in y], max_points=1000)
    assert p.sampled and "1,000 of 1,797" in p.notes[0]
    png = to_png(p, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    p3 = as_projection(x[:300], "pca", dim=3, labels=list(y[:300]))
    assert to_png(p3, tmp_path / "p3.png").stat().st_size > 10_000
    assert "scatter3d" in to_html(p3, tmp_path / "p3.html").read_text()
    page = to_html(p, tmp_path / "p.html").read_text()
    assert "<script" in page and not re.search(r'<script[^>]+src="http', page)  # plotly.js bundled, no CDN


def render(page: Path, budget_ms: int = 8000) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, and every console message, from headless Chromium."""
    profile = tempfile.mkdtemp()
    try:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             f"--virtual-time-budget={budget_ms}", "--dump-dom", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by .ci/run")
def test_console_detector_catches_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>throw new Error('kaput')</script></body></html>")
    _, console = render(bad, 2000)
    assert any("kaput" in line for line in console)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by .ci/run")
def test_report_renders_in_chromium_with_no_console_errors(tmp_path, digits):
    x, y = digits
    st = ls.open_store(tmp_path / "s")
    spec = ls.SpaceSpec(model="sklearn/digits", dim=64, normalize=False, metric="l2", modality="vector")
    col = st.create_collection("digits", space=spec)
    col.add([f"d{i}" for i in range(len(x))], vectors=x.astype(np.float32),
            documents=[f"a handwritten {v}" for v in y], metadatas=[{"label": int(v)} for v in y])
    rot = st.create_collection("rotated", space=spec.replace(model="sklearn/digits-rotated"))
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(64, 64)))
    rot.add([f"d{i}" for i in range(len(x))], vectors=(x @ q).astype(np.float32))
    out = report_html(col, tmp_path / "report.html", other=rot, color_by="label", max_points=1000)
    page = out.read_text()
    assert "Diagnostics" in page and "hubness" in page and "Compared with collection rotated" in page
    assert "a random sample of 1,000 of 1,797" in page
    dom, console = render(out)
    assert console == []
    assert dom.count('class="main-svg"') >= 1  # plotly drew the projection
    assert len(re.findall(r'class="point"', dom)) >= 900  # with its points
    st.close()


def test_many_categories_draw_every_point_and_say_what_was_grouped(tmp_path, store):
    """300 points in 60 categories of unequal size: PNG and HTML draw all 300, the largest
    categories in colours of their own, the rest as one grey group whose name says what it holds."""
    from latentspace.analysis.projection import HTML_CATEGORIES, PNG_CATEGORIES, category_groups, to_figure

    rng = np.random.default_rng(0)
    sizes = np.arange(60, 0, -1)
    labels = [f"pkg{c}" for c in rng.permutation(np.repeat(np.arange(60), sizes * 300 // sizes.sum() + 1))][:300]
    groups = category_groups(labels + [None], PNG_CATEGORIES)
    covered = np.sort(np.concatenate([idx for _, idx in groups]))
    assert covered.tolist() == list(range(301))  # every point, once
    assert len(groups) == PNG_CATEGORIES + 1 and groups[-1][0].startswith("other: ")
    counts = [len(idx) for _, idx in groups[:-1]]
    assert counts == sorted(counts, reverse=True) and groups[0][0].endswith(f"({counts[0]:,})")
    rest = len({v for v in labels}) + 1 - PNG_CATEGORIES
    assert groups[-1][0] == f"other: {rest} more categories ({len(groups[-1][1]):,} points)"
    x = rng.normal(size=(300, 8)).astype(np.float32)
    col = store.create_collection("v", space=ls.SpaceSpec(model="test/x", dim=8, normalize=False, modality="vector"))
    col.add([f"i{i}" for i in range(300)], vectors=x,
            metadatas=[{"pkg": v, "odd": i % 2} for i, v in enumerate(labels)])
    from latentspace.analysis.projection import project_collection

    p = project_collection(col, "pca", color_by="pkg")
    fig = to_figure(p)
    assert sum(len(t.x) for t in fig.data) == 300 and len(fig.data) == HTML_CATEGORIES + 1
    grey = [t for t in fig.data if t.name.startswith("other: ")]
    assert all(t.marker.color == "#b0b0b0" for t in grey)
    assert len({t.marker.color for t in fig.data if not t.name.startswith("other: ")}) == len(fig.data) - len(grey)
    assert to_png(p, tmp_path / "p.png").stat().st_size > 10_000
    only = project_collection(col, "pca", where={"odd": 1})
    assert only.coords.shape[0] == 150 and "matching" in only.notes[-1] and "150 points" in _title_of(only)


def _title_of(p):
    from latentspace.analysis.projection import _title

    return _title(p)
