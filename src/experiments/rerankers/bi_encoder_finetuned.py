"""A bi-encoder fine-tuned on the mined set: ``reranker=bi_encoder_finetuned``.

Recipe: base model → ``(query, positive, negative_1..k)`` rows → a MultipleNegativesRankingLoss variant from
``rerankers.losses`` (by default ``DistinctMNRL``: in-batch duplicates of a row's positive masked out), batches
from ``rerankers.samplers`` (``batches``) → ``SentenceTransformerTrainer`` → save under the fine-tune id.
Scoring is the cosine similarity of the fine-tuned query and document embeddings.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.errors import ConfigError
from experiments.models import PACKAGED_MINILM, loading, pick_device, resolve_model
from experiments.onnx import OnnxEncoder, check_backend, onnx_encoder
from experiments.records import FinetuneItem, FinetuneSet
from experiments.rerankers.base import FitContext, FitResult
from experiments.rerankers.batching import BatchPlan, plan_batches
from experiments.rerankers.trained import TrainedReranker, check_positive, mnrl_rows

if TYPE_CHECKING:
    import numpy as np
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from torch import nn

#: Batch compositions (``batches``): ``auto`` picks ``by_length`` or ``random`` per set (``rerankers.batching``);
#: ``by_length`` and ``distinct_positives`` are batch samplers of ``rerankers.samplers``.
BATCHES = ("auto", "random", "by_length", "distinct_positives")

#: Texts per forward pass when scoring (training batches are ``batch_size`` rows).
ENCODE_BATCH_SIZE = 64


def load_bi_encoder(path: str, max_length: int, device: str) -> SentenceTransformer:
    """Load a sentence-transformers model (a plain transformers folder gets mean pooling), in eval mode."""
    from sentence_transformers import SentenceTransformer

    with loading(path):
        model = SentenceTransformer(path, device=device, local_files_only=True)
    model.max_seq_length = max_length
    model.eval()
    return model


def embed_texts(model: SentenceTransformer, texts: Sequence[str]) -> np.ndarray:
    """Unit-length embeddings of ``texts`` (rows aligned with them).

    One text (a query being rescored) goes straight through the model: ``encode``'s batching machinery costs
    about 1 ms of a 10 ms call on two CPU cores, and the vector is the same.
    """
    if len(texts) == 1 and model.default_prompt_name is None:
        import torch
        from sentence_transformers.util import batch_to_device

        with torch.inference_mode():
            features = batch_to_device(model.preprocess(list(texts)), model.device)
            vector = torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=-1)
        return vector.float().cpu().numpy()
    return model.encode(
        list(texts),
        batch_size=ENCODE_BATCH_SIZE,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


def token_lengths(path: str, texts: Sequence[str], max_length: int) -> list[int]:
    """Tokens per text (special tokens included, cut at ``max_length``) under the tokenizer of the model at ``path``.

    Read with the ``tokenizers`` library from the folder's ``tokenizer.json`` (no torch: a rerun that reuses its
    stored model never loads it); a model with only a slow tokenizer goes through transformers.
    """
    file = Path(path) / "tokenizer.json"
    if file.is_file():
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(file))
        except Exception as error:  # the Rust library raises a bare Exception for a damaged file
            raise ConfigError(f"{file}: not a tokenizer that can be read ({error}).") from None
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length)
        return [len(tokenizer.encode(text).ids) for text in texts]  # one at a time: no thread pool before a fork
    from transformers import AutoTokenizer

    with loading(path):
        slow = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return [len(ids) for ids in slow(list(texts), truncation=True, max_length=max_length)["input_ids"]]


class FinetunedBiEncoder(TrainedReranker["SentenceTransformer"]):
    """Fine-tune a sentence-transformers bi-encoder on the mined items and rescore by cosine similarity.

    Args:
        base_model: model reference to start from.
        epochs, learning_rate, warmup_ratio: optimiser schedule (linear decay after warmup).
        batch_size: rows (query, positive, k negatives) per step at most; other rows' passages are extra
            negatives.
        min_steps_per_epoch: a set with fewer rows than this many full batches is cut into smaller batches
            (``rows // min_steps_per_epoch`` rows), so a small set still takes enough optimiser steps.
        max_length: tokens per text.
        scale: MNRL temperature inverse (cosine similarities are multiplied by it before the softmax).
        select_epochs: treat ``epochs`` as an upper bound and choose the count on the validation split (see
            ``TrainedReranker``).
        embed_once: embed each distinct document once per batch, without dropout (about 2.3x cheaper steps on a
            CPU; see ``DistinctMNRL``).
        in_batch_negatives: false: each row's negatives are only its own mined ones (``MinedOnlyMNRL``; needs
            ``k >= 1``); true: every other document of the batch counts too (``DistinctMNRL``).
        guide_margin: when set, drop the in-batch negatives that a frozen copy of the base model scores above the
            row's positive minus this margin (``GuidedMNRL``, GISTEmbed-style); ``None``: no filtering.
        batches: ``auto``: ``by_length`` where random batches would be padded to at least 1.5x their real tokens,
            else ``random`` (``rerankers.batching``); ``random``; ``by_length``: batches of queries of similar
            length, in a random order (``LengthGroupedBatchSampler``: fewer padded tokens per step);
            ``distinct_positives``: no two rows of a batch share a positive category
            (``DistinctPositivesBatchSampler``). What a fit used is in its record (``batches``, ``batch_size``).
        device: ``auto``, ``cpu``, ``cuda``. Not part of the fine-tune id.
        progress: show the training progress bar.
        backend: ``onnx`` scores with an ONNX Runtime export of the fine-tuned model (exact to about 1e-7,
            exported once and cached beside the weights; see ``experiments.onnx``) or ``torch``. Training always
            runs in torch; a model that cannot be exported scores with torch. Not part of the fine-tune id.

    ``score`` uses the model trained by the last ``fit``, or the base model before any ``fit`` (then it ranks
    like the embedding baseline would with this model). Document embeddings are cached in memory by text.
    """

    kind = "bi_encoder"

    def __init__(
        self,
        base_model: str = PACKAGED_MINILM,
        epochs: float = 3,
        learning_rate: float = 1e-4,
        batch_size: int = 64,
        min_steps_per_epoch: int = 8,
        warmup_ratio: float = 0.1,
        max_length: int = 128,
        scale: float = 20.0,
        select_epochs: bool = False,
        embed_once: bool = True,
        in_batch_negatives: bool = True,
        guide_margin: float | None = None,
        batches: str = "auto",
        device: str = "auto",
        progress: bool = False,
        backend: str = "onnx",
    ) -> None:
        self.backend = check_backend("reranker", backend)
        self.base_model = base_model
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.min_steps_per_epoch = min_steps_per_epoch
        self.warmup_ratio = warmup_ratio
        self.max_length = max_length
        self.scale = scale
        self.select_epochs = select_epochs
        self.embed_once = embed_once
        self.in_batch_negatives = in_batch_negatives
        self.guide_margin = guide_margin
        if batches not in BATCHES:
            raise ConfigError(f"{type(self).__name__}: batches={batches!r} must be one of {', '.join(BATCHES)}.")
        self.batches = batches
        self.device = device
        self.progress = progress
        self._check_schedule()
        check_positive(self, "scale", scale)
        if not min_steps_per_epoch >= 0:
            raise ConfigError(f"{self.name}: min_steps_per_epoch={min_steps_per_epoch} must be at least 0.")
        if guide_margin is not None and not guide_margin >= 0:
            raise ConfigError(f"{self.name}: guide_margin={guide_margin} must be at least 0, or null for no guide.")
        if guide_margin is not None and not in_batch_negatives:
            raise ConfigError(
                f"{self.name}: guide_margin={guide_margin} filters in-batch negatives, but in_batch_negatives=false "
                "has none; set one of them back (guide_margin=null or in_batch_negatives=true)."
            )
        self._doc_vectors: dict[str, np.ndarray] = {}
        self._encoder: OnnxEncoder | None = None
        self._onnx_tried = False

    @property
    def loss_name(self) -> str:
        if not self.in_batch_negatives:
            return "mnrl_mined_only"
        return "mnrl" if self.guide_margin is None else "mnrl_guided"

    def _own_train_args(self) -> dict[str, object]:
        # Named by what it does: an earlier embed_once (one dropout draw per category) trained other models.
        # The ablation knobs enter only when they differ from the default recipe, so its fine-tune ids stay put.
        return {
            "scale": self.scale,
            **({"embed_once": "no_dropout"} if self.embed_once else {}),
            **({"guide_margin": self.guide_margin} if self.guide_margin is not None else {}),
            **({"batches": self.batches} if self.batches != "random" else {}),
        }

    def plan(self, items: Sequence[FinetuneItem]) -> BatchPlan:
        """The batching a fit on ``items`` uses: ``batches`` and ``batch_size`` resolved for this set."""
        lengths = token_lengths(resolve_model(self.base_model), mnrl_rows(items)["query"], self.max_length)
        return plan_batches(lengths, self.batches, self.batch_size, self.min_steps_per_epoch)

    def fit(
        self, finetune_set: FinetuneSet, cache_dir: Path, seed: int, context: FitContext | None = None
    ) -> FitResult:
        """Train as ``TrainedReranker.fit`` does, with ``batches`` and ``batch_size`` resolved for this set first.

        The fine-tune id and the record name the resolved batching, so ``auto`` and the setting it chose train and
        store the same model.
        """
        plan = self.plan(finetune_set.items) if finetune_set.items else None
        configured = (self.batches, self.batch_size)
        if plan is not None:
            self.batches, self.batch_size = plan.batches, plan.batch_size
        try:
            result = super().fit(finetune_set, cache_dir, seed, context)
        finally:
            self.batches, self.batch_size = configured
        if plan is not None:
            result.extra.update(batches=plan.batches, batch_size=plan.batch_size, random_batch_padding=plan.padding)
        return result

    def _arguments_extra(self) -> dict[str, Any]:
        from experiments.rerankers.samplers import DistinctPositivesBatchSampler, LengthGroupedBatchSampler

        samplers = {"by_length": LengthGroupedBatchSampler, "distinct_positives": DistinctPositivesBatchSampler}
        return {"batch_sampler": samplers[self.batches]} if self.batches in samplers else {}

    def _trainer_classes(self) -> tuple[Any, Any]:
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        return SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    def _dataset(self, items: Sequence[FinetuneItem]) -> tuple[Dataset, int]:
        from datasets import Dataset

        rows = mnrl_rows(items)
        return Dataset.from_dict(rows), len(rows["query"]) * (len(rows) - 1)

    def _loss(self, model: SentenceTransformer, items: Sequence[FinetuneItem]) -> nn.Module:
        from experiments.rerankers.losses import DistinctMNRL, GuidedMNRL, MinedOnlyMNRL

        if not self.in_batch_negatives:
            if not all(item.hard_negatives for item in items):
                raise ConfigError(
                    f"{self.name}: in_batch_negatives=false trains on the mined negatives only, and the fine-tuning "
                    "set has none (k=0); use k >= 1 or in_batch_negatives=true."
                )
            return MinedOnlyMNRL(model, scale=self.scale, embed_once=self.embed_once)
        if self.guide_margin is not None:
            guide = copy.deepcopy(model)  # the base model, frozen: training starts from these weights
            return GuidedMNRL(model, guide, scale=self.scale, embed_once=self.embed_once, margin=self.guide_margin)
        return DistinctMNRL(model, scale=self.scale, embed_once=self.embed_once)

    def _load(self, path: str) -> SentenceTransformer:
        return load_bi_encoder(path, self.max_length, pick_device(self.device))

    def _forget_model(self) -> None:
        super()._forget_model()
        self._doc_vectors = {}
        self._encoder = None
        self._onnx_tried = False

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        model = self._loaded()
        if self.backend == "onnx" and not self._onnx_tried:
            import torch

            self._onnx_tried = True  # a model that cannot be exported is said once (onnx_encoder logs why)
            self._encoder = onnx_encoder(model, self._model_source(), threads=torch.get_num_threads())
        if self._encoder is not None:
            return self._encoder.encode(texts, ENCODE_BATCH_SIZE)
        return embed_texts(model, texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings of ``texts`` from the model trained by the last ``fit`` (the base model before)."""
        return self._embed(texts)

    def _score_matrix(self, model: SentenceTransformer, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        return embed_texts(model, queries) @ embed_texts(model, documents).T

    def _remember(self, documents: Sequence[str]) -> None:
        missing = [text for text in dict.fromkeys(documents) if text not in self._doc_vectors]
        if missing:
            self._doc_vectors.update(zip(missing, self._embed(missing), strict=True))

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """Cosine similarity of the query to each document, aligned with ``documents``."""
        return self.score_many([query], [documents])[0]

    def score_many(self, queries: Sequence[str], documents: Sequence[Sequence[str]]) -> list[list[float]]:
        """Cosine similarities, with every distinct query embedded in one batched pass."""
        self._remember([text for docs in documents for text in docs])
        wanted = list(dict.fromkeys(query for query, docs in zip(queries, documents, strict=True) if docs))
        vectors = dict(zip(wanted, self._embed(wanted), strict=True)) if wanted else {}
        return [
            [float(self._doc_vectors[text] @ vectors[query]) for text in docs]
            for query, docs in zip(queries, documents, strict=True)
        ]
