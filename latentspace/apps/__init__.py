"""What people build on embeddings, each a small module that works on any Collection.

>>> from latentspace import apps
>>> apps.find_duplicates(col, threshold=0.95)        # doctest: +SKIP
>>> ls.rag.retrieve_context(col, "question", token_budget=800)   # doctest: +SKIP
"""

from . import rag
from .classify import LinearProbe, Prediction, ZeroShotClassifier, knn_classify
from .clustering import Cluster, Clustering, cluster
from .matryoshka import MatryoshkaFunnel
from .images import add_images, search_images
from .dedup import DuplicateGroup, DuplicateReport, find_duplicates, remove_duplicates
from .outliers import OutlierReport, outlier_scores
from .rag import Context, Source, answer, retrieve_context
from .recommendation import recommend
from . import interactions
from .interactions import InteractionModel, Recommendation, fit_interactions

__all__ = [
    "rag", "retrieve_context", "answer", "Context", "Source",
    "recommend",
    "interactions", "fit_interactions", "InteractionModel", "Recommendation",
    "cluster", "Cluster", "Clustering",
    "find_duplicates", "remove_duplicates", "DuplicateGroup", "DuplicateReport",
    "outlier_scores", "OutlierReport",
    "MatryoshkaFunnel",
    "add_images", "search_images",
    "knn_classify", "LinearProbe", "ZeroShotClassifier", "Prediction",
]
