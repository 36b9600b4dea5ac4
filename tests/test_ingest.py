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
    with pytest.raises(ls.InvalidInputError, match="Cannot ingest"):
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
