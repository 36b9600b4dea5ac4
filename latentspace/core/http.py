"""POST JSON with retries: the one HTTP loop of the OpenAI-compatible clients (embeddings, chat).

httpx is imported by the callers' constructors, never by ``import latentspace``.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from .errors import AuthError, LatentSpaceError

#: statuses worth another try: rate limits, timeouts and server errors
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def auth_headers(api_key_env: str | None) -> dict[str, str]:
    """JSON headers, with ``Authorization: Bearer`` from the environment variable when set."""
    headers = {"Content-Type": "application/json"}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
    return headers


def backoff_delay(attempt: int, backoff: float, retry_after: str | None) -> float:
    delay = backoff * (2**attempt) * (0.5 + random.random() / 2)
    if retry_after:
        try:
            delay = max(delay, min(float(retry_after), 60.0))
        except ValueError:
            pass
    return delay


def post_json(client: Any, url: str, body: dict, *, api_key_env: str | None, max_retries: int, backoff: float,
              error: type[LatentSpaceError], what: str) -> Any:
    """POST ``body`` to ``url``; retry transport errors, 429 and 5xx with exponential backoff
    (honouring ``Retry-After``); return the decoded JSON of a 200 answer.

    Raises :class:`AuthError` on 401/403 and ``error`` on anything else that is not a 200
    with a JSON body.
    """
    import httpx

    attempt = 0
    while True:
        try:
            resp = client.post(url, json=body, headers=auth_headers(api_key_env))
        except httpx.TransportError as exc:
            if attempt >= max_retries:
                raise error(f"{what} at {url} unreachable after {attempt + 1} tries: {exc}") from None
            time.sleep(backoff_delay(attempt, backoff, None))
            attempt += 1
            continue
        if resp.status_code in RETRY_STATUS and attempt < max_retries:
            time.sleep(backoff_delay(attempt, backoff, resp.headers.get("retry-after")))
            attempt += 1
            continue
        break
    if resp.status_code in (401, 403):
        raise AuthError(
            f"{what} at {url} refused the request ({resp.status_code}). Set a valid key in the "
            f"environment variable {api_key_env!r}."
        )
    if resp.status_code != 200:
        raise error(f"{what} at {url} answered {resp.status_code}: {resp.text[:200]}")
    try:
        return resp.json()
    except ValueError as exc:
        raise error(f"{what} at {url} sent a body that is not JSON: {exc}") from None
