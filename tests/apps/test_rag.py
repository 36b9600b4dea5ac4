"""RAG context on real docstrings: budget, citations, MMR, retrieval quality; answer() against a stub server."""

from __future__ import annotations

import re

import numpy as np
import pytest

import latentspace as ls
from latentspace.apps import rag
from latentspace.apps.rag import mmr_order

from ..openai_stub import StubServer


@pytest.fixture(scope="module")
def stub():
    s = StubServer()
    yield s
    s.close()


def test_context_fits_the_budget_and_cites_stored_records(docs_col, default_enc):
    ctx = rag.retrieve_context(docs_col, "How do I compare two floating point numbers for equality?",
                               token_budget=400, k=6)
    assert 0 < ctx.tokens <= 400
    assert ctx.tokens == default_enc.count_tokens([ctx.text])[0]
    assert [s.n for s in ctx.sources] == list(range(1, len(ctx.sources) + 1))
    stored = {r.id: r for r in docs_col.get(ids=[s.id for s in ctx.sources])}
    for s in ctx.sources:
        assert f"[{s.n}] {s.document}" in ctx.text
        assert stored[s.id].document == s.document and stored[s.id].metadata == s.metadata
    assert ctx.source(1) is ctx.sources[0]
    with pytest.raises(ls.InvalidInputError, match="no source"):
        ctx.source(99)
    assert len(re.findall(r"^\[\d+\] ", ctx.text, flags=re.M)) == len(ctx.sources)


def test_the_passage_a_question_was_cut_from_comes_back(docs_col, real_docs):
    texts = real_docs[0]
    rng = np.random.default_rng(3)
    found = 0
    picks = [i for i in rng.choice(len(texts), 400, replace=False) if len(texts[i].split(". ")) >= 3][:30]
    assert len(picks) >= 20, len(picks)  # the corpus has long paragraphs enough to cut questions from
    for i in picks:
        first, rest = texts[i].split(". ", 1)
        ctx = rag.retrieve_context(docs_col, first, token_budget=2000, k=5)
        found += f"p{i}" in {s.id for s in ctx.sources}
    assert found / len(picks) >= 0.8, found


def test_mmr_drops_repeats_that_plain_ranking_keeps(store, real_docs, default_enc):
    texts, vecs, _, _ = real_docs
    col = store.create_collection("docs", encoder=default_enc)
    col.add([f"p{i}" for i in range(3000)], documents=texts[:3000], vectors=vecs[:3000], space=default_enc.spec)
    question = texts[10].split(". ")[0]
    top = col.search(question, k=1, mode="hybrid")[0]
    col.add([f"copy{j}" for j in range(4)], documents=[top.document] * 4, metadatas=[{"copy": j} for j in range(4)])
    plain = rag.retrieve_context(col, question, k=5, mmr=False, token_budget=5000)
    diverse = rag.retrieve_context(col, question, k=5, mmr=True, mmr_lambda=0.5, token_budget=5000)
    same = lambda ctx: sum(s.document == top.document for s in ctx.sources)  # noqa: E731
    assert same(plain) >= 4 and same(diverse) <= 2
    # lambda = 1 is plain relevance order
    assert mmr_order(np.array([3.0, 2.0, 1.0]), np.eye(3), 3, 1.0) == [0, 1, 2]
    assert mmr_order(np.array([3.0, 2.9, 1.0]), np.array([[1, 0], [1, 0], [0, 1]], float), 2, 0.3) == [0, 2]


def test_budget_skips_what_does_not_fit_and_refuses_a_budget_below_every_passage(docs_col):
    q = "Return the number of items in a container"
    full = rag.retrieve_context(docs_col, q, token_budget=100_000, k=8, mmr=False)
    sizes = sorted(s.tokens for s in full.sources)
    tight = rag.retrieve_context(docs_col, q, token_budget=sizes[0] + sizes[1], k=8, mmr=False)
    assert tight.tokens <= sizes[0] + sizes[1] and tight.skipped and len(tight.sources) >= 1
    n = len(docs_col)
    with pytest.raises(ls.InvalidInputError, match="token_budget=3 is smaller than every retrieved passage"):
        rag.retrieve_context(docs_col, q, token_budget=3)
    assert len(docs_col) == n


