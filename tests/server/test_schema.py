"""schemathesis against the server's OpenAPI, with a key that may do everything (without
one every case would get 401 and prove nothing): no 5xx, every response as the schema says."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

import latentspace as ls

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, settings  # noqa: E402

from latentspace.server.app import Settings, create_app  # noqa: E402
from latentspace.server.keys import KeyStore  # noqa: E402


def _app():
    folder = Path(tempfile.mkdtemp(prefix="ls-schema-")) / "s"
    st = ls.open_store(folder)
    v = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    st.create_collection("docs", space=ls.SpaceSpec(model="test/vectors", dim=8)).add(
        [f"r{i}" for i in range(10)], vectors=v / np.linalg.norm(v, axis=1, keepdims=True),
        documents=[f"doc {i}" for i in range(10)])
    st.close()
    key, _ = KeyStore(folder / "keys.json").create("admin")
    return create_app(Settings(store=str(folder))), key


APP, KEY = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_schema(case):
    # every check but "positive data accepted": the schema cannot say that vectors need the
    # collection's space and dimension, or which names exist, so schema-valid requests may be
    # refused (422/404/409) — with a documented, typed answer, which the other checks verify
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"},
                           excluded_checks=[schemathesis.checks.positive_data_acceptance])
