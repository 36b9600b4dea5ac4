"""Hybrid fusion: both methods, their weights, and the measured default."""

from __future__ import annotations

import pytest

import latentspace as ls
from latentspace.collections import fusion


def test_convex_fusion_scales_each_list_and_weighs_it():
    fused = fusion.fuse({"vector": [(1, 0.9), (2, 0.5), (3, 0.1)], "keyword": [(3, 12.0), (4, 2.0)]}, 0.5, "convex")
    scores = {key: s for key, s, _ in fused}
    assert scores == pytest.approx({1: 0.5, 2: 0.25, 3: 0.5 * 0 + 0.5 * 1.0, 4: 0.0})
    assert fused[0][2] in ({"vector": 1}, {"vector": 3, "keyword": 1})  # ranks per retriever
    only_vector = fusion.fuse({"vector": [(1, 0.9), (2, 0.5)], "keyword": []}, 1.0, "convex")
    assert [k for k, _, _ in only_vector] == [1, 2]


def test_rrf_uses_its_measured_constant():
    fused = fusion.fuse({"vector": [(1, 0.9), (2, 0.5)], "keyword": [(2, 3.0)]}, 0.5, "rrf")
    assert fused[0][0] == 2 and fused[0][1] == pytest.approx(0.5 / (fusion.RRF_K + 2) + 0.5 / (fusion.RRF_K + 1))
    assert fusion.DEFAULT_FUSION == "convex" and fusion.RRF_K == 10  # bench/hybrid.py, bench/RESULTS.md


def test_hybrid_search_takes_either_fusion(store, tiny_encoder):
    col = store.create_collection("t", encoder=tiny_encoder)
    col.add(["a", "b", "c"], documents=["the cat sat on the mat", "stock market fell sharply", "python code file"])
    for method in ("rrf", "convex"):
        hits = col.search("cat mat", k=3, mode="hybrid", fusion=method)
        assert hits[0].id == "a" and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(0.0 <= h.score <= 1.0 for h in col.search("cat mat", k=3, mode="hybrid"))  # convex: scaled sums
    with pytest.raises(ls.InvalidInputError, match="fusion"):
        col.search("cat", mode="hybrid", fusion="sum")
