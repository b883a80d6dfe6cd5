"""``peers=[logistic_regression]``: a linear probe on the frozen embeddings, as MTEB evaluates classification.

MTEB's classification protocol: ``LogisticRegression(max_iter=100)`` fitted on the frozen embeddings of the train
examples (one class per example: its first expected label), ``predict_proba`` of the eval queries' frozen
embeddings ranks the categories. Labels without a train example rank after, by the frozen cosine similarity of
the query to their category document.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from experiments.errors import ConfigError
from experiments.peers.base import Peer, PeerFit, Setting, TrainingData, ranked_by_classifier


class LogisticRegressionPeer(Peer):
    """scikit-learn's ``LogisticRegression`` on the frozen embedder's vectors.

    Args:
        max_iter: the solver's iterations (MTEB: 100).
    """

    def __init__(self, max_iter: int = 100) -> None:
        super().__init__()
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ConfigError(f"{self.name}: max_iter={max_iter!r} must be a whole number of at least 1.")
        self.max_iter = max_iter
        self._classifier: object | None = None

    def settings(self) -> dict[str, Setting]:
        return {"max_iter": self.max_iter}

    def _learn(self, data: TrainingData) -> PeerFit:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        started = time.perf_counter()
        classifier = LogisticRegression(max_iter=self.max_iter, random_state=data.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # MTEB's 100 iterations, whether or not converged
            classifier.fit(data.vectors, data.classes())
        self._classifier = classifier
        seconds = time.perf_counter() - started
        return PeerFit(seconds=seconds, pairs=len(data.examples), details={"iterations": int(max(classifier.n_iter_))})

    def _score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        classifier = self._classifier
        assert isinstance(classifier, LogisticRegression), "learn before scoring"
        vectors = self.data.encode(queries)
        similarity = vectors @ self.data.document_vectors.T
        return ranked_by_classifier(
            classifier.predict_proba(vectors), classifier.classes_, self.data.labels, similarity
        )
