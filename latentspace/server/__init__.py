"""``latentspace serve``: the store over HTTP with API keys (``pip install 'latentspace[server]'``).

``keys`` holds the API keys (hashed, scoped read / write / admin, optionally limited to
named collections); ``app`` builds the FastAPI application (``create_app(settings)``).
"""

from .keys import SCOPES, ApiKey, KeyStore

__all__ = ["SCOPES", "ApiKey", "KeyStore"]
