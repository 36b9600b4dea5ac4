import json

import pytest

import latentspace as ls
from latentspace.ingest import Item, chunk_items, chunk_text, ingest, read_items


def test_chunks_cover_the_text_within_size_and_overlap():
    text = " ".join(f"word{i}." if i % 13 == 0 else f"word{i}" for i in range(3000))
    pieces = chunk_text(text, size=500, overlap=80)
    assert all(len(p) <= 500 for p in pieces)
    words = set(text.split())
    assert set(" ".join(pieces).split()) == words  # nothing lost
    for a, b in zip(pieces, pieces[1:]):
        assert a.split()[-1] in b or b.split()[0] in a  # neighbours overlap
    assert chunk_text("short text", 500, 50) == ["short text"]
    assert chunk_text("   ", 500, 50) == []
    with pytest.raises(ls.InvalidInputError):
        chunk_text(text, size=10, overlap=0)
    with pytest.raises(ls.InvalidInputError):
        chunk_text(text, size=500, overlap=400)


def test_chunk_items_keep_source():
    items = list(chunk_items([Item("a", "x " * 800, {"k": 1}), Item("b", "short", {})], 300, 30))
    assert items[-1].id == "b" and items[0].id == "a#0"
    assert items[0].metadata == {"k": 1, "source_id": "a", "chunk": 0}


def test_read_items_errors(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"id": 1, "text": "ok"}\nnot json\n')
    with pytest.raises(ls.InvalidInputError, match="x.jsonl:2"):
        list(read_items(bad))
    missing_field = tmp_path / "y.jsonl"
    missing_field.write_text(json.dumps({"id": "a", "body": "t"}) + "\n")
    with pytest.raises(ls.InvalidInputError, match="text-field"):
        list(read_items(missing_field))
    sheet = tmp_path / "y.xlsx"
    sheet.write_text("")
    with pytest.raises(ls.InvalidInputError, match="Cannot read"):
        list(read_items(sheet))
    with pytest.raises(ls.NotFoundError):
        list(read_items(tmp_path / "nope.jsonl"))


def test_ingest_is_resumable_and_updates_changed_records(store, tiny_encoder):
    col = store.create_collection("t", encoder=tiny_encoder)
    items = [Item(f"i{i}", f"text {i} about the cat", {"i": i}) for i in range(10)]
    first = ingest(col, items, batch_size=3)
    assert (first.added, first.skipped) == (10, 0)
    items[4] = Item("i4", "changed text about the dog", {"i": 4})
    second = ingest(col, items, batch_size=3)
    assert (second.added, second.replaced, second.skipped) == (0, 1, 9)
    assert col.get(ids=["i4"])[0].document == "changed text about the dog"


def _vector_rows(n=40, dim=8, seed=0):
    import numpy as np

    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, [{"id": f"v{i}", "text": f"row {i} " * 300 if i == 0 else f"row {i}", "embedding": x[i].tolist(),
                "group": i % 3} for i in range(n)]


def test_ingest_precomputed_vectors_from_jsonl_and_parquet(tmp_path, store):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, rows = _vector_rows()
    path = tmp_path / "vecs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = list(chunk_items(read_items(path, vector_field="embedding"), 100, 10))
    assert len(items) == 40 and items[0].text.startswith("row 0") and "embedding" not in items[0].metadata
    col = store.create_collection("v", space=ls.SpaceSpec(model="ext/model", dim=8, modality="vector"))
    rep = ingest(col, items, batch_size=16)
    assert (rep.records, rep.chunks, rep.added) == (40, 40, 40)
    rec = col.get(ids=["v0"], include_vectors=True)[0]
    assert rec.document == rows[0]["text"] and rec.metadata == {"group": 0}  # kept whole, not chunked
    np.testing.assert_allclose(rec.vector, x[0], atol=1e-7)
    assert col.search(vector=x[5], k=1)[0].id == "v5"
    assert ingest(col, items).skipped == 40  # resumable: same vectors, same content hash
    pq.write_table(pa.Table.from_pylist([{**r, "embedding": (np.asarray(r["embedding"]) * 1).tolist()}
                                         for r in rows[:5]]), tmp_path / "v.parquet")
    par = list(read_items(tmp_path / "v.parquet", vector_field="embedding"))
    assert len(par) == 5 and ingest(col, par).skipped == 5


