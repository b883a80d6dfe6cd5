"""A bi-encoder fine-tuned on the mined set: ``reranker=bi_encoder_finetuned``.

Recipe: base model → ``(query, positive, negative_1..k)`` rows → MultipleNegativesRankingLoss (in-batch
duplicates of a row's positive masked out) → ``SentenceTransformerTrainer`` → save under the fine-tune id.
Scoring is the cosine similarity of the fine-tuned query and document embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from experiments.models import PACKAGED_MINILM, loading, pick_device
from experiments.onnx import OnnxEncoder, check_backend, onnx_encoder
from experiments.records import FinetuneItem
from experiments.rerankers.trained import TrainedReranker, check_positive, mnrl_rows

if TYPE_CHECKING:
    import numpy as np
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from torch import nn

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


def distinct_mnrl(model: SentenceTransformer, scale: float, embed_once: bool = False) -> nn.Module:
    """MultipleNegativesRankingLoss that never treats a copy of a row's positive as one of its negatives.

    The documents are a few dozen categories, so a batch of rows holds the same category many times: as other
    rows' positives and as their hard negatives. The stock loss would push the query away from its own
    positive through those copies. Copies are found by equal token ids, which is exact. With ``embed_once`` (the
    default recipe), each distinct document is embedded once per batch, without dropout, and shared by its copies:
    a batch of 32 rows with 4 negatives holds 160 document texts but at most a few dozen distinct ones, so a step
    costs about 2.3x fewer CPU-seconds, with the same loss and gradients as the stock path in eval mode. The
    document pass runs without dropout because one shared random draw per category learned badly (mrr@1 0.33
    instead of 1.0 on the toy set of tests/test_rerankers.py); the queries keep theirs.
    """
    import torch
    from sentence_transformers.base.losses.merged_forward import embed_columns
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from torch import Tensor

    def token_keys(features: dict[str, Any]) -> list[tuple[int, ...]]:
        ids, mask = features["input_ids"], features["attention_mask"].bool()
        return [tuple(row[row_mask].tolist()) for row, row_mask in zip(ids, mask, strict=True)]

    def padded(keys: list[tuple[int, ...]], like: dict[str, Any]) -> dict[str, Tensor]:
        """Features for token sequences, right-padded to the longest (as the tokenizer pads a batch)."""
        width = max(len(key) for key in keys)
        device = like["input_ids"].device
        ids = torch.zeros((len(keys), width), dtype=like["input_ids"].dtype, device=device)
        mask = torch.zeros((len(keys), width), dtype=like["attention_mask"].dtype, device=device)
        for row, key in enumerate(keys):
            ids[row, : len(key)] = torch.tensor(key, dtype=ids.dtype)
            mask[row, : len(key)] = 1
        features = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in like:
            features["token_type_ids"] = torch.zeros_like(ids)
        return features

    class DistinctMNRL(MultipleNegativesRankingLoss):
        def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
            columns = list(sentence_features)
            doc_keys = [key for features in columns[1:] for key in token_keys(features)]
            ids = {key: index for index, key in enumerate(dict.fromkeys(doc_keys))}
            if embed_once:
                queries = self.model(columns[0])["sentence_embedding"]
                training = self.model.training
                self.model.eval()  # one draw per category: without dropout (a shared random draw learns badly)
                try:
                    docs = self.model(padded(list(ids), columns[1]))["sentence_embedding"]
                finally:
                    self.model.train(training)
            else:
                embeddings = embed_columns(self.model, columns)
                queries, docs = embeddings[0], torch.cat(embeddings[1:], dim=0)
            doc_ids = torch.tensor([ids[key] for key in doc_keys], device=queries.device)
            if embed_once:
                docs = docs[doc_ids]
            batch = queries.size(0)
            copies = doc_ids[None, :] == doc_ids[:batch, None]  # (batch, all docs): same text as row's positive
            rows = torch.arange(batch, device=queries.device)
            copies[rows, rows] = False
            scores = self.similarity_fct(queries, docs) * self.scale
            scores = scores.masked_fill(copies, float("-inf"))
            return torch.nn.functional.cross_entropy(scores, rows)

    return DistinctMNRL(model, scale=scale)


class FinetunedBiEncoder(TrainedReranker["SentenceTransformer"]):
    """Fine-tune a sentence-transformers bi-encoder on the mined items and rescore by cosine similarity.

    Args:
        base_model: model reference to start from.
        epochs, learning_rate, warmup_ratio: optimiser schedule (linear decay after warmup).
        batch_size: rows (query, positive, k negatives) per step; other rows' passages are extra negatives.
        max_length: tokens per text.
        scale: MNRL temperature inverse (cosine similarities are multiplied by it before the softmax).
        select_epochs: treat ``epochs`` as an upper bound and choose the count on the validation split (see
            ``TrainedReranker``).
        embed_once: embed each distinct document once per batch, without dropout (about 2.3x cheaper steps on a
            CPU; see ``distinct_mnrl``).
        device: ``auto``, ``cpu``, ``cuda``. Not part of the fine-tune id.
        progress: show the training progress bar.
        backend: ``onnx`` scores with an ONNX Runtime export of the fine-tuned model (exact to about 1e-7,
            exported once and cached beside the weights; see ``experiments.onnx``) or ``torch``. Training always
            runs in torch; a model that cannot be exported scores with torch. Not part of the fine-tune id.

    ``score`` uses the model trained by the last ``fit``, or the base model before any ``fit`` (then it ranks
    like the embedding baseline would with this model). Document embeddings are cached in memory by text.
    """

    kind = "bi_encoder"
    loss_name = "mnrl"

    def __init__(
        self,
        base_model: str = PACKAGED_MINILM,
        epochs: float = 3,
        learning_rate: float = 5e-5,
        batch_size: int = 32,
        warmup_ratio: float = 0.1,
        max_length: int = 128,
        scale: float = 20.0,
        select_epochs: bool = False,
        embed_once: bool = True,
        device: str = "auto",
        progress: bool = False,
        backend: str = "onnx",
    ) -> None:
        self.backend = check_backend("reranker", backend)
        self.base_model = base_model
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.warmup_ratio = warmup_ratio
        self.max_length = max_length
        self.scale = scale
        self.select_epochs = select_epochs
        self.embed_once = embed_once
        self.device = device
        self.progress = progress
        self._check_schedule()
        check_positive(self, "scale", scale)
        self._doc_vectors: dict[str, np.ndarray] = {}
        self._encoder: OnnxEncoder | None = None
        self._onnx_tried = False

    def _own_train_args(self) -> dict[str, object]:
        # Named by what it does: an earlier embed_once (one dropout draw per category) trained other models.
        return {"scale": self.scale, **({"embed_once": "no_dropout"} if self.embed_once else {})}

    def _trainer_classes(self) -> tuple[Any, Any]:
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        return SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    def _dataset(self, items: Sequence[FinetuneItem]) -> tuple[Dataset, int]:
        from datasets import Dataset

        rows = mnrl_rows(items)
        return Dataset.from_dict(rows), len(rows["query"]) * (len(rows) - 1)

    def _loss(self, model: SentenceTransformer, items: Sequence[FinetuneItem]) -> nn.Module:
        return distinct_mnrl(model, self.scale, self.embed_once)

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
