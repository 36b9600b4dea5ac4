from collections import OrderedDict

import numpy as np
import pytest

import latentspace as ls
from latentspace.storage.filter import matches as _matches
from latentspace.storage.filter import parse

from ..conftest import unit_rows
from .conftest import BACKENDS


def matches(where, document, metadata) -> bool:
    """The reference semantics: the library's own evaluator of the parsed filter tree."""
    return _matches(parse(where), document, metadata)


FILTERS = [
    {"year": 2021},
    {"year": {"$gte": 2020}},
    {"year": {"$gt": 2019, "$lt": 2022}},
    {"year": {"$lte": 2019.5}},
    {"year": {"$ne": 2020}},
    {"lang": {"$in": ["en", "de"]}},
    {"lang": {"$nin": ["en"]}},
    {"lang": {"$in": []}},
    {"score": {"$exists": True}},
    {"score": {"$exists": False}},
    {"flag": True},
    {"flag": False},
    {"flag": {"$ne": True}},
    {"note": None},
    {"tags": {"$contains": "red"}},
    {"tags": {"$contains": 3}},
    {"lang": {"$contains": "e"}},
    {"year": "2021"},  # a string never equals a number
    {"year": {"$gte": "2020"}},
    {"$and": [{"year": {"$gte": 2020}}, {"lang": "en"}]},
    {"$or": [{"year": 2018}, {"flag": True}]},
    {"$not": {"lang": "en"}},
    {"year": {"$not": {"$gt": 2020}}},
    {"$contains": "socket"},
    {"$and": [{"$contains": "file"}, {"$or": [{"lang": "fr"}, {"score": {"$lt": 0.5}}]}]},
    {"year": 2021, "lang": "en"},
]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    words = ["socket", "file", "read", "write", "cat", "dog"]
    metas, docs = [], []
    for i in range(300):
        m = {"year": int(rng.integers(2016, 2024))}
        if i % 7 == 0:
            m["year"] = str(m["year"])  # strings that look like numbers
        if i % 3:
            m["lang"] = str(rng.choice(["en", "de", "fr"]))
        if i % 4 == 0:
            m["score"] = float(rng.random())
        if i % 5 != 4:
            m["flag"] = bool(rng.integers(0, 2))
        if i % 6 == 0:
            m["note"] = None
        if i % 2 == 0:
            m["tags"] = [str(rng.choice(["red", "green", "blue"])), int(rng.integers(0, 5))]
        if i % 11 == 0:
            m["year"] = float(m["year"]) + 0.5 if isinstance(m["year"], int) else m["year"]
        metas.append(m)
        docs.append(" ".join(rng.choice(words, size=4)))
    return docs, metas


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def col(request, tmp_path_factory, data):
    docs, metas = data
    st = BACKENDS[request.param](tmp_path_factory.mktemp("f") / "s")
    c = st.create_collection("f", space=ls.SpaceSpec(model="m", dim=8, modality="vector"))
    c.add([f"r{i}" for i in range(len(docs))], documents=docs, metadatas=metas, vectors=unit_rows(len(docs), 8))
    yield c
    st.close()


@pytest.mark.parametrize("where", FILTERS, ids=[str(f) for f in FILTERS])
def test_filter_matches_reference(col, data, where):
    docs, metas = data
    expected = {f"r{i}" for i in range(len(docs)) if matches(where, docs[i], metas[i])}
    got = {r.id for r in col.get(where=where)}
    assert got == expected
    assert col.count(where=where) == len(expected)
    q = unit_rows(1, 8, seed=42)[0]
    hits = col.search(vector=q, k=10, where=where)
    assert len(hits) == min(10, len(expected))
    assert {h.id for h in hits} <= expected
    # one query takes the single-query fast path: the same hits as the batch path
    assert hits == col.search_batch(vectors=[q], k=10, where=where)[0]


@pytest.mark.parametrize("where,path", [
    ({"year": {"$regex": "x"}}, "where['year']['$regex']"),
    ({"$xor": []}, "where['$xor']"),
    ({"year": {"$gt": [1]}}, "where['year']['$gt']"),
    ({"year": {"$in": 3}}, "where['year']['$in']"),
    ({"year": {"$exists": 1}}, "where['year']['$exists']"),
    ({"$and": {}}, "where['$and']"),
    ({"$or": [3]}, "where['$or'][0]"),
    ({"year": {"nested": 1}}, "where['year']['nested']"),
    ({"$contains": ""}, "where['$contains']"),
    ({"year": {"$eq": {"a": 1}}}, "where['year']['$eq']"),
    ({}, "where"),
])
def test_bad_filters_name_their_path(col, where, path):
    before = len(col)
    with pytest.raises(ls.InvalidInputError) as info:
        col.search(vector=unit_rows(1, 8)[0], where=where)
    assert path in str(info.value)
    with pytest.raises(ls.InvalidInputError):
        col.delete(where=where)
    assert len(col) == before


