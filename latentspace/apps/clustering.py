"""Clustering a collection (k-means or HDBSCAN) with a label for each cluster.

Each cluster is described by its top c-TF-IDF terms (the class-based TF-IDF of BERTopic:
a term's frequency in the cluster's documents times ``log(1 + A / f_t)``, with ``A`` the
average number of words per cluster and ``f_t`` the term's frequency over all clusters)
and by its most central records (nearest the cluster's mean). Words frequent in every
cluster (boilerplate such as "package, contains, provides" in software descriptions:
in at least ``COMMON_SHARE`` of the documents of each cluster) describe none of them and
are left out. Cluster ids can be written back to each record's metadata.

HDBSCAN runs on the features directly up to ``GRAPH_ABOVE`` records; above, on the
collection's symmetrised k-nearest-neighbour graph (from its HNSW index) as a sparse
precomputed distance matrix, so its cost grows with ``n k``, not ``n^2``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..collections.graph import RecordArrays, neighbor_graph, record_arrays, require_records, unit_rows, write_metadata
from ..core.errors import InvalidInputError
from ..core.validation import check_choice, check_int, check_name

Method = Literal["kmeans", "hdbscan"]
#: HDBSCAN switches from raw features to the sparse neighbour graph above this many records
GRAPH_ABOVE = 5_000
NOISE = -1
#: a term in at least this share of the documents of every cluster names none of them
COMMON_SHARE = 0.1
#: HDBSCAN putting more than this share of the records in one cluster has found no structure
DOMINANT_SHARE = 0.8


@dataclass(frozen=True)
class Cluster:
    label: int
    size: int
    terms: list[str]
    central_ids: list[str]
    central_documents: list[str | None] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"label": self.label, "size": self.size, "terms": self.terms, "central_ids": self.central_ids,
                "central_documents": [(d or "")[:200] for d in self.central_documents]}


@dataclass(frozen=True)
class Clustering:
    """``labels[i]`` is the cluster of ``ids[i]`` (``-1``: HDBSCAN noise)."""

    method: str
    ids: list[str]
    labels: np.ndarray
    clusters: list[Cluster]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what the user should know about the result

    @property
    def noise(self) -> int:
        return int((self.labels == NOISE).sum())

    def label_of(self) -> dict[str, int]:
        return dict(zip(self.ids, self.labels.tolist()))

    def to_dict(self) -> dict:
        return {"method": self.method, "records": len(self.ids), "clusters": [c.to_dict() for c in self.clusters],
                "noise": self.noise, "notes": self.notes, "seconds": round(self.seconds, 3)}


def cluster(
    col, method: Method = "kmeans", *, n_clusters: int = 8, min_cluster_size: int = 10, where: dict | None = None,
    n_terms: int = 8, n_central: int = 3, write_to: str | None = None, seed: int = 0, reduce_dim: int | None = None,
) -> Clustering:
    """Cluster the records of ``col`` (or those matching ``where``).

    ``kmeans`` needs ``n_clusters``; ``hdbscan`` finds the number itself from
    ``min_cluster_size`` and marks noise as ``-1``. ``write_to`` names a metadata key
    that receives each record's cluster id (the records are otherwise unchanged).
    ``reduce_dim`` first maps the vectors to that many dimensions with UMAP (seeded; the
    ``analysis`` extra), as BERTopic does before HDBSCAN: on high-dimensional text vectors
    HDBSCAN alone calls most records noise.
    """
    check_choice(method, "method", "cluster", ("kmeans", "hdbscan"))
    n_clusters = check_int(n_clusters, "n_clusters", "cluster", 1, 100_000)
    min_cluster_size = check_int(min_cluster_size, "min_cluster_size", "cluster", 2, 10_000_000)
    n_terms = check_int(n_terms, "n_terms", "cluster", 0, 100)
    n_central = check_int(n_central, "n_central", "cluster", 0, 100)
    seed = check_int(seed, "seed", "cluster", 0, 2**32 - 1)
    if write_to is not None:
        check_name(write_to, "metadata key")
    if reduce_dim is not None:
        reduce_dim = check_int(reduce_dim, "reduce_dim", "cluster", 2, col.spec.dim)
    t0 = time.perf_counter()
    rec = record_arrays(col, where)
    require_records(rec, col, "Clustering")
    n = len(rec)
    data, metric = rec.vectors, col.spec.metric
    if reduce_dim is not None and reduce_dim < col.spec.dim:
        from ..analysis.projection import umap_embedding

        if n <= 16:
            raise InvalidInputError(f"reduce_dim needs more than 16 records to learn a map; {n} match.")
        data = umap_embedding(rec.vectors, reduce_dim, seed=seed, metric="cosine" if metric == "cosine" else "euclidean",
                              min_dist=0.0).astype(np.float32)
        metric = "l2"
    if method == "kmeans":
        if n_clusters > n:
            raise InvalidInputError(
                f"cluster asked for n_clusters={n_clusters} but only {n} record(s) match; "
                f"ask for at most {n} clusters, or add records."
            )
        labels = _kmeans(data, n_clusters, seed, metric)
    else:
        if min_cluster_size > n:
            raise InvalidInputError(
                f"cluster asked for min_cluster_size={min_cluster_size} but only {n} record(s) match; "
                "lower min_cluster_size."
            )
        labels = _hdbscan(col, rec, min_cluster_size, where, data, metric)
    clusters = describe(rec, labels, n_terms=n_terms, n_central=n_central)
    if write_to is not None:
        write_metadata(col, rec, labels, write_to)
    notes = _notes(method, clusters, labels, n, reduce_dim)
    return Clustering(method, rec.ids, labels, clusters, time.perf_counter() - t0, notes)


def _notes(method: str, clusters: list[Cluster], labels: np.ndarray, n: int, reduce_dim: int | None) -> list[str]:
    notes = []
    if method != "hdbscan":
        return notes
    hint = " Map the vectors to a few dimensions first: reduce_dim=5 (CLI: --reduce-dim 5)." if reduce_dim is None else ""
    if clusters and clusters[0].size > DOMINANT_SHARE * n:
        notes.append(f"HDBSCAN put {clusters[0].size / n:.0%} of the records in one cluster ({clusters[0].size:,} of "
                     f"{n:,}): it found little structure at this density.{hint}")
    noise = int((labels == NOISE).sum())
    if noise > 0.5 * n:
        notes.append(f"HDBSCAN called {noise / n:.0%} of the records noise.{hint}")
    return notes


def _kmeans(x: np.ndarray, k: int, seed: int, metric: str) -> np.ndarray:
    from sklearn.cluster import KMeans

    data = unit_rows(x) if metric == "cosine" else x  # cosine: k-means on the unit sphere
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(data).astype(np.int64)


def _hdbscan(col, rec: RecordArrays, min_cluster_size: int, where, data: np.ndarray, metric: str) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    n = len(rec)
    if n <= GRAPH_ABOVE or data is not rec.vectors:  # small, or already reduced: on the features
        data = unit_rows(data) if metric == "cosine" else data
        return HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(data).astype(np.int64)
    from scipy.sparse import csr_matrix

    k = min(n - 1, max(2 * min(min_cluster_size, 50), 15))
    graph = neighbor_graph(col, k, where, records=rec)
    ok = graph.indices >= 0
    rows = np.repeat(np.arange(n), graph.k)[ok.ravel()]
    dist = np.maximum(graph.distances[ok], 1e-9).astype(np.float64)  # stored zeros would read as "no edge"
    if col.spec.metric == "dot":
        dist = dist - dist.min() + 1e-9
    mat = csr_matrix((dist, (rows, graph.indices[ok])), shape=(n, n))
    mat = mat.maximum(mat.T).tocsr()  # symmetric: an edge either way counts
    return HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min(min_cluster_size, k), metric="precomputed",
                   copy=True).fit_predict(mat).astype(np.int64)


def describe(rec: RecordArrays, labels: np.ndarray, *, n_terms: int = 8, n_central: int = 3) -> list[Cluster]:
    """c-TF-IDF terms and central records of each cluster (noise excluded), largest first."""
    found = sorted(set(labels.tolist()) - {NOISE})
    terms = _ctfidf_terms(rec.documents, labels, found, n_terms)
    unit = unit_rows(rec.vectors)
    out = []
    for j, c in enumerate(found):
        members = np.flatnonzero(labels == c)
        centre = unit[members].mean(axis=0)
        order = members[np.argsort(-(unit[members] @ centre), kind="stable")[:n_central]]
        out.append(Cluster(int(c), len(members), terms[j], [rec.ids[i] for i in order],
                           [rec.documents[i] for i in order]))
    out.sort(key=lambda c: (-c.size, c.label))
    return out


def _ctfidf_terms(documents: list, labels: np.ndarray, found: list[int], n_terms: int) -> list[list[str]]:
    if n_terms == 0 or not any(documents):
        return [[] for _ in found]
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import CountVectorizer

    pos = {c: j for j, c in enumerate(found)}
    keep = [i for i, (d, lab) in enumerate(zip(documents, labels.tolist())) if d and lab in pos]
    try:
        vec = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z0-9_]+\b")
        doc_counts = vec.fit_transform([documents[i] for i in keep]).astype(np.float64)
    except ValueError:  # no usable words at all (only stop words, digits)
        return [[] for _ in found]
    member = csr_matrix((np.ones(len(keep)), ([pos[int(labels[i])] for i in keep], np.arange(len(keep)))),
                        shape=(len(found), len(keep)))
    counts = (member @ doc_counts).tocsr()  # term counts per cluster: one pass over the documents
    words = vec.get_feature_names_out()
    per_class = np.asarray(counts.sum(axis=1)).ravel()
    tf = counts.multiply(1.0 / np.maximum(per_class, 1)[:, None]).tocsr()
    f_t = np.asarray(counts.sum(axis=0)).ravel()
    avg = per_class.mean()
    scores = tf.multiply(np.log1p(avg / np.maximum(f_t, 1))[None, :]).toarray()
    if len(found) >= 2:  # words frequent in every cluster describe none of them
        docs_with = (member @ (doc_counts > 0).astype(np.float64)).toarray()
        share = docs_with / np.maximum(np.asarray(member.sum(axis=1)), 1)
        scores[:, share.min(axis=0) >= COMMON_SHARE] = 0.0
    out = []
    for row in scores:
        top = np.argsort(-row, kind="stable")[:n_terms]
        out.append([str(words[i]) for i in top if row[i] > 0])
    return out
