"""Item and user embeddings learned from interactions, on the ``implicit`` library.

Collaborative filtering makes a space of its own: a user's vector dotted with an item's
vector predicts the user's preference. ``fit_interactions`` learns it from (user, item[,
weight]) rows with implicit's ALS (implicit-feedback alternating least squares, Hu, Koren
& Volinsky 2008) or BPR (Bayesian personalised ranking); the result is a new space, named
by a SpaceSpec that holds the model, its hyper-parameters, the weights' and the data's
sha256. Retraining, even on the same data with another seed, makes another space: its
items go into a new collection or a migration, never over the old vectors.

>>> model = fit_interactions(rows, kind="als", factors=64)              # doctest: +SKIP
>>> items = model.to_collection(store, "movies", metadata=movies)       # doctest: +SKIP
>>> model.recommend("196", k=10, collection=items)                      # doctest: +SKIP
>>> model.similar_items("50", k=10, collection=items)                   # doctest: +SKIP

The item collection's metric is the dot product, unnormalised (the model's own score), so
a user's recommendations come from its ANN index; similar items are ranked by cosine, as
implicit ranks them, among the index's dot-product candidates. ``pip install
'latentspace[interactions]'``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from ..core.io import load_artifact, save_artifact
from ..core.space import SpaceSpec
from ..core.validation import check_choice, check_float, check_int, check_k

Kind = Literal["als", "bpr"]
KINDS = ("als", "bpr")
FORMAT = 1
ARTIFACT = "latentspace.interactions"
WEIGHTS = "model.safetensors"
#: defaults per kind: implicit's own but 64 factors. On MovieLens 100k (bench/interactions.py)
#: regularisation barely matters (0.01-0.5: recall@10 within 0.001) and fewer factors do
#: better (32: 0.143, 64: 0.133, 128: 0.123): a small catalogue wants fewer; a large one more
DEFAULTS: dict[str, dict[str, float | int]] = {
    "als": {"factors": 64, "regularization": 0.01, "alpha": 1.0, "iterations": 15},
    "bpr": {"factors": 64, "regularization": 0.01, "learning_rate": 0.01, "iterations": 100},
}


def _implicit():
    try:
        import implicit  # noqa: F401
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError:
        raise BackendUnavailableError(
            "Learning embeddings from interactions needs implicit: pip install 'latentspace[interactions]'"
        ) from None
    return AlternatingLeastSquares, BayesianPersonalizedRanking


@dataclass(frozen=True)
class Recommendation:
    """One recommended (or similar) item. ``score``: the model's predicted preference (the
    dot product) for a user, the cosine similarity for similar items; ``because``: the
    user's items that contributed most, ``(item, contribution)``, when asked for."""

    item: str
    score: float
    metadata: Mapping[str, Any] = field(default_factory=dict)
    because: list[tuple[str, float]] = field(default_factory=list)


# -- reading interactions ------------------------------------------------------------------
def _rows(interactions: Any, user_key: str, item_key: str, weight_key: str) -> Iterable[tuple]:
    if isinstance(interactions, (str, Path)):
        from ..core.records import read_rows

        return (_from_mapping(r, user_key, item_key, weight_key, n) for n, r in enumerate(read_rows(interactions), 1))
    if hasattr(interactions, "to_dict") and hasattr(interactions, "columns"):  # a pandas DataFrame
        return (_from_mapping(r, user_key, item_key, weight_key, n)
                for n, r in enumerate(interactions.to_dict("records"), 1))
    if not isinstance(interactions, Iterable) or isinstance(interactions, (str, bytes, Mapping)):
        raise InvalidInputError("fit_interactions takes (user, item[, weight]) rows, dicts, a DataFrame or a "
                                "file path.")
    return (_from_mapping(r, user_key, item_key, weight_key, n) if isinstance(r, Mapping) else r
            for n, r in enumerate(interactions, 1))


def _from_mapping(row: Mapping, user_key: str, item_key: str, weight_key: str, n: int) -> tuple:
    if user_key not in row or item_key not in row:
        raise InvalidInputError(f"interaction {n} lacks {user_key!r} or {item_key!r} (fields: {sorted(row)[:10]}); "
                                "name the fields with user_key= and item_key=.")
    return (row[user_key], row[item_key], row.get(weight_key, 1.0))


def _key(value: Any, what: str, n: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, np.integer)) or value == "":
        raise InvalidInputError(f"interaction {n}: the {what} must be a non-empty string or an integer, got {value!r}.")
    return str(value)


