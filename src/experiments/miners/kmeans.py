"""Cluster negatives: random categories from the positive's k-means cluster."""

from __future__ import annotations

import hashlib
import io
from importlib import metadata
from pathlib import Path

import numpy as np

from experiments.cache import content_key
from experiments.errors import ConfigError
from experiments.files import write_atomic
from experiments.miners.base import Miner, MiningContext

#: Part of the clustering cache's key: another scikit-learn may cluster differently.
SKLEARN_VERSION = metadata.version("scikit-learn")


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

    The clustering is kept on disk by content (the category vectors, ``n_clusters``, the seed and scikit-learn's
    version) when ``cache_dir`` is set: a rerun reads it back instead of importing scikit-learn (1-3 s of a warm
    rerun on two cores, by the load) and clustering again. The arrays are stored exactly (float64), so the draws
    are the same.

    Args:
        n_clusters: number of clusters (at least 1; clamped to the number of categories).
        strict: see ``Miner``; never triggered here because the nearest clusters always fill ``k``.
        cache_dir: folder of the clustering cache; ``None`` disables it.
    """

    def __init__(self, n_clusters: int = 6, strict: bool = False, cache_dir: str | None = None) -> None:
        super().__init__(strict=strict)
        if not isinstance(n_clusters, int) or n_clusters < 1:
            raise ConfigError(f"KMeansMiner: n_clusters={n_clusters!r} must be an integer >= 1.")
        self.n_clusters = n_clusters
        self.cache_dir = cache_dir
        self._assignment = np.zeros(0, dtype=int)
        self._centroid_distance = np.zeros((0, 0))

    def prepare(self, context: MiningContext, seed: int) -> None:
        n_clusters = min(self.n_clusters, context.n_categories)
        vectors = np.asarray(context.category_vectors, dtype=np.float64)
        path = self._cache_path(vectors, n_clusters, seed)
        if path is not None and path.is_file():
            try:
                with np.load(path) as stored:
                    assignment, distance = stored["assignment"], stored["centroid_distance"]
                if assignment.shape == (len(vectors),) and distance.shape == (n_clusters, n_clusters):
                    self._assignment, self._centroid_distance = assignment, distance
                    return
            except (OSError, ValueError, KeyError):  # an unreadable entry is clustered again and replaced
                pass
        from sklearn.cluster import KMeans

        kmeans = KMeans(n_clusters=n_clusters, random_state=seed, n_init=10)
        self._assignment = kmeans.fit_predict(vectors)
        centroids = kmeans.cluster_centers_
        self._centroid_distance = np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=-1)
        if path is not None:
            buffer = io.BytesIO()
            np.savez(buffer, assignment=self._assignment, centroid_distance=self._centroid_distance)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, buffer.getvalue(), unique=True)  # parallel sweep jobs may write the same entry

    def _cache_path(self, vectors: np.ndarray, n_clusters: int, seed: int) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(vectors.tobytes()).hexdigest()
        key = content_key(digest, str(vectors.shape), str(n_clusters), str(seed), SKLEARN_VERSION)
        return Path(self.cache_dir) / f"{key}.npz"

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
