"""Seeing, measuring, comparing and aligning spaces: numpy functions, no torch.

Diagnostics (:func:`diagnose` and its parts), comparison (CKA, kNN overlap, similarity
rank correlation) and alignment (:class:`Aligner`).
"""

from .align import AlignedVectors, Aligner, retrieval_precision
from .compare import compare, debiased_linear_cka, knn_overlap, linear_cka, rbf_cka, similarity_rank_correlation
from .diagnostics import (
    Diagnosis,
    diagnose,
    distance_concentration,
    hubness,
    isotropy,
    mle_dimension,
    norm_stats,
    twonn_dimension,
)
from .neighbors import knn

__all__ = [
    "AlignedVectors", "Aligner", "retrieval_precision", "compare", "debiased_linear_cka", "knn_overlap", "linear_cka",
    "rbf_cka", "similarity_rank_correlation", "Diagnosis", "diagnose", "distance_concentration", "hubness",
    "isotropy", "mle_dimension", "norm_stats", "twonn_dimension", "knn",
]