def interaction_matrix(interactions: Any, *, user_key: str = "user", item_key: str = "item",
                       weight_key: str = "weight") -> tuple[list[str], list[str], Any, str]:
    """``(users, items, matrix, sha256)``: the user x item CSR matrix of summed weights (rows
    and columns in first-seen order) and the sha256 of the interactions as read."""
    import scipy.sparse as sp

    users: dict[str, int] = {}
    items: dict[str, int] = {}
    rows, cols, weights = [], [], []
    digest = hashlib.sha256()
    for n, row in enumerate(_rows(interactions, user_key, item_key, weight_key), start=1):
        if not isinstance(row, (tuple, list)) or len(row) not in (2, 3):
            raise InvalidInputError(f"interaction {n}: expected (user, item) or (user, item, weight), got {row!r}.")
        u, i = _key(row[0], "user", n), _key(row[1], "item", n)
        w = row[2] if len(row) == 3 else 1.0
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not math.isfinite(w) \
                or w <= 0:
            raise InvalidInputError(f"interaction {n}: the weight must be a finite number > 0, got {w!r}.")
        digest.update(f"{u}\t{i}\t{float(w)!r}\n".encode())
        rows.append(users.setdefault(u, len(users)))
        cols.append(items.setdefault(i, len(items)))
        weights.append(float(w))
    if not weights:
        raise InvalidInputError("fit_interactions got no interactions.")
    if len(users) < 2 or len(items) < 2:
        raise InvalidInputError(f"fit_interactions needs at least 2 users and 2 items (got {len(users)} and "
                                f"{len(items)}).")
    matrix = sp.csr_matrix((np.asarray(weights, np.float32), (rows, cols)), shape=(len(users), len(items)))
    matrix.sum_duplicates()  # a (user, item) pair seen twice counts its weights together
    return list(users), list(items), matrix, digest.hexdigest()


