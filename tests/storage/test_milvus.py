"""What only the Milvus backend has: names as aliases, the space in the collection's
properties, foreign or altered collections refused, filters compiled to quoted expressions,
typed connection errors. (The shared suites run on it through conftest.BACKENDS.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

import latentspace as ls
from latentspace.storage.filter import parse

from ..conftest import unit_rows

pytest.importorskip("milvus_lite")

from latentspace.storage.milvus import alias_of, name_of, parse_uri  # noqa: E402
from latentspace.storage.milvus.expr import compile_expr  # noqa: E402
from latentspace.storage.milvus.store import FINGERPRINT, INFO  # noqa: E402

SPEC = ls.SpaceSpec(model="test/model", dim=8, metric="cosine", modality="vector")


@pytest.fixture
def uri(tmp_path):
    return f"milvus+lite://{tmp_path}/m"


@pytest.mark.parametrize("name", ["docs", "Docs_2", "my.docs", "2024-notes", "ls_x", "lsc_y", "~docs~0123abcd~x",
                                  "~docs~retired~12", "a" * 128])
def test_every_name_has_a_reversible_milvus_alias(name):
    import re

    alias = alias_of(name)
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", alias) and len(alias) <= 255
    assert name_of(alias) == name
    assert (alias == name) == (name in ("docs", "Docs_2", "a" * 128))
    assert name_of("lsc_0123") is None  # a physical collection is nobody's name


def test_uris():
    assert parse_uri("milvus://localhost:19530") == {"uri": "http://localhost:19530"}
    assert parse_uri("milvus://bob:s%40cret@db.example:1234/prod") == {
        "uri": "http://db.example:1234", "token": "bob:s@cret", "db_name": "prod"}
    assert parse_uri("milvus+https://host") == {"uri": "https://host:19530"}
    assert str(parse_uri("milvus+lite:///tmp/x")["lite"]) == "/tmp/x"
    for bad in ("milvus://", "milvus+lite://", "mysql://h"):
        with pytest.raises(ls.InvalidInputError):
            parse_uri(bad)


def test_filters_compile_to_a_superset_with_quoted_values():
    expr, exact = compile_expr(parse({"k": 'x" or 1==1 or metadata["k"]=="'}))
    assert expr == 'metadata["k"] == "x\\" or 1==1 or metadata[\\"k\\"]==\\""' and exact
    assert compile_expr(parse({"k": "a\\b\nc"}))[0] == 'metadata["k"] == "a\\\\b\\nc"'
    assert compile_expr(parse({"k": "bell\x07"})) == (None, False)  # no safe escape: checked afterwards only
    assert compile_expr(parse({"k": 1})) == ('metadata["k"] == 1', False)  # Milvus: 1 == 1.0 == true
    assert compile_expr(parse({"k": {"$ne": "a"}})) == ('(not metadata["k"] == "a" or metadata["k"] is null)', True)
    assert compile_expr(parse({"k": {"$ne": 1}})) == (None, False)
    assert compile_expr(parse({"k": {"$in": ["a", "b"]}})) == ('(metadata["k"] == "a" or metadata["k"] == "b")', True)
    assert compile_expr(parse({"$or": [{"k": "a"}, {"n": {"$exists": True}}]})) == (None, False)
    expr, exact = compile_expr(parse({"$and": [{"k": "a"}, {"n": {"$gt": 2}}]}))
    assert expr == '(metadata["k"] == "a" and metadata["n"] > 2)' and not exact
    assert compile_expr(None) == (None, True)


def test_the_space_lives_in_the_collection_and_a_second_client_enforces_it(uri):
    st = ls.open_store(uri)
    col = st.create_collection("docs", space=SPEC, metadata={"owner": "me"})
    col.add(["a", "b"], vectors=unit_rows(2, 8))
    other = ls.open_store(uri)  # a second client on the same Milvus
    seen = other.get_collection("docs")
    assert seen.spec == SPEC and seen.spec.fingerprint == SPEC.fingerprint and len(seen) == 2
    with pytest.raises(ls.SpaceMismatchError):
        seen.add(["c"], vectors=unit_rows(1, 8), space=SPEC.replace(model="other/model"))
    with pytest.raises(ls.InvalidInputError):
        seen.add(["c"], vectors=unit_rows(1, 16))
    props = st._backend._client.describe_collection(st._backend._physical("docs"))["properties"]
    info = json.loads(props[INFO])
    assert info["spec"] == SPEC.to_dict() and props[FINGERPRINT] == SPEC.fingerprint
    assert info["metadata"] == {"owner": "me"}
    other.close()
    st.close()


def test_an_altered_spec_or_a_foreign_collection_is_refused(uri):
    from pymilvus import DataType

    st = ls.open_store(uri)
    st.create_collection("docs", space=SPEC).add(["a"], vectors=unit_rows(1, 8))
    client, physical = st._backend._client, st._backend._physical("docs")
    info = json.loads(client.describe_collection(physical)["properties"][INFO])
    info["spec"]["normalize"] = False  # edited by hand
    client.alter_collection_properties(physical, properties={INFO: json.dumps(info)})
    with pytest.raises(ls.StoreFormatError, match="was altered: its spec .* has fingerprint"):
        st.get_collection("docs")
    schema = client.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=4)
    client.create_collection("theirs", schema=schema)
    with pytest.raises(ls.NotFoundError, match="latentspace did not create it"):
        st.get_collection("theirs")
    assert st.list_collections() == [] or [c.name for c in st.list_collections()] == []  # neither is listed
    with pytest.raises(ls.NotFoundError):
        st.delete_collection("theirs")
    assert client.has_collection("theirs")  # never dropped
    client.create_alias("theirs", "alias_of_theirs")
    with pytest.raises(ls.StoreFormatError, match="was not made by latentspace"):
        st.get_collection("alias_of_theirs")
    st.close()


def test_migration_switches_an_alias_and_rolls_back(uri, tiny_encoder):
    st = ls.open_store(uri)
    col = st.create_collection("docs", space=SPEC)
    col.add(["a", "b", "c"], vectors=unit_rows(3, 8))
    new_spec = SPEC.replace(model="test/other")
    shadow = st.create_collection("~docs~" + new_spec.fingerprint, space=new_spec)
    shadow.add(["a", "b", "c"], vectors=unit_rows(3, 8, seed=5))
    backend = st._backend
    before = backend._physical("docs")
    backend.swap("docs", "~docs~" + new_spec.fingerprint, "migrate")
    assert st.get_collection("docs").spec == new_spec and backend._physical("docs") != before
    assert st.list_names() == ["docs"]  # the retired space is the store's own
    assert [h["action"] for h in st.collection_history("docs")] == ["migrate"]
    st.rollback_collection("docs")
    assert st.get_collection("docs").spec == SPEC and backend._physical("docs") == before
    assert [h["action"] for h in st.collection_history("docs")] == ["migrate", "rollback"]
    st.rename_collection("docs", "notes")
    assert st.get_collection("notes").spec == SPEC and st.list_names() == ["notes"]
    st.rollback_collection("notes")  # the retired space moved with the name
    assert st.get_collection("notes").spec == new_spec
    assert st.drop_retired("notes") == 1
    st.close()


def test_documents_beyond_a_varchar_are_refused_whole(uri):
    st = ls.open_store(uri)
    col = st.create_collection("docs", space=SPEC)
    with pytest.raises(ls.InvalidInputError, match="65,535 bytes"):
        col.add(["a", "b"], vectors=unit_rows(2, 8), documents=["ok", "x" * 70_000])
    assert len(col) == 0
    st.close()


def test_unreachable_milvus_is_one_typed_line():
    with pytest.raises(ls.BackendUnavailableError, match=r"Cannot reach Milvus at http://127.0.0.1:9.*docs/milvus.md"):
        ls.open_store("milvus://127.0.0.1:9", timeout=2)
    with pytest.raises(ls.InvalidInputError, match="token, db_name, timeout and create"):
        ls.open_store("milvus://127.0.0.1:9", lock_timeout=3)


def test_scores_follow_the_one_convention(uri):
    x = unit_rows(50, 8, seed=1)
    for metric in ("cosine", "dot", "l2"):
        st = ls.open_store(uri)
        col = st.create_collection(metric, space=SPEC.replace(metric=metric, normalize=metric == "cosine"))
        col.add([f"r{i}" for i in range(50)], vectors=x * (1 if metric != "l2" else 3))
        mem = ls.open_store(":memory:").create_collection("m", space=SPEC.replace(metric=metric, normalize=metric == "cosine"))
        mem.add([f"r{i}" for i in range(50)], vectors=x * (1 if metric != "l2" else 3))
        q = unit_rows(1, 8, seed=9)[0]
        got, want = col.search(vector=q, k=5), mem.search(vector=q, k=5)
        assert [h.id for h in got] == [h.id for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-4)
        np.testing.assert_allclose([h.distance for h in got], [h.distance for h in want], atol=1e-4)
        st.close()


def test_collection_migrate_and_rollback_on_milvus(uri, tiny_st, tiny_encoder):
    st = ls.open_store(uri)
    col = st.create_collection("docs", encoder=tiny_encoder)
    col.add([f"d{i}" for i in range(40)], documents=[f"the cat {w} sat" for w in range(40)])
    other = ls.SentenceTransformerEncoder(str(tiny_st), precision="fp32", normalize=False)
    report = col.migrate(other, queries=10)
    assert report.switched and report.records == 40
    assert st.get_collection("docs").spec == other.spec
    st.rollback_collection("docs")
    assert st.get_collection("docs").spec == tiny_encoder.spec and len(st.get_collection("docs")) == 40
    assert [h["action"].split()[0] for h in st.collection_history("docs")] == ["migrate", "rollback"]
    st.close()
    again = ls.open_store(uri)  # the switch persisted: the aliases are Milvus'
    assert again.get_collection("docs").spec == tiny_encoder.spec
    again.close()


def test_credentials_and_server_versions_are_typed(uri):
    """What a real server says (no server here): refused credentials are AuthError, an
    older server BackendUnavailableError, each in one line."""
    from pymilvus import MilvusException

    st = ls.open_store(uri)
    backend = st._backend
    err = backend._connect_error("http://h:19530", MilvusException(message="auth check failure, please check "
                                                                           "username and password"))
    assert isinstance(err, ls.AuthError) and "\n" not in str(err) and "user:password" in str(err)
    err = backend._connect_error("http://h:19530", MilvusException(message="connection refused"))
    assert isinstance(err, ls.BackendUnavailableError) and "docs/milvus.md" in str(err)

    class Old:
        def get_server_version(self):
            return "v2.5.4"

    real, backend._client = backend._client, Old()
    try:
        with pytest.raises(ls.BackendUnavailableError, match=r"Milvus v2.5.4 is older .* 3\.0"):
            backend._check_version()
    finally:
        backend._client = real
    st.close()
