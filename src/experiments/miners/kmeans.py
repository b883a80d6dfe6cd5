"""Cluster negatives: random categories from the positive's k-means cluster."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from experiments.errors import ConfigError
from experiments.miners.base import Miner, MiningContext


class KMeansMiner(Miner):
    """Negatives drawn at random from the positive's cluster of category embeddings.

    ``prepare`` clusters the category vectors with scikit-learn's ``KMeans`` (``random_state=seed``,
    ``n_init=10``, so the clustering is deterministic for a seed); ``n_clusters`` is clamped to the number of
    categories. For an example, the clusters are ordered by the distance of their centroid to the positive's
    centroid (for a multi-label example, to the nearest positive's centroid); the positive's own cluster comes
    first. A draw shuffles the non-positive members of each cluster with its own generator and takes them
    cluster by cluster until it has ``k``: the positive's cluster first, then the nearest clusters as a
    top-up when that cluster is too small. This top-up is part of the strategy, so ``k`` is always filled and
    the base class's random top-up never happens.

    Args:
        n_clusters: number of clusters (at least 1; clamped to the number of categories).
        strict: see ``Miner``; never triggered here because the nearest clusters always fill ``k``.
    """

    def __init__(self, n_clusters: int = 6, strict: bool = False) -> None:
        super().__init__(strict=strict)
        if not isinstance(n_clusters, int) or n_clusters < 1:
            raise ConfigError(f"KMeansMiner: n_clusters={n_clusters!r} must be an integer >= 1.")
        self.n_clusters = n_clusters
        self._assignment = np.zeros(0, dtype=int)
        self._centroid_distance = np.zeros((0, 0))

    def prepare(self, context: MiningContext, seed: int) -> None:
        n_clusters = min(self.n_clusters, context.n_categories)
        kmeans = KMeans(n_clusters=n_clusters, random_state=seed, n_init=10)
        self._assignment = kmeans.fit_predict(np.asarray(context.category_vectors, dtype=np.float64))
        centroids = kmeans.cluster_centers_
        self._centroid_distance = np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=-1)

    def draw(
        self,
        context: MiningContext,
        example_index: int,
        positives: list[int],
        k: int,
        draw: int,
        rng: np.random.Generator,
    ) -> list[int]:
        own = sorted({int(self._assignment[p]) for p in positives})
        distance = self._centroid_distance[own].min(axis=0)
        banned = set(positives)
        chosen: list[int] = []
        for cluster in np.argsort(distance, kind="stable"):
            members = [int(i) for i in np.flatnonzero(self._assignment == cluster) if int(i) not in banned]
            chosen += [members[int(position)] for position in rng.permutation(len(members))]
            if len(chosen) >= k:
                break
        return chosen[:k]
