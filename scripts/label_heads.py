"""Do label-aware heads add anything to a fine-tuned bi-encoder? Measured on the validation split only.

A run that chooses on validation (``reranker=fused``, or ``reranker.select_epochs=true``) stores a bi-encoder
fine-tuned on the train rows outside the validation split. This script embeds, with that model and with the
frozen base model, the category documents, those fit rows and the validation rows, and scores the validation
queries five ways: category similarity (the project's reranker), a vote of the 5 or 10 nearest fit rows (the label
memory), the cosine to each label's centroid of fit rows, and logistic regression on the fit rows' embeddings; then
category similarity fused with each head, w x category + (1 - w) x head, for w in 0, 0.1, ..., 1. The eval split
is never read: the numbers can choose a default.

    .venv/bin/python scripts/label_heads.py outputs/cache/models/ft-6c33ece0134bcf3a dataset=banking77 [seed=42]

The overrides are run.py's: they pick the data set, the seed and validation_fraction of the run that trained the
model (the split is recomputed from them; a model trained on other rows gives optimistic numbers).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

Scores = np.ndarray


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        raise SystemExit(2)
    from experiments.errors import UserError
    from experiments.models import resolve_model

    try:
        cfg, splits, fit, validation = _split(argv[0], argv[1:])
        base = resolve_model(cfg.embedder.model)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    names = splits.category_names
    documents = [category.document(cfg.retrieval.with_descriptions) for category in splits.categories]
    fit_labels = np.array([names.index(example.expected[0]) for example in fit])
    gold = np.array([names.index(example.expected[0]) for example in validation])
    print(f"{splits.name}: {len(fit)} fit rows, {len(validation)} validation rows, {len(names)} labels")
    for tag, model in (("frozen base model", base), ("fine-tuned", argv[0])):
        encode = _encoder(model)
        heads = _heads(
            encode(documents),
            encode([e.input for e in fit]),
            encode([e.input for e in validation]),
            fit_labels,
            len(names),
        )
        print(f"\n== {tag} ({model})")
        for name, scores in heads.items():
            print(f"  {name:<22} mrr@1 {_mrr(scores, gold, 1):.3f}  mrr@5 {_mrr(scores, gold, 5):.3f}")
        weights = np.round(np.linspace(0, 1, 11), 1)
        print("  fused with category similarity, mrr@1 at w = " + " ".join(f"{w:.1f}" for w in weights))
        for name in ("label memory (5)", "centroid", "logistic regression"):
            curve = [_mrr(w * heads["category similarity"] + (1 - w) * heads[name], gold, 1) for w in weights]
            print(f"  {name:<22} " + " ".join(f"{value:.3f}" for value in curve))


def _split(model: str, overrides: list[str]) -> tuple[Any, Any, list[Any], list[Any]]:
    """The composed config, the data and its fit and validation rows, as the run that trained ``model`` split them.

    Raises:
        UserError: no model folder, a bad option (one line, as run.py says it), or no validation split.
    """
    from experiments.api import compose
    from experiments.app import build
    from experiments.datasets.splits import holdout
    from experiments.errors import UserError

    if not os.path.isdir(model):
        raise UserError(f"{model}: not a model folder (give a fine-tuned model, outputs/cache/models/ft-<id>).")
    cfg = compose(overrides)
    if not cfg.validation_fraction > 0:
        raise UserError(
            f"validation_fraction={cfg.validation_fraction}: a run with no validation split has nothing to score "
            "here (every train row trained the model)."
        )
    splits = build(cfg, "dataset").load()
    held = holdout(splits.train, splits.group_key, cfg.validation_fraction, cfg.seed)
    fit = [example for position, example in enumerate(splits.train) if position not in held]
    validation = [example for position, example in enumerate(splits.train) if position in held]
    if not validation:
        raise UserError(
            f"no validation rows: {splits.name}'s {len(splits.train)} train rows leave none aside (a label never "
            "gives up its last row); use more train rows per label."
        )
    return cfg, splits, fit, validation


def _encoder(model: str) -> Callable[[list[str]], np.ndarray]:
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(model, device="cpu")
    return lambda texts: encoder.encode(texts, normalize_embeddings=True, batch_size=64, convert_to_numpy=True)


def _heads(
    documents: np.ndarray, fit: np.ndarray, queries: np.ndarray, labels: np.ndarray, n: int
) -> dict[str, Scores]:
    from sklearn.linear_model import LogisticRegression

    similarity = queries @ fit.T

    def vote(neighbours: int) -> Scores:
        scores = np.zeros((len(queries), n))
        nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :neighbours]
        for row, members in enumerate(nearest):
            weights = np.clip(similarity[row, members], 0.0, None)
            np.add.at(scores[row], labels[members], weights / (weights.sum() or 1.0))
        return scores

    centroids = np.zeros((n, fit.shape[1]))
    np.add.at(centroids, labels, fit)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12
    probe = LogisticRegression(max_iter=1000).fit(fit, labels)
    probabilities = np.zeros((len(queries), n))
    probabilities[:, probe.classes_] = probe.predict_proba(queries)
    return {
        "category similarity": queries @ documents.T,
        "label memory (5)": vote(5),
        "label memory (10)": vote(10),
        "centroid": queries @ centroids.T,
        "logistic regression": probabilities,
    }


def _mrr(scores: Scores, gold: np.ndarray, k: int) -> float:
    ranks = np.argmax(np.argsort(-scores, axis=1, kind="stable") == gold[:, None], axis=1) + 1
    return float(np.where(ranks <= k, 1.0 / ranks, 0.0).mean())


if __name__ == "__main__":
    main(sys.argv[1:])