def test_bad_input(docs_col, store):
    for kwargs, match in [({"token_budget": 0}, "token_budget"), ({"k": 0}, "'k'"), ({"mmr_lambda": 2}, "mmr_lambda"),
                          ({"mode": "magic"}, "mode"), ({"fetch_k": 1, "k": 5}, "fetch_k")]:
        with pytest.raises(ls.InvalidInputError, match=match):
            rag.retrieve_context(docs_col, "files", **kwargs)
    with pytest.raises(ls.InvalidInputError, match="non-empty"):
        rag.retrieve_context(docs_col, "  ")
    raw = store.create_collection("raw", space=ls.SpaceSpec(model="test/x", dim=4))
    with pytest.raises(ls.InvalidInputError, match="pass count_tokens"):
        rag.retrieve_context(raw, "files")
    with pytest.raises(ls.InvalidInputError, match="without an encoder"):  # vector search needs the encoder
        rag.retrieve_context(raw, "files", count_tokens=lambda ts: [len(t.split()) for t in ts])
    with pytest.raises(ls.InvalidInputError, match="one non-negative int per text"):
        rag.retrieve_context(docs_col, "files", count_tokens=lambda ts: [1.5 for t in ts])


def test_keyword_context_on_raw_vectors_with_a_given_tokenizer(store, real_docs):
    texts, vecs, _, _ = real_docs
    raw = store.create_collection("raw", space=ls.SpaceSpec(model="sentence-transformers/all-MiniLM-L6-v2", dim=384))
    raw.add([f"p{i}" for i in range(2000)], documents=texts[:2000], vectors=vecs[:2000])
    words = lambda ts: [len(t.split()) for t in ts]  # noqa: E731  (say, the chat model's own counter)
    ctx = rag.retrieve_context(raw, "compare floating point numbers", mode="keyword", token_budget=120,
                               count_tokens=words)
    assert ctx.sources and ctx.tokens == len(ctx.text.split()) <= 120


def test_answer_maps_citations_back_to_records(docs_col, stub):
    ctx = rag.retrieve_context(docs_col, "How do I open a file?", token_budget=500, k=4)
    stub.script = ["429"]  # one rate limit, then an answer
    ans = rag.answer(ctx, base_url=stub.url, model="stub-chat", api_key_env=None, backoff=0.0)
    assert [s.n for s in ans.cited] == [1, 2] and ans.cited[0].id == ctx.sources[0].id
    assert ans.unknown_citations == [99]
    assert f"({len(ctx.sources)} sources seen)" in ans.text
    sent = stub.requests[-1]
    assert sent["model"] == "stub-chat" and sent["messages"][0]["role"] == "system"
    assert ctx.text in sent["messages"][1]["content"] and ctx.question in sent["messages"][1]["content"]
    assert ans.usage["prompt_tokens"] == 10


def test_answer_errors_are_typed(docs_col, stub):
    ctx = rag.retrieve_context(docs_col, "How do I open a file?", token_budget=500, k=2)
    stub.script = ["401"]
    with pytest.raises(ls.AuthError, match="refused"):
        rag.answer(ctx, base_url=stub.url, model="m", api_key_env=None)
    stub.script = ["malformed"]
    with pytest.raises(ls.UpstreamError, match="malformed"):
        rag.answer(ctx, base_url=stub.url, model="m", api_key_env=None)
    stub.script = ["500", "500"]
    with pytest.raises(ls.UpstreamError, match="500"):
        rag.answer(ctx, base_url=stub.url, model="m", api_key_env=None, max_retries=1, backoff=0.0)
    with pytest.raises(ls.InvalidInputError, match="base_url"):
        rag.answer(ctx, base_url="ftp://x", model="m")
    empty = rag.Context("q", "", [], 0, 10)
    with pytest.raises(ls.InvalidInputError, match="no sources"):
        rag.answer(empty, base_url=stub.url, model="m")
    with pytest.raises(ls.UpstreamError, match="unreachable"):
        rag.answer(ctx, base_url="http://127.0.0.1:9", model="m", max_retries=0)
