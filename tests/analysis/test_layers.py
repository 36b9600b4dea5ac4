"""Layer-by-layer geometry of transformer encoders."""

import numpy as np
import pytest

import latentspace as ls
from latentspace.embed.layers import heatmap_html, heatmap_png, layer_geometry, layer_states

TEXTS = [f"read the file number {i} and return the data" if i % 2 else f"the cat sat on the mat {i} times"
         for i in range(40)]


def test_tiny_bert_layers(tiny_bert, tmp_path):
    states, name = layer_states(TEXTS, str(tiny_bert))
    assert len(states) == 3 and all(s.shape == (40, 32) for s in states)  # embeddings + 2 layers
    g = layer_geometry(TEXTS, str(tiny_bert))
    np.testing.assert_allclose(np.diag(g.cka), 1.0)
    np.testing.assert_allclose(g.cka, g.cka.T)
    assert ((g.cka > 0) & (g.cka <= 1 + 1e-9)).all()
    assert [row["layer"] for row in g.per_layer] == [0, 1, 2]
    assert {"relative_contrast", "isotropy", "hubness", "twonn_dimension", "mle_dimension", "mean_norm"} <= set(g.per_layer[0])
    assert heatmap_png(g, tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    assert "plotly" in heatmap_html(g, tmp_path / "h.html").read_text()[:100000].lower()


def test_default_model_layers_are_ordered():
    """Neighbouring layers of MiniLM are more alike than distant ones (real docstrings)."""
    from ..corpus import spread

    texts = [r["text"] for r in spread(150)]
    g = layer_geometry(texts)
    assert g.cka.shape == (7, 7)
    assert g.cka[0, 1] > g.cka[0, 6] and g.cka[5, 6] > g.cka[1, 6]


def test_layer_bad_input(tiny_bert):
    with pytest.raises(ls.InvalidInputError):
        layer_states(["one", "two"], str(tiny_bert))
    with pytest.raises(ls.InvalidInputError):
        layer_states(TEXTS, str(tiny_bert), pooling="max")
    with pytest.raises(ls.ModelLoadError):
        layer_states(TEXTS, "/nonexistent/model/folder")
