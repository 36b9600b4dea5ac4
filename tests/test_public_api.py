import subprocess
import sys

import latentspace as ls

EXPECTED = {
    "__version__", "SpaceSpec", "Encoder", "SentenceTransformerEncoder", "TransformersEncoder",
    "OpenAICompatibleEncoder", "default_encoder", "encoder_from_config", "Store", "open_store", "CollectionInfo",
    "Collection", "WriteResult", "Hit", "Record", "HnswParams", "distances", "LatentSpaceError", "InvalidInputError",
    "SpaceMismatchError", "NotFoundError", "AlreadyExistsError", "CorruptStoreError", "StoreFormatError",
    "StoreLockedError", "ModelLoadError", "EncodingError", "NotFittedError", "BackendUnavailableError", "AuthError",
    "NotSupportedError",
    "TrainingDivergedError", "UpstreamError", "connect", "apps", "rag", "CLIPEncoder", "TruncationWarning",
    "chunk_text",
    "hits_to_pandas", "hits_to_arrow", "finetune", "FinetuneResult", "pairs_from_labels", "copy_collection", "CopyReport",
}


def test_public_names_are_exactly_the_intended_ones():
    assert set(ls.__all__) == EXPECTED
    for name in ls.__all__:
        assert getattr(ls, name) is not None


def test_errors_share_one_base_and_carry_http_status():
    for name in ls.__all__:
        obj = getattr(ls, name)
        if isinstance(obj, type) and issubclass(obj, Warning):
            assert issubclass(obj, UserWarning)  # warnings are not errors: the one warning class
        elif isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, ls.LatentSpaceError)
            assert 400 <= obj.http_status <= 599
    assert issubclass(ls.InvalidInputError, ValueError)
    assert issubclass(ls.NotFoundError, KeyError)
    assert str(ls.NotFoundError("no such thing")) == "no such thing"


def test_import_is_light():
    code = ("import sys, latentspace; print('torch' in sys.modules, 'sentence_transformers' in sys.modules, "
            "'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]


def test_apps_are_reachable_from_the_package():
    from latentspace.apps import rag

    assert ls.rag is rag and ls.apps.retrieve_context is rag.retrieve_context
    assert set(ls.apps.__all__) <= set(dir(ls.apps))
