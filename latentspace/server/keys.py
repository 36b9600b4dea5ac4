"""API keys: made once, shown once, stored only as a sha256 hash.

A key is ``ls_<id>_<secret>``: ``id`` (8 hex) finds the entry, the secret (32 random bytes,
url-safe) is what proves it. Keys have 256 bits of entropy, so a plain sha256 (no slow
hash) is what stores them safely, as for other high-entropy API tokens; the comparison is
constant-time. Scopes nest: ``read`` < ``write`` < ``admin``; a key may be limited to named
collections. The file (``keys.json`` in the store's folder, or a path given to the server)
is written atomically, readable by its owner only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import AuthError, InvalidInputError, NotFoundError
from ..core.io import read_json, write_json

SCOPES = ("read", "write", "admin")
FORMAT = 1
_KEY = re.compile(r"^ls_([0-9a-f]{8})_([A-Za-z0-9_-]{20,100})$")


@dataclass
class ApiKey:
    id: str
    sha256: str
    scope: str
    collections: list[str] | None = None
    name: str = ""
    created_at: float = field(default_factory=time.time)
    revoked_at: float | None = None

    def allows(self, scope: str, collection: str | None = None) -> bool:
        """Whether this key may make a call needing ``scope`` on ``collection`` (None: store-wide)."""
        if self.revoked_at is not None or SCOPES.index(self.scope) < SCOPES.index(scope):
            return False
        if self.collections is None:
            return True
        return collection is not None and collection in self.collections

    def public(self) -> dict[str, Any]:
        """What may be shown: everything but the hash."""
        d = asdict(self)
        d.pop("sha256")
        return d


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """The API keys of one server, in a JSON file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._loaded_mtime: float | None = None
        self._keys: dict[str, ApiKey] = {}

    # -- reading ------------------------------------------------------------------------
    def _load(self) -> dict[str, ApiKey]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._keys, self._loaded_mtime = {}, None
            return self._keys
        if mtime != self._loaded_mtime:  # another process (keys create / revoke) changed the file
            data = read_json(self.path)
            if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("keys"), list):
                raise InvalidInputError(f"{self.path} is not a latentspace keys file.")
            self._keys = {k["id"]: ApiKey(**k) for k in data["keys"]}
            self._loaded_mtime = mtime
        return self._keys

    def list(self) -> list[ApiKey]:
        return sorted(self._load().values(), key=lambda k: k.created_at)

    def configured(self) -> bool:
        """Whether keys were ever made here: then every call needs one (revoking the last key
        locks the server; it never opens it)."""
        return bool(self._load())

    def active(self) -> bool:
        """Whether any key can be used (a server on a non-loopback address needs one)."""
        return any(k.revoked_at is None for k in self._load().values())

    # -- changing -----------------------------------------------------------------------
    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"format": FORMAT, "keys": [asdict(k) for k in self._keys.values()]})
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        self._loaded_mtime = self.path.stat().st_mtime_ns

    def create(self, scope: str, *, collections: list[str] | None = None, name: str = "") -> tuple[str, ApiKey]:
        """A new key: returns (the key, shown this once, and its stored entry)."""
        if scope not in SCOPES:
            raise InvalidInputError(f"A key's scope is one of {list(SCOPES)}; got {scope!r}.")
        if collections is not None:
            from ..core.validation import check_name

            collections = [check_name(c) for c in collections]
            if not collections:
                raise InvalidInputError("--collection limits a key to named collections: give at least one.")
        keys = self._load()
        kid = secrets.token_hex(4)
        while kid in keys:
            kid = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        entry = ApiKey(kid, _hash(secret), scope, collections, name)
        keys[kid] = entry
        self._save()
        return f"ls_{kid}_{secret}", entry

    def revoke(self, kid: str) -> ApiKey:
        keys = self._load()
        if kid not in keys:
            raise NotFoundError(f"No key {kid!r}; `latentspace keys list` shows the ids.")
        keys[kid].revoked_at = keys[kid].revoked_at or time.time()
        self._save()
        return keys[kid]

    # -- checking -------------------------------------------------------------------------
    def check(self, key: str | None) -> ApiKey:
        """The entry of a presented key; AuthError when it is missing, malformed, unknown or revoked."""
        if not key:
            raise AuthError("This server needs an API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key'.")
        m = _KEY.match(key)
        entry = self._load().get(m.group(1)) if m else None
        # constant-time comparison of the hashes; a malformed or unknown key costs the same
        expected = entry.sha256 if entry else _hash("")
        ok = hmac.compare_digest(_hash(m.group(2) if m else key), expected) and entry is not None
        if not ok or entry.revoked_at is not None:
            raise AuthError("The API key was not accepted (unknown, wrong or revoked).")
        return entry


__all__ = ["SCOPES", "ApiKey", "KeyStore"]
