"""The one error hierarchy of latentspace.

Every error raised on purpose by the library derives from :class:`LatentSpaceError`
and carries the HTTP status the server answers with::

    LatentSpaceError (500)
    ├── InvalidInputError (422, also ValueError)    bad argument, vector, filter, name
    ├── SpaceMismatchError (409)                    vectors or encoder from another space
    ├── NotFoundError (404, also KeyError)          unknown collection, id, model file
    ├── AlreadyExistsError (409)                    name or id taken
    ├── CorruptStoreError (500)                     store files unreadable or inconsistent
    │   └── StoreFormatError (500)                  store written by a newer latentspace
    ├── StoreLockedError (503)                      another writer holds the lock
    ├── ModelLoadError (500)                        model missing, altered or unloadable
    ├── EncodingError (502)                         an encoder returned unusable output
    ├── UpstreamError (502)                         a remote API (chat completions) failed or answered badly
    ├── NotFittedError (409)                        estimator used before ``fit``
    ├── BackendUnavailableError (501)               optional extra not installed
    ├── TrainingDivergedError (500)                 a loss became NaN/inf (last good weights kept)
    ├── NotSupportedError (501)                     the model cannot do that (a GAN has no encoder)
    └── AuthError (401)                             missing or wrong API key

Messages say what was wrong, what was expected, and what to do.

One warning class, for what is done but not as the user may think:
``TruncationWarning`` (a ``UserWarning``): documents longer than the model reads were
embedded from their beginning only.
"""

from __future__ import annotations


class LatentSpaceError(Exception):
    """Base class of every error latentspace raises on purpose."""

    http_status: int = 500
    #: process exit code used by the CLI for this class of error
    exit_code: int = 1

    def __str__(self) -> str:  # KeyError quotes its message; we never want that
        return str(self.args[0]) if self.args else self.__class__.__name__


class InvalidInputError(LatentSpaceError, ValueError):
    http_status = 422
    exit_code = 2


class SpaceMismatchError(LatentSpaceError):
    """Vectors, queries or an encoder belong to a different space than the collection.

    ``differences`` maps each differing SpaceSpec field to ``(expected, got)``.
    """

    http_status = 409
    exit_code = 3

    def __init__(self, message: str, differences: dict | None = None):
        super().__init__(message)
        self.differences = dict(differences or {})


class NotFoundError(LatentSpaceError, KeyError):
    http_status = 404
    exit_code = 4


class AlreadyExistsError(LatentSpaceError):
    http_status = 409
    exit_code = 5


class CorruptStoreError(LatentSpaceError):
    http_status = 500
    exit_code = 6


class StoreFormatError(CorruptStoreError):
    http_status = 500
    exit_code = 6


class StoreLockedError(LatentSpaceError):
    http_status = 503
    exit_code = 7


class ModelLoadError(LatentSpaceError):
    http_status = 500
    exit_code = 8


class EncodingError(LatentSpaceError):
    http_status = 502
    exit_code = 9


class UpstreamError(LatentSpaceError):
    http_status = 502
    exit_code = 14


class NotFittedError(LatentSpaceError):
    http_status = 409
    exit_code = 10


class BackendUnavailableError(LatentSpaceError):
    http_status = 501
    exit_code = 11


class TrainingDivergedError(LatentSpaceError):
    http_status = 500
    exit_code = 13


class NotSupportedError(LatentSpaceError):
    """An operation the model or backend cannot do by its nature (a GAN has no encoder); the
    message names what to use instead."""

    http_status = 501
    exit_code = 15


class AuthError(LatentSpaceError):
    http_status = 401
    exit_code = 12


class TruncationWarning(UserWarning):
    """Documents longer than the encoder's token limit were embedded from their beginning only."""


__all__ = [
    "TruncationWarning",
    "LatentSpaceError",
    "InvalidInputError",
    "SpaceMismatchError",
    "NotFoundError",
    "AlreadyExistsError",
    "CorruptStoreError",
    "StoreFormatError",
    "StoreLockedError",
    "ModelLoadError",
    "EncodingError",
    "UpstreamError",
    "NotFittedError",
    "BackendUnavailableError",
    "TrainingDivergedError",
    "AuthError",
]