# -- the model -----------------------------------------------------------------------------
@dataclass
class InteractionModel:
    """User and item vectors learned from interactions, with what they were learned from."""

    kind: str
    params: dict[str, Any]
    users: list[str]
    items: list[str]
    user_factors: np.ndarray
    item_factors: np.ndarray
    seen: Any  # scipy CSR, users x items: the training interactions
    data_sha256: str
    spec: SpaceSpec = field(init=False)

    def __post_init__(self) -> None:
        self._user_row = {u: n for n, u in enumerate(self.users)}
        self._item_col = {i: n for n, i in enumerate(self.items)}
        weights = hashlib.sha256(np.ascontiguousarray(self.item_factors, np.float32).tobytes())
        weights.update(np.ascontiguousarray(self.user_factors, np.float32).tobytes())
        self.spec = SpaceSpec(
            model=f"implicit-{self.kind}", dim=int(self.item_factors.shape[1]), normalize=False, metric="dot",
            modality="vector", weights_sha256=weights.hexdigest(),
            metadata={"library": "implicit", "kind": self.kind, "params": self.params,
                      "interactions_sha256": self.data_sha256, "users": len(self.users), "items": len(self.items),
                      "interactions": int(self.seen.nnz)},
        )

    # -- vectors ------------------------------------------------------------------------
    def user_vector(self, user: str | None = None, *, liked: Sequence[str] | None = None) -> np.ndarray:
        """A known user's vector, or one for the items ``liked`` (a user the model has not
        seen: ALS solves for it exactly as in training; BPR takes the items' mean)."""
        if (user is None) == (liked is None):
            raise InvalidInputError("user_vector takes a known user or liked= items, one of them.")
        if user is not None:
            return self.user_factors[self._row(user)]
        cols = self._cols(liked)
        if self.kind == "bpr":
            return self.item_factors[cols].mean(axis=0)
        return self._implicit_model().recalculate_user(0, self._liked_row(cols))

    def item_vectors(self, items: Sequence[str] | None = None) -> np.ndarray:
        return self.item_factors if items is None else self.item_factors[self._cols(items)]

    # -- recommendation ----------------------------------------------------------------
    def recommend(self, user: str | None = None, k: int = 10, *, liked: Sequence[str] | None = None,
                  collection=None, exclude_seen: bool = True, explain: bool = False) -> list[Recommendation]:
        """The ``k`` items with the highest predicted preference for a user (or for the items
        ``liked``), the user's own items left out. With ``collection`` (made by
        :meth:`to_collection`), candidates come from its ANN index and carry its metadata;
        otherwise every item is scored exactly. ``explain=True`` adds, per item, the user's
        items that contributed most ("because you liked")."""
        k = check_k(k)
        vec = self.user_vector(user, liked=liked)
        seen = set(self._seen_cols(user, liked)) if exclude_seen else set()
        if collection is not None:
            self._check_collection(collection)
            depth = min(len(self.items), k + len(seen))
            query = np.ascontiguousarray(vec, np.float32)
            hits = collection.search(vector=query, space=self.spec, k=min(depth, 10_000))
            picked = [(h.id, h.score, h.metadata) for h in hits if self._item_col.get(h.id) not in seen][:k]
            if len(picked) < min(k, len(self.items) - len(seen)):  # the index came back short: score exactly
                picked = self._exact(vec, k, seen)
        else:
            picked = self._exact(vec, k, seen)
        explainer = self._explainer(user, liked, 3) if explain else None
        return [Recommendation(i, float(s), m, explainer(self._item_col[i]) if explainer and i in self._item_col else [])
                for i, s, m in picked]

    def _exact(self, vec: np.ndarray, k: int, seen: set[int]) -> list[tuple[str, float, dict]]:
        scores = self.item_factors @ vec
        if seen:
            scores[list(seen)] = -np.inf
        want = min(k, len(self.items) - len(seen))
        if want <= 0:
            return []
        top = np.argpartition(-scores, want - 1)[:want] if want < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.items[c], float(scores[c]), {}) for c in top.tolist()]

    def similar_items(self, item: str, k: int = 10, *, collection=None) -> list[Recommendation]:
        """The ``k`` items most similar to ``item`` by cosine of their vectors (the item
        itself left out). With ``collection``: candidates from its ANN index (ten times
        ``k`` by dot product, then ranked by cosine), with their metadata."""
        k = check_k(k)
        col = self._cols([item])[0]
        vec = self.item_factors[col]
        if collection is not None:
            self._check_collection(collection)
            unit = (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)
            hits = collection.search(vector=unit, space=self.spec, k=min(len(self.items), max(10 * k, 100), 10_000))
            cand = [(self._item_col[h.id], h.metadata) for h in hits if h.id in self._item_col and h.id != item]
        else:
            cand = [(c, {}) for c in range(len(self.items)) if c != col]
        cols = np.asarray([c for c, _ in cand], dtype=np.int64)
        if not len(cols):
            return []
        cand_vecs = self.item_factors[cols]
        norms = np.linalg.norm(cand_vecs, axis=1) * np.linalg.norm(vec)
        cos = (cand_vecs @ vec) / np.maximum(norms, 1e-12)
        order = np.argsort(-cos, kind="stable")[:k]
        return [Recommendation(self.items[cols[j]], float(cos[j]), cand[j][1]) for j in order.tolist()]

    def because(self, user: str | None, item: str, *, liked: Sequence[str] | None = None,
                n: int = 3) -> list[tuple[str, float]]:
        """The user's items that contributed most to the predicted preference for ``item``,
        ``(item, contribution)``, largest first. ALS: implicit's exact decomposition of the
        score over the user's items; BPR: the dot product of each of the user's items with it."""
        check_int(n, "n", "because", 1, 1000)
        return self._explainer(user, liked, n)(self._cols([item])[0])

    def _explainer(self, user: str | None, liked: Sequence[str] | None, n: int) -> Callable[[int], list]:
        """item column -> the user's top ``n`` contributions to it; what depends on the user
        alone (ALS: the factorised weights of the user's items) is computed once."""
        cols = self._seen_cols(user, liked)
        if not cols:
            return lambda col: []
        if self.kind == "als":
            model, row, weights = self._implicit_model(), self._liked_row(cols, user), [None]

            def als(col: int) -> list[tuple[str, float]]:
                _, top, weights[0] = model.explain(0, row, col, user_weights=weights[0], N=n)
                return [(self.items[i], float(s)) for i, s in top]

            return als
        mine = self.item_factors[cols]

        def bpr(col: int) -> list[tuple[str, float]]:
            scores = mine @ self.item_factors[col]
            order = np.argsort(-scores, kind="stable")[:n]
            return [(self.items[cols[j]], float(scores[j])) for j in order.tolist()]

        return bpr

    # -- the item collection -------------------------------------------------------------
    def to_collection(self, store, name: str, *, metadata: Mapping[str, Mapping] | None = None,
                      documents: Mapping[str, str] | Callable[[str, Mapping], str] | None = None, hnsw=None):
        """A new collection of the item vectors in this model's space, each item's metadata
        (and document: a mapping, or a function of (item, metadata)) joined by id. The
        collection must not exist: a retrained model is another space, never written over one."""
        metadata = metadata or {}
        col = store.create_collection(name, space=self.spec, hnsw=hnsw)
        metas = [dict(metadata.get(i, {})) for i in self.items]
        if callable(documents):
            docs = [documents(i, m) for i, m in zip(self.items, metas)]
        elif documents is not None:
            docs = [documents.get(i) for i in self.items]
        else:
            docs = [None] * len(self.items)
        for s in range(0, len(self.items), 5_000):
            col.add(self.items[s : s + 5_000], vectors=self.item_factors[s : s + 5_000].astype(np.float32),
                    documents=docs[s : s + 5_000], metadatas=metas[s : s + 5_000], space=self.spec)
        return col

    def _check_collection(self, collection) -> None:
        collection.spec.require_same(self.spec, f"recommending from collection {collection.name!r}")

    # -- persistence ------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """``config.json`` (kind, params, ids, spec, data hash) and ``model.safetensors``."""
        seen = self.seen.tocsr()
        return save_artifact(folder, ARTIFACT, FORMAT, {
            "model_kind": self.kind, "params": self.params, "users": self.users, "items": self.items,
            "data_sha256": self.data_sha256, "space": self.spec.to_dict()},
            {"user_factors": self.user_factors.astype(np.float32), "item_factors": self.item_factors.astype(np.float32),
             "seen_indptr": seen.indptr.astype(np.int64), "seen_indices": seen.indices.astype(np.int64),
             "seen_data": seen.data.astype(np.float32)}, WEIGHTS)

    @classmethod
    def load(cls, folder: str | Path) -> InteractionModel:
        import scipy.sparse as sp

        cfg, t = load_artifact(folder, ARTIFACT, FORMAT, WEIGHTS)
        try:
            users, items = list(cfg["users"]), list(cfg["items"])
            seen = sp.csr_matrix((t["seen_data"], t["seen_indices"], t["seen_indptr"]), shape=(len(users), len(items)))
            model = cls(cfg["model_kind"], dict(cfg["params"]), users, items, t["user_factors"], t["item_factors"],
                        seen, cfg["data_sha256"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"{folder} is not a complete interaction model: {exc}") from None
        stored = SpaceSpec.from_dict(cfg["space"])
        if stored.fingerprint != model.spec.fingerprint:
            raise InvalidInputError(f"{folder}: the weights do not match the space recorded with them "
                                    f"({stored.differences(model.spec)}); the files were changed.")
        return model

    # -- helpers --------------------------------------------------------------------------
    def _row(self, user: str) -> int:
        try:
            return self._user_row[str(user)]
        except KeyError:
            raise NotFoundError(f"User {user!r} is not in the interactions this model learned from "
                                f"({len(self.users)} users); pass liked=[items] for a new user.") from None

    def _cols(self, items: Sequence[str] | None) -> list[int]:
        if items is None or isinstance(items, str) or not len(items):
            raise InvalidInputError("Name at least one item (a list of item ids).")
        missing = [i for i in items if str(i) not in self._item_col]
        if missing:
            raise NotFoundError(f"Item(s) not in the model: {missing[:10]} ({len(self.items)} items known).")
        return [self._item_col[str(i)] for i in items]

    def _seen_cols(self, user: str | None, liked: Sequence[str] | None) -> list[int]:
        if liked is not None:
            return self._cols(liked)
        r = self._row(user)
        return self.seen.indices[self.seen.indptr[r] : self.seen.indptr[r + 1]].tolist()

    def _liked_row(self, cols: list[int], user: str | None = None):
        """One user's row of the training matrix (a known user's own, else the liked items at weight 1)."""
        import scipy.sparse as sp

        if user is not None:
            return self.seen[self._row(user)]
        return sp.csr_matrix((np.ones(len(cols), np.float32), (np.zeros(len(cols), int), cols)),
                             shape=(1, len(self.items)))

    def _implicit_model(self):
        als, _ = _implicit()
        p = self.params
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            model = als(factors=self.item_factors.shape[1], regularization=p["regularization"], alpha=p["alpha"],
                        iterations=p["iterations"], num_threads=1)
        model.user_factors = self.user_factors
        model.item_factors = self.item_factors
        return model


def fit_interactions(
    interactions: Any,
    *,
    kind: Kind = "als",
    factors: int | None = None,
    regularization: float | None = None,
    iterations: int | None = None,
    alpha: float | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    threads: int = 1,
    user_key: str = "user",
    item_key: str = "item",
    weight_key: str = "weight",
    progress: bool = False,
) -> InteractionModel:
    """Learn user and item vectors from interactions: ``(user, item[, weight])`` rows, dicts
    (``user_key``/``item_key``/``weight_key``), a pandas DataFrame, or a JSONL/CSV/Parquet
    file. ``kind``: ``"als"`` (weights are confidences; ``alpha`` scales them) or ``"bpr"``.
    Unset hyper-parameters take :data:`DEFAULTS`. Seeded: the same rows and settings give
    the same vectors."""
    check_choice(kind, "kind", "fit_interactions", KINDS)
    check_int(seed, "seed", "fit_interactions", 0, 2**31 - 1)
    check_int(threads, "threads", "fit_interactions", 1, 256)
    given = {"factors": factors, "regularization": regularization, "iterations": iterations, "alpha": alpha,
             "learning_rate": learning_rate}
    params = dict(DEFAULTS[kind])
    for name, value in given.items():
        if value is None:
            continue
        if name not in params:
            raise InvalidInputError(f"{name}= does not apply to kind={kind!r} (its settings: {sorted(params)}).")
        params[name] = value
    check_int(params["factors"], "factors", "fit_interactions", 1, 4096)
    check_int(params["iterations"], "iterations", "fit_interactions", 1, 100_000)
    for name in ("regularization", "alpha", "learning_rate"):
        if name in params:
            params[name] = check_float(params[name], name, "fit_interactions", 0.0, 1e6)
    params["seed"] = seed
    users, items, matrix, digest = interaction_matrix(interactions, user_key=user_key, item_key=item_key,
                                                      weight_key=weight_key)
    als, bpr = _implicit()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # implicit warns (and crawls) on threaded BLAS
        if kind == "als":
            model = als(factors=params["factors"], regularization=params["regularization"], alpha=params["alpha"],
                        iterations=params["iterations"], random_state=seed, num_threads=threads)
        else:
            model = bpr(factors=params["factors"], learning_rate=params["learning_rate"],
                        regularization=params["regularization"], iterations=params["iterations"], random_state=seed,
                        num_threads=threads)
        model.fit(matrix, show_progress=progress)
    uf, itf = np.asarray(model.user_factors, np.float32), np.asarray(model.item_factors, np.float32)
    if not (np.isfinite(uf).all() and np.isfinite(itf).all()):
        from ..core.errors import TrainingDivergedError

        raise TrainingDivergedError(f"implicit's {kind} produced non-finite factors; lower learning_rate or raise "
                                    "regularization.")
    return InteractionModel(kind, params, users, items, uf, itf, matrix, digest)


# -- evaluation -----------------------------------------------------------------------------
def holdout_last(rows: Sequence[tuple], timestamps: Sequence[float], n: int = 5,
                 min_left: int = 1) -> tuple[list[tuple], dict[str, set[str]]]:
    """Leave each user's last ``n`` interactions (by timestamp, ties in input order) out:
    ``(training rows, held-out items by user)``. Users with fewer than ``n + min_left``
    interactions stay whole in training."""
    check_int(n, "n", "holdout_last", 1, 1_000_000)
    by_user: dict[str, list[int]] = {}
    for idx, row in enumerate(rows):
        by_user.setdefault(str(row[0]), []).append(idx)
    test: dict[str, set[str]] = {}
    held: set[int] = set()
    for user, idxs in by_user.items():
        if len(idxs) < n + min_left:
            continue
        last = sorted(idxs, key=lambda i: (timestamps[i], i))[-n:]
        held.update(last)
        test[user] = {str(rows[i][1]) for i in last}
    return [r for i, r in enumerate(rows) if i not in held], test


def ranking_metrics(recommend: Callable[[str, int], list[str]], held_out: Mapping[str, set[str]],
                    k: int = 10) -> dict[str, float]:
    """Mean recall@k and nDCG@k over the users in ``held_out`` of a function user -> ranked
    item ids (with the user's training items already left out)."""
    recalls, ndcgs = [], []
    for user, truth in held_out.items():
        ranked = recommend(user, k)[:k]
        gains = [1.0 if item in truth else 0.0 for item in ranked]
        recalls.append(sum(gains) / min(len(truth), k))
        dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
        ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(truth), k)))
        ndcgs.append(dcg / ideal)
    return {f"recall@{k}": float(np.mean(recalls)), f"ndcg@{k}": float(np.mean(ndcgs)), "users": len(recalls)}