def test_parsed_trees_are_remembered_by_exact_content(col):
    """A filter is parsed once and its tree remembered by content, telling apart values that
    Python hashes alike (True, 1, 1.0); a filter changed in place is parsed anew."""
    assert type(parse({"flag": True}).value) is bool and type(parse({"flag": 1}).value) is int
    assert type(parse({"flag": 1.0}).value) is float
    with_true = {r.id for r in col.get(where={"flag": True})}
    assert with_true and not with_true & {r.id for r in col.get(where={"flag": 1})}  # booleans are not numbers
    assert parse({"flag": True}) != parse({"flag": 1}) and parse({"y": {"$in": [1]}}) != parse({"y": {"$in": [True]}})
    assert parse({"y": {"$in": [1, 2]}}) == parse({"y": {"$in": [1, 2]}}) and parse({"y": 1.0}) != parse({"y": 1})
    # searches too: a backend's per-filter state must not mistake one of these filters for the other
    q = unit_rows(1, 8, seed=42)[0]
    for _ in range(3):  # repeated: a repeated filter takes the planner's lean path
        assert {h.id for h in col.search(vector=q, k=300, where={"flag": True})} == with_true
        assert col.search(vector=q, k=10, where={"flag": 1}) == []
    where = {"year": {"$gt": 2020}}
    tree = parse(where)
    assert parse({"year": {"$gt": 2020}}) is tree
    where["year"]["$gt"] = 2022
    assert parse(where).value == 2022 and col.count(where=where) < col.count(where={"year": {"$gt": 2020}})
    assert parse({"year": np.int64(3)}).value == 3  # values parse cannot key still parse
    assert parse(OrderedDict(year=2021)) == parse({"year": 2021})  # (nor a dict subclass)
    assert parse({"y": {"$in": (1, 2)}}) == parse({"y": {"$in": [1, 2]}})
    for _ in range(2):  # a bad filter is never remembered
        with pytest.raises(ls.InvalidInputError):
            parse({"year": {"$gt": [1]}})


def test_values_are_bound_not_interpolated(col):
    evil = "x') OR 1=1 --"
    assert col.get(where={"lang": evil}) == []
    assert col.get(where={"$contains": evil}) == []
    with pytest.raises(ls.InvalidInputError):
        col.get(where={'la"ng': "en"})


EVIL = ['x" or 1==1 or metadata["k"]=="', 'x\') OR 1=1 --', "a\\b", "a\\", "line\nbreak", "tab\tx", "bell\x07",
        "]) or true", "%_", "100%", "it's", '"', ""]


def test_values_that_look_like_syntax_match_literally(backend_name, tmp_path):
    """Quotes, backslashes, brackets, control characters and 'or 1==1' are values: each
    filter returns exactly what the reference evaluator says, on every backend."""
    st = BACKENDS[backend_name](tmp_path / "s")
    col = st.create_collection("e", space=ls.SpaceSpec(model="m", dim=4, modality="vector"))
    docs = [f"doc {v} end" for v in EVIL] + ["plain"]
    metas = [{"k": v, "tags": [v, "t"]} for v in EVIL] + [{"other": 1}]
    col.add([f"e{i}" for i in range(len(docs))], documents=docs, metadatas=metas, vectors=unit_rows(len(docs), 4))
    for v in EVIL:
        for where in ({"k": v}, {"k": {"$ne": v}}, {"k": {"$in": [v, "zz"]}}, {"k": {"$nin": [v]}},
                      {"tags": {"$contains": v}}, {"k": {"$gte": v}}, *([{"$contains": v}] if v else [])):
            expected = {f"e{i}" for i in range(len(docs)) if matches(where, docs[i], metas[i])}
            assert {r.id for r in col.get(where=where)} == expected, where
            assert {h.id for h in col.search(vector=unit_rows(1, 4, seed=3)[0], k=20, where=where)} == expected, where
    st.close()


def test_filters_parse_once_into_a_tree_that_backends_compile():
    from latentspace.storage.filter import And, DocContains, Field, Not, Or
    from latentspace.storage.embedded.sqlfilter import compile_sql

    tree = parse({"year": {"$gte": 2020, "$ne": 2022}, "$or": [{"lang": {"$nin": ["en"]}}, {"$contains": "cat"}],
                  "tags": {"$not": {"$contains": "x"}}})
    assert tree == And((
        And((Field("year", "$gte", 2020), Not(Field("year", "$eq", 2022)))),
        Or((Not(Field("lang", "$in", ("en",))), DocContains("cat"))),
        Not(Field("tags", "$contains", "x")),
    ))
    sql, params = compile_sql(tree)
    assert "?" in sql and "2020" not in sql and 2020 in params  # values are bound, never spliced
    assert parse(None) is None and compile_sql(None) == ("1", [])
    with pytest.raises(ls.InvalidInputError, match=r"where\['year'\]\['\$gt'\]: \$gt takes a number or a string"):
        parse({"year": {"$gt": [1]}})


def test_a_parsed_filter_crosses_a_wire_unchanged():
    """``to_dict`` gives back a filter that parses to the same tree (the remote backend sends it)."""
    import json

    from latentspace.storage.filter import to_dict

    for where in FILTERS + [{"k": {"$in": ["a\"b", 1, None, True]}}, {"x": {"$exists": False}}]:
        tree = parse(where)
        assert parse(json.loads(json.dumps(to_dict(tree)))) == tree, where
    assert to_dict(None) is None