def test_ingest_vector_errors(tmp_path, store, tiny_encoder):
    _, rows = _vector_rows(4)
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[1], "embedding": "nope"}) + "\n")
    with pytest.raises(ls.InvalidInputError, match="not a list of numbers"):
        list(read_items(path, vector_field="embedding"))
    with pytest.raises(ls.InvalidInputError, match="no vector field 'vec'"):
        list(read_items(path, vector_field="vec"))
    col = store.create_collection("v", space=ls.SpaceSpec(model="ext/model", dim=8, modality="vector"))
    from latentspace.ingest import Item

    with pytest.raises(ls.InvalidInputError, match="all records need vectors"):
        ingest(col, [Item("a", "t", {}, rows[0]["embedding"]), Item("b", "t", {})])
    with pytest.raises(ls.InvalidInputError, match="dim"):
        ingest(col, [Item("a", None, {}, [0.5, 0.5])])
    bound = store.create_collection("t", encoder=tiny_encoder)
    with pytest.raises(ls.SpaceMismatchError):  # vectors must name the encoder's space
        ingest(bound, [Item("a", "t", {}, [0.0] * (tiny_encoder.spec.dim - 1) + [1.0])])
    assert len(col) == 0 and len(bound) == 0


def test_text_template_makes_the_text_from_several_fields(tmp_path):
    from latentspace.ingest import text_template

    path = tmp_path / "pkgs.jsonl"
    rows = [{"id": "a", "synopsis": "tiny editor", "body": "Edits text files.", "section": "editors"},
            {"id": "b", "synopsis": "no body here", "section": "misc"},
            {"id": "c", "body": "Only a body.", "synopsis": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = list(read_items(path, template="{synopsis}. {body}"))
    assert [i.text for i in items] == ["tiny editor. Edits text files.", "no body here.", "Only a body."]
    assert items[0].metadata == {"section": "editors"}  # the template's fields are the text, not metadata
    with pytest.raises(ls.InvalidInputError, match="none of the template's fields"):
        list(read_items(path, template="{title}"))
    with pytest.raises(ls.InvalidInputError, match="at least one field"):
        text_template("no fields")
    with pytest.raises(ls.InvalidInputError, match="text template"):
        list(read_items(tmp_path, template="{a}"))


def test_the_report_counts_records_and_chunks(store, tiny_encoder):
    col = store.create_collection("c", encoder=tiny_encoder)
    items = [Item("long", "the cat sat on the mat. " * 40, {}), Item("short", "a dog", {}), Item("other", "x y", {})]
    rep = ingest(col, chunk_items(items, 200, 20))
    assert rep.records == 3 and rep.split == 1 and rep.chunks == len(col) > 3 and rep.added == rep.chunks
    assert "Read 3 records as" in rep.describe() and "1 record longer than the chunk size" in rep.describe()
    again = ingest(col, chunk_items(items, 200, 20))
    assert (again.records, again.added, again.skipped) == (3, 0, rep.chunks)


def test_chunks_are_cut_further_where_the_model_would_truncate_them(store, tiny_encoder):
    import warnings

    limit = tiny_encoder.token_limit
    text = " ".join(f"word{i}" for i in range(300))  # ~2,200 characters, far more tokens than the limit
    assert tiny_encoder.count_tokens([text])[0] > limit
    plain = list(chunk_items([Item("a", text, {})], 3000, 50))
    assert len(plain) == 1  # by characters alone, one piece the model would cut
    fitted = list(chunk_items([Item("a", text, {})], 3000, 50, count_tokens=tiny_encoder.count_tokens,
                              max_tokens=limit))
    assert len(fitted) > 1 and max(tiny_encoder.count_tokens([i.text for i in fitted])) <= limit
    assert set(" ".join(i.text for i in fitted).split()) == set(text.split())  # nothing lost
    assert [i.metadata["chunk"] for i in fitted] == list(range(len(fitted)))
    col = store.create_collection("c", encoder=tiny_encoder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = ingest(col, plain)
    assert rep.truncated == 1 and sum(issubclass(w.category, ls.TruncationWarning) for w in caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ingest(col, fitted).truncated == 0
