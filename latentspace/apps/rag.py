"""RAG context: retrieve, diversify, pack into a token budget, cite; optionally ask a chat model.

>>> ctx = ls.rag.retrieve_context(col, "How do I read a gzip file?", token_budget=600)  # doctest: +SKIP
>>> print(ctx.text)          # "[1] ...\n\n[2] ..."  -- what goes into the prompt
>>> ctx.sources[0].id        # what [1] refers to

No LLM is needed for :func:`retrieve_context`. :func:`answer` sends the context to an
OpenAI-compatible ``/chat/completions`` endpoint and maps the ``[n]`` citations in the
reply back to records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..collections.graph import unit_rows
from ..core.errors import InvalidInputError, UpstreamError
from ..core.validation import MAX_K, check_choice, check_float, check_int, check_query_text

SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources below. Cite every claim with the "
    "number of its source in square brackets, like [1]. If the sources do not contain the "
    "answer, say that they do not."
)


@dataclass(frozen=True)
class Source:
    """A passage in the context: ``[n]`` in the text refers to record ``id``."""

    n: int
    id: str
    score: float
    document: str
    metadata: dict[str, Any]
    tokens: int

    def to_dict(self) -> dict:
        return {"n": self.n, "id": self.id, "score": self.score, "metadata": self.metadata, "tokens": self.tokens,
                "document": self.document}


@dataclass(frozen=True)
class Context:
    question: str
    text: str  # the packed, numbered passages
    sources: list[Source]
    tokens: int  # of ``text``, counted by the collection's tokenizer
    token_budget: int
    skipped: list[str] = field(default_factory=list)  # retrieved and chosen, but over the budget

    def source(self, n: int) -> Source:
        """The source that ``[n]`` cites."""
        for s in self.sources:
            if s.n == n:
                return s
        raise InvalidInputError(f"There is no source [{n}] in this context (it has 1..{len(self.sources)}).")

    def messages(self, system: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
        """Chat messages (system + user) that put the context before the question."""
        return [{"role": "system", "content": system},
                {"role": "user", "content": f"Sources:\n\n{self.text}\n\nQuestion: {self.question}"}]

    def to_dict(self) -> dict:
        return {"question": self.question, "text": self.text, "tokens": self.tokens, "token_budget": self.token_budget,
                "sources": [s.to_dict() for s in self.sources], "skipped": self.skipped}


#: cosine at which a candidate repeats a picked passage
REPEAT = 0.999


def mmr_order(relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> list[int]:
    """Maximal marginal relevance: repeatedly pick ``argmax lam * rel - (1 - lam) * max_sim_to_picked``.

    ``relevance`` is scaled to [0, 1]; similarity is cosine between the candidates' vectors.
    A candidate that repeats a picked one (cosine >= ``REPEAT``) adds nothing and is taken
    only when nothing else is left, whatever the spread of the relevance scores.
    """
    n = len(relevance)
    if n == 0:
        return []
    span = relevance.max() - relevance.min()
    rel = (relevance - relevance.min()) / span if span > 0 else np.ones(n)
    unit = unit_rows(vectors)
    sims = unit @ unit.T
    picked: list[int] = []
    max_sim = np.full(n, -np.inf)
    free = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        fresh = free & (max_sim < REPEAT) if lam < 1.0 else free
        score = np.where(fresh if fresh.any() else free, lam * rel - (1 - lam) * penalty, -np.inf)
        i = int(np.argmax(score))
        picked.append(i)
        free[i] = False
        max_sim = np.maximum(max_sim, sims[i])
    return picked


def retrieve_context(
    col, question: str, *, token_budget: int = 1_000, k: int = 8, fetch_k: int | None = None, mmr: bool = True,
    mmr_lambda: float = 0.5, mode: str = "hybrid", alpha: float = 0.5, where: dict | None = None,
    count_tokens=None,
) -> Context:
    """Retrieve passages for ``question``, diversify them with MMR, and pack up to ``k`` of them,
    most relevant first, into ``token_budget`` tokens (counted with the collection encoder's
    tokenizer, or by ``count_tokens``: a function from a list of texts to their token counts,
    for example the chat model's own tokenizer). A passage that does not fit is skipped and a
    later, shorter one may still fit.
    """
    check_query_text(question, "retrieve_context")
    token_budget = check_int(token_budget, "token_budget", "retrieve_context", 1, 10_000_000)
    k = check_int(k, "k", "retrieve_context", 1, 1_000)
    fetch_k = check_int(fetch_k if fetch_k is not None else max(4 * k, 20), "fetch_k", "retrieve_context", k, MAX_K)
    lam = check_float(mmr_lambda, "mmr_lambda", "retrieve_context", 0.0, 1.0)
    check_choice(mode, "mode", "retrieve_context", ("vector", "exact", "keyword", "hybrid"))
    if count_tokens is None:
        if not col.has_encoder:
            raise InvalidInputError(
                f"retrieve_context counts tokens with the collection's encoder, and {col.name!r} has none; "
                "pass count_tokens= (a function from a list of texts to their token counts)."
            )
        count_tokens = col.encoder.count_tokens
    elif not callable(count_tokens):
        raise InvalidInputError("count_tokens must be a function from a list of texts to a list of token counts.")
    hits = [h for h in col.search(question, k=fetch_k, where=where, mode=mode, alpha=alpha, include_vectors=True)
            if h.document]
    if not hits:
        return Context(question, "", [], 0, token_budget)
    if mmr:
        order = mmr_order(np.array([h.score for h in hits]), np.stack([h.vector for h in hits]), k, lam)
    else:
        order = list(range(min(k, len(hits))))
    chosen = [hits[i] for i in order]
    # each entry counted on its own, with its "[n] " and the tokenizer's special tokens: an
    # upper bound of its share in the joined text, so the packed text never exceeds the budget
    entries, used, skipped = [], 0, []
    sizes = _counts(count_tokens, [f"[{len(chosen)}] {h.document}" for h in chosen])
    for h, size in zip(chosen, sizes):
        if used + size > token_budget:
            skipped.append(h.id)
            continue
        entries.append((h, size))
        used += size
    if not entries:
        smallest = min(sizes)
        raise InvalidInputError(
            f"token_budget={token_budget} is smaller than every retrieved passage (the shortest needs {smallest} "
            f"tokens). Raise token_budget to at least {smallest}, or store shorter chunks (ingest --chunk-size)."
        )
    sources = [Source(n, h.id, float(h.score), h.document, h.metadata, size) for n, (h, size) in enumerate(entries, 1)]
    text = "\n\n".join(f"[{s.n}] {s.document}" for s in sources)
    tokens = _counts(count_tokens, [text])[0]
    return Context(question, text, sources, tokens, token_budget, skipped)


def _counts(count_tokens, texts: list[str]) -> list[int]:
    sizes = list(count_tokens(texts))
    if len(sizes) != len(texts) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes):
        raise InvalidInputError(f"count_tokens must return one non-negative int per text; got {sizes[:5]!r}.")
    return sizes


@dataclass(frozen=True)
class Answer:
    text: str
    cited: list[Source]  # the sources the reply cites, in order of first citation
    unknown_citations: list[int]  # [n] in the reply that are not in the context
    context: Context
    model: str
    usage: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"text": self.text, "model": self.model, "usage": self.usage, "unknown_citations": self.unknown_citations,
                "cited": [{"n": s.n, "id": s.id, "metadata": s.metadata} for s in self.cited],
                "context": self.context.to_dict()}


def answer(
    context: Context, *, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY",
    system: str = SYSTEM_PROMPT, temperature: float = 0.0, max_tokens: int | None = None, max_retries: int = 3,
    backoff: float = 0.5, timeout: float = 120.0,
) -> Answer:
    """Ask an OpenAI-compatible chat endpoint (``{base_url}/chat/completions``) to answer from ``context``."""
    import httpx

    from ..core.http import post_json

    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise InvalidInputError(f"base_url must start with http:// or https://. Got {base_url!r}.")
    if not context.sources:
        raise InvalidInputError("The context has no sources: nothing was retrieved, so there is nothing to answer from.")
    body: dict[str, Any] = {"model": model, "messages": context.messages(system),
                            "temperature": check_float(temperature, "temperature", "answer", 0.0, 2.0)}
    if max_tokens is not None:
        body["max_tokens"] = check_int(max_tokens, "max_tokens", "answer", 1, 1_000_000)
    url = f"{base_url.rstrip('/')}/chat/completions"
    with httpx.Client(timeout=timeout) as client:
        payload = post_json(client, url, body, api_key_env=api_key_env, max_retries=max_retries, backoff=backoff,
                            error=UpstreamError, what="Chat API")
    try:
        text = payload["choices"][0]["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("content is not a string")
    except (KeyError, IndexError, TypeError) as exc:
        raise UpstreamError(
            f"Chat API at {url} sent a malformed response (expected choices[0].message.content): {exc!r}"
        ) from None
    cited, unknown, seen = [], [], set()
    valid = {s.n: s for s in context.sources}
    for m in re.finditer(r"\[(\d+)\]", text):
        n = int(m.group(1))
        if n in seen:
            continue
        seen.add(n)
        (cited.append(valid[n]) if n in valid else unknown.append(n))
    return Answer(text, cited, unknown, context, payload.get("model", model), payload.get("usage") or {})
