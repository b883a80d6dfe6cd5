"""``peers=[sentence_transformers]``: sentence-transformers' own recipe for a retrieval fine-tune.

Recipe, as the library documents it: (query, positive document) pairs → ``util.mine_hard_negatives`` with the
model being fine-tuned → ``MultipleNegativesRankingLoss`` → ``SentenceTransformerTrainer``. Here:

- pairs: one ``(anchor, positive)`` row per train example and expected label, the positive being that label's
  category document (the project's documents);
- mining: ``mine_hard_negatives(pairs, model, corpus=<every category document>, num_negatives=k,
  output_format="n-tuple")``, every other argument at its default (top-ranked candidates, no margin, no range),
  so each row becomes ``(anchor, positive, negative_1..k)``, the shape of the project's mined items;
- loss: ``MultipleNegativesRankingLoss(model)`` at its defaults (scale 20, cosine similarity, every other row's
  documents in the batch as extra negatives);
- trainer: ``SentenceTransformerTrainingArguments`` at their defaults (batch size 8, learning rate 5e-5, linear
  decay, no warmup, the default batch sampler) except ``num_train_epochs`` (``epochs``, 3) and ``seed`` (the run's);
  checkpoints, reporting and the model card are off (they change nothing trained); ``training_args`` sets any other.

Ranking: cosine similarity between the fine-tuned model's query and category-document embeddings.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from experiments.errors import ConfigError
from experiments.models import PACKAGED_MINILM, pick_device
from experiments.peers.base import Peer, PeerFit, Setting, TrainingData, load_body, silenced
from experiments.records import FinetuneItem, FinetuneSet
from experiments.rerankers.bi_encoder_finetuned import embed_texts
from experiments.rerankers.trained import LOSS_LOG_STEPS, loss_history, run_trainer, without_model_card

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: One row per query with all its negatives: the rows MultipleNegativesRankingLoss takes, shaped like the project's
#: (query, positive, k negatives) items (mine_hard_negatives' default, "triplet", repeats each query per negative).
OUTPUT_FORMAT: Literal["n-tuple"] = "n-tuple"


class SentenceTransformersRecipe(Peer):
    """Mine with ``util.mine_hard_negatives``, fine-tune with MultipleNegativesRankingLoss, rank by cosine.

    Args:
        model: the model fine-tuned (the run's embedder).
        num_negatives: mined negatives per (query, positive) row; 0: no mining, in-batch negatives only.
        epochs: ``num_train_epochs``.
        training_args: other ``SentenceTransformerTrainingArguments`` (their defaults otherwise).
        device: ``auto``, ``cpu``, ``cuda``.
        progress: show the mining and training progress.
    """

    def __init__(
        self,
        model: str = PACKAGED_MINILM,
        num_negatives: int = 4,
        epochs: float = 3,
        training_args: Mapping[str, Any] | None = None,
        device: str = "auto",
        progress: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 0:
            raise ConfigError(f"{self.name}: num_negatives={num_negatives!r} must be a whole number of at least 0.")
        if not epochs > 0:
            raise ConfigError(f"{self.name}: epochs={epochs!r} must be greater than 0.")
        self.model = model
        self.num_negatives = num_negatives
        self.epochs = epochs
        self.training_args = dict(training_args or {})
        self.device = device
        self.progress = progress
        self._check_training_args()
        self._body: SentenceTransformer | None = None
        self._documents = np.zeros((0, 0))

    def _check_training_args(self) -> None:
        from sentence_transformers import SentenceTransformerTrainingArguments

        known = SentenceTransformerTrainingArguments.__dataclass_fields__
        unknown = sorted(set(self.training_args) - set(known))
        if unknown:
            raise ConfigError(
                f"{self.name}: training_args.{unknown[0]} is not a SentenceTransformerTrainingArguments field."
            )

    def settings(self) -> dict[str, Setting]:
        extra = {f"training_args.{key}": str(value) for key, value in sorted(self.training_args.items())}
        return {"num_negatives": self.num_negatives, "epochs": self.epochs, "output_format": OUTPUT_FORMAT, **extra}

    def _learn(self, data: TrainingData) -> PeerFit:
        from datasets import Dataset
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        from sentence_transformers.util import mine_hard_negatives
        from transformers import set_seed

        device = pick_device(self.device)
        set_seed(data.seed)
        model = load_body(self.model, device)
        document = dict(zip(data.labels, data.documents, strict=True))
        rows = [(example.input, document[label]) for example in data.examples for label in example.expected]
        pairs = Dataset.from_dict({"anchor": [row[0] for row in rows], "positive": [row[1] for row in rows]})
        started = time.perf_counter()
        dataset = pairs
        if self.num_negatives:
            with silenced(not self.progress):  # its encoding bars show whatever verbose says
                dataset = mine_hard_negatives(
                    pairs,
                    model,
                    corpus=list(data.documents),
                    num_negatives=self.num_negatives,
                    output_format=OUTPUT_FORMAT,
                    verbose=self.progress,
                )
        mined = time.perf_counter() - started
        with tempfile.TemporaryDirectory(prefix="peer-st-") as folder:
            arguments = SentenceTransformerTrainingArguments(
                **{
                    "output_dir": str(Path(folder) / "trainer"),
                    "num_train_epochs": self.epochs,
                    "seed": data.seed,
                    "save_strategy": "no",
                    "report_to": "none",
                    "logging_steps": LOSS_LOG_STEPS,
                    "disable_tqdm": not self.progress,
                    "use_cpu": device == "cpu",
                    **self.training_args,
                }
            )
            trainer = without_model_card(SentenceTransformerTrainer)(
                model=model, args=arguments, train_dataset=dataset, loss=MultipleNegativesRankingLoss(model)
            )
            output = run_trainer(trainer)
        seconds = time.perf_counter() - started
        model.eval()
        self._body = model
        self._documents = embed_texts(model, data.documents)
        columns = dataset.column_names
        items = [
            FinetuneItem(
                query=row[columns[0]],
                relevant_passages=[row[columns[1]]],
                hard_negatives=[row[name] for name in columns[2:]],
            )
            for row in dataset
        ]
        return PeerFit(
            seconds=seconds,
            pairs=len(dataset) * (len(columns) - 1),
            details={
                "mine_seconds": round(mined, 3),
                "train_loss": float(output.training_loss),
                "steps": int(output.global_step),
                "rows": len(dataset),
            },
            loss_history=loss_history(trainer),
            finetune_set=FinetuneSet(items=items),
        )

    def _score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        assert self._body is not None, "learn before scoring"
        return embed_texts(self._body, queries) @ self._documents.T
