"""latentspace: embeddings that represent and retrieve, latent spaces that compress and
generate, and one rule that binds them: one space per model.

>>> import latentspace as ls
>>> store = ls.open_store("my-store")                          # doctest: +SKIP
>>> col = store.create_collection("docs", encoder=ls.default_encoder())  # doctest: +SKIP
"""

from ._version import __version__
from .collections.collection import Collection, WriteResult
from .storage.hits import Hit, Record, distances, hits_to_arrow, hits_to_pandas
from .core.errors import (
    AlreadyExistsError,
    AuthError,
    BackendUnavailableError,
    CorruptStoreError,
    EncodingError,
    InvalidInputError,
    LatentSpaceError,
    ModelLoadError,
    NotFittedError,
    NotSupportedError,
    NotFoundError,
    SpaceMismatchError,
    StoreFormatError,
    StoreLockedError,
    TrainingDivergedError,
    TruncationWarning,
    UpstreamError,
)
from .core.space import SpaceSpec
from .embed import Encoder, default_encoder, encoder_from_config
from .ingest import chunk_text
from .storage.index import HnswParams
from .collections.store import CollectionInfo, Store, connect, open_store
from .collections.copy import CopyReport, copy_collection


def __getattr__(name: str):
    # encoders import torch/httpx lazily: only when asked for
    if name == "SentenceTransformerEncoder":
        from .embed.sentence_transformers import SentenceTransformerEncoder

        return SentenceTransformerEncoder
    if name == "TransformersEncoder":
        from .embed.transformers import TransformersEncoder

        return TransformersEncoder
    if name == "OpenAICompatibleEncoder":
        from .embed.openai import OpenAICompatibleEncoder

        return OpenAICompatibleEncoder
    if name == "CLIPEncoder":
        from .embed.clip import CLIPEncoder

        return CLIPEncoder
    if name in ("finetune", "FinetuneResult", "pairs_from_labels"):  # sentence-transformers' trainer, when asked
        from .embed import finetune as _finetune

        return getattr(_finetune, name)
    if name in ("apps", "rag"):  # scikit-learn and scipy load with them
        import importlib

        apps = importlib.import_module(".apps", __name__)
        return apps if name == "apps" else apps.rag
    raise AttributeError(f"module 'latentspace' has no attribute {name!r}")


__all__ = [
    "__version__",
    # spaces
    "SpaceSpec",
    # encoders
    "Encoder",
    "SentenceTransformerEncoder",
    "TransformersEncoder",
    "OpenAICompatibleEncoder",
    "CLIPEncoder",
    "default_encoder",
    "encoder_from_config",
    # making spaces
    "finetune",
    "FinetuneResult",
    "pairs_from_labels",
    # store and collections
    "Store",
    "open_store",
    "connect",
    "copy_collection",
    "CopyReport",
    "CollectionInfo",
    "Collection",
    "WriteResult",
    "Hit",
    "Record",
    "HnswParams",
    "distances",
    "hits_to_pandas",
    "hits_to_arrow",
    # applications (rag, recommend, cluster, dedup, outliers, classify)
    "apps",
    "rag",
    # errors
    "LatentSpaceError",
    "InvalidInputError",
    "SpaceMismatchError",
    "NotFoundError",
    "AlreadyExistsError",
    "CorruptStoreError",
    "StoreFormatError",
    "StoreLockedError",
    "ModelLoadError",
    "EncodingError",
    "UpstreamError",
    "NotFittedError",
    "NotSupportedError",
    "BackendUnavailableError",
    "TrainingDivergedError",
    "AuthError",
    "TruncationWarning",
    # text
    "chunk_text",
]
