"""``peers=[setfit]``: SetFit 1.2 (the ``peers`` extra): a contrastive fine-tune of the body, then a logistic head.

Recipe, as SetFit runs it: ``SetFitModel(model_body=<the run's embedder>, model_head=LogisticRegression())`` (what
``SetFitModel.from_pretrained`` builds for a plain sentence-transformers model) → ``Trainer`` with
``TrainingArguments`` at their defaults (CosineSimilarityLoss on (sentence, sentence, same class?) pairs, batch
size 16, one epoch for the body, body learning rate 2e-5, warmup 0.1) except ``num_iterations``, ``seed`` (the
run's) and what only reports or saves (no reporting, no checkpoints). One class per train example: its first
expected label.

Pairs. SetFit draws ``2 × num_iterations`` pairs per train example (as many same-class pairs as other-class pairs).
``num_iterations: null`` matches the project's default fine-tune, which sees ``duplication × (1 + k)``
(query, document) pairs per train example and epoch over ``reranker.epochs`` epochs: ``num_iterations =
ceil(duplication × (1 + k) × epochs / 2)`` (15 with k=4, duplication=2, 3 epochs). ``num_iterations=20`` is the
setting of SetFit's paper and its 0.x releases. (SetFit 1.x without ``num_iterations`` uses
``sampling_strategy="oversampling"``: every other-class pair once and as many same-class pairs, about n² pairs
for n train examples, out of reach on a CPU.)

Ranking: the head's ``predict_proba``; labels without a train example rank after every known label, by the
fine-tuned body's cosine similarity of the query to their category document.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.errors import ConfigError, UserError
from experiments.extras import importable
from experiments.models import PACKAGED_MINILM, pick_device
from experiments.peers.base import (
    Peer,
    PeerFit,
    Setting,
    TrainingData,
    load_body,
    quiet_trainer,
    ranked_by_classifier,
    silenced,
)
from experiments.rerankers.bi_encoder_finetuned import embed_texts


class SetFitPeer(Peer):
    """SetFit: contrastive body fine-tune, logistic-regression head; ranks by the head's probabilities.

    Args:
        model: the body (the run's embedder).
        num_iterations: SetFit's pairs knob; None: matched to the project's fine-tune (``project_*``).
        project_k, project_duplication, project_epochs: the project's ``k``, ``duplication`` and
            ``reranker.epochs``, for the matched pair count.
        device: ``auto``, ``cpu``, ``cuda``.
        progress: show SetFit's progress bars.
    """

    def __init__(
        self,
        model: str = PACKAGED_MINILM,
        num_iterations: int | None = None,
        project_k: int | None = None,
        project_duplication: int | None = None,
        project_epochs: float | None = None,
        device: str = "auto",
        progress: bool = False,
    ) -> None:
        super().__init__()
        if not importable("setfit"):
            raise UserError(
                "peers=[setfit] needs the 'peers' extra (setfit is not installed): pip install -e \".[peers]\""
            )
        if num_iterations is not None and (isinstance(num_iterations, bool) or num_iterations < 1):
            raise ConfigError(f"{self.name}: num_iterations={num_iterations!r} must be at least 1, or null.")
        self.model = model
        self.num_iterations = num_iterations
        self.project_k = project_k
        self.project_duplication = project_duplication
        self.project_epochs = project_epochs
        self.device = device
        self.progress = progress
        self._setfit: Any = None
        self._documents = np.zeros((0, 0))
        self.iterations()  # a matched count that cannot be computed fails before any work

    def iterations(self) -> int:
        """``num_iterations``, or the count matched to the project's fine-tune."""
        if self.num_iterations is not None:
            return self.num_iterations
        k, duplication, epochs = self.project_k, self.project_duplication, self.project_epochs
        if k is None or duplication is None or epochs is None:
            raise ConfigError(
                f"{self.name}: num_iterations=null matches the project's fine-tune (k, duplication, "
                "reranker.epochs), and this config has no reranker.epochs: set peers.setfit.num_iterations."
            )
        return math.ceil(duplication * (1 + k) * epochs / 2)

    def rule(self) -> str:
        """Where ``iterations`` comes from, in words."""
        if self.num_iterations is not None:
            return "set"
        duplication, k, epochs = self.project_duplication, self.project_k, self.project_epochs
        return f"matched to the project's {duplication} x (1 + {k}) x {epochs:g} pairs per train example"

    def settings(self) -> dict[str, Setting]:
        return {"num_iterations": self.iterations(), "num_iterations_from": self.rule(), "head": "LogisticRegression"}

    def _learn(self, data: TrainingData) -> PeerFit:
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
        from sklearn.linear_model import LogisticRegression
        from transformers import set_seed

        set_seed(data.seed)
        body = load_body(self.model, pick_device(self.device))
        model = SetFitModel(model_body=body, model_head=LogisticRegression())
        train = Dataset.from_dict({"text": [example.input for example in data.examples], "label": data.classes()})
        started = time.perf_counter()
        with (
            tempfile.TemporaryDirectory(prefix="peer-setfit-") as folder,
            _quiet(not self.progress),
            silenced(not self.progress),
        ):
            arguments = TrainingArguments(
                output_dir=str(Path(folder) / "trainer"),
                num_iterations=self.iterations(),
                seed=data.seed,
                report_to="none",
                save_strategy="no",
                show_progress_bar=self.progress,
            )
            trainer = Trainer(model=model, args=arguments, train_dataset=train)
            quiet_trainer(trainer.st_trainer, self.progress)
            trainer.train()
        seconds = time.perf_counter() - started
        self._setfit = model
        self._documents = embed_texts(body, data.documents)
        history = trainer.st_trainer.state.log_history
        losses = [
            (int(entry["step"]), float(entry["embedding_loss"])) for entry in history if "embedding_loss" in entry
        ]
        return PeerFit(
            seconds=seconds,
            pairs=2 * self.iterations() * len(data.examples),
            details={"num_iterations": self.iterations(), "steps": int(trainer.st_trainer.state.global_step)},
            loss_history=losses,
        )

    def _score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        model = self._setfit
        assert model is not None, "learn before scoring"
        # The head reads the body's embeddings as SetFit's predict_proba gives them to it; the fallback similarity
        # is the cosine of the same embeddings.
        vectors = np.asarray(model.encode(list(queries), show_progress_bar=False), dtype=np.float64)
        probabilities = model.model_head.predict_proba(vectors)
        classes = [str(label) for label in model.model_head.classes_]
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return ranked_by_classifier(probabilities, classes, self.data.labels, unit @ self._documents.T)


class _quiet:
    """SetFit's info-level training banner and the data sets' progress bars, silenced while ``active``."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self._level = logging.NOTSET

    def __enter__(self) -> None:
        if self.active:
            import datasets
            from setfit import logging as setfit_logging

            self._level = setfit_logging.get_verbosity()
            setfit_logging.set_verbosity_warning()
            datasets.disable_progress_bars()

    def __exit__(self, *exc: object) -> None:
        if self.active:
            import datasets
            from setfit import logging as setfit_logging

            setfit_logging.set_verbosity(self._level)
            datasets.enable_progress_bars()
