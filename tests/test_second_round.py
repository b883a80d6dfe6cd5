"""The second-round miner: it mines the fine-tuned teacher's vectors, and the teacher learns from no one else's rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from experiments import app, pipeline
from experiments.errors import ConfigError
from experiments.miners.adversarial import AdversarialMiner
from experiments.miners.base import MiningContext
from experiments.miners.random_negatives import RandomMiner
from experiments.miners.second_round import SecondRoundMiner
from experiments.outcome import Embeddings
from experiments.records import Example, FinetuneSet
from experiments.rerankers.base import FitContext, FitResult
from experiments.schema import Knobs

N_CATEGORIES = 6


def one_hot(index: int, size: int = N_CATEGORIES) -> np.ndarray:
    return np.eye(size)[index]


class SpyTeacher:
    """A teacher that records what it was fitted on and embeds texts as its ``vectors`` say (unit vectors)."""

    def __init__(self, vectors: dict[str, np.ndarray] | None = None) -> None:
        self.vectors = vectors or {}
        self.fitted: list[FinetuneSet] = []
        self.unloaded = 0

    def fit(
        self, finetune_set: FinetuneSet, cache_dir: Path, seed: int, context: FitContext | None = None
    ) -> FitResult:
        self.fitted.append(finetune_set)
        return FitResult(finetune_id=f"ft-spy{len(self.fitted)}", model_path=Path(cache_dir), reused=False)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = [self.vectors.get(text, one_hot(0) + one_hot(1)) for text in texts]
        return np.stack([row / np.linalg.norm(row) for row in rows])

    def unload(self) -> None:
        self.unloaded += 1


@pytest.fixture
def context() -> MiningContext:
    """Six categories the base embedder sees as orthogonal; query i asks for category i and sits on it."""
    labels = [f"cat{i}" for i in range(N_CATEGORIES)]
    return MiningContext(
        examples=[Example(input=f"query {i}", expected=[label]) for i, label in enumerate(labels)],
        labels=labels,
        documents=[f"doc {label}" for label in labels],
        category_vectors=np.eye(N_CATEGORIES),
        query_vectors=np.eye(N_CATEGORIES),
    )


def test_negatives_are_the_teachers_confusions_not_the_base_embedders(context: MiningContext, tmp_path: Path) -> None:
    # The teacher puts query 0 nearest to categories 4 and then 5 (after its own): its confusions. The base
    # embedder's vectors (orthogonal) would rank every other category equal, i.e. by index: 1, 2.
    vectors = {"query 0": one_hot(0) + 0.8 * one_hot(4) + 0.5 * one_hot(5)}
    vectors |= {f"doc cat{i}": one_hot(i) for i in range(N_CATEGORIES)}
    teacher = SpyTeacher(vectors)
    miner = SecondRoundMiner(RandomMiner(), teacher, AdversarialMiner(margin=2), str(tmp_path))
    mined = miner.mine(context, k=2, duplication=1, seed=0)
    assert mined.items[0].hard_negatives == ["doc cat4", "doc cat5"]
    assert AdversarialMiner(margin=2).mine(context, k=2, duplication=1, seed=0).items[0].hard_negatives == [
        "doc cat1",
        "doc cat2",
    ]
    # The teacher was fitted once, on the first miner's set of these same examples, and then let go.
    assert len(teacher.fitted) == 1 and teacher.unloaded == 1
    assert teacher.fitted[0].digest() == RandomMiner().mine(context, k=2, duplication=1, seed=0).digest()
    assert miner.teacher_id == "ft-spy1"


def test_k_zero_trains_no_teacher(context: MiningContext, tmp_path: Path) -> None:
    teacher = SpyTeacher()
    mined = SecondRoundMiner(RandomMiner(), teacher, AdversarialMiner(), str(tmp_path)).mine(context, 0, 2, seed=0)
    assert not teacher.fitted and all(not item.hard_negatives for item in mined.items)


def test_a_teacher_that_cannot_embed_is_a_config_error(tmp_path: Path) -> None:
    from experiments.rerankers.cross_encoder_finetuned import FinetunedCrossEncoder

    with pytest.raises(ConfigError, match="teacher=FinetunedCrossEncoder cannot embed texts; use a bi-encoder"):
        SecondRoundMiner(RandomMiner(), FinetunedCrossEncoder(), AdversarialMiner(), str(tmp_path))  # type: ignore[arg-type]


def test_the_validation_fit_teacher_never_sees_a_validation_row(tmp_path: Path) -> None:
    """Mining the validation fit's set (the pipeline's ``mine`` with ``keep``) trains the teacher on those rows only."""
    from experiments.datasets.synthetic import SyntheticTransactions

    splits = SyntheticTransactions(n_transactions=200, seed=0).load()
    knobs = Knobs(
        k=2,
        duplication=1,
        seed=3,
        validation_fraction=0.2,
        replicates=1,
        optimized_metric="mrr@1",
        evaluation={"bootstrap_resamples": 10},
        progress=False,
        log_model=False,
    )
    held_out = pipeline.validation_holdout(splits, knobs)
    assert held_out
    size = len(splits.categories)
    rng = np.random.default_rng(0)
    vectors = Embeddings(
        documents=[category.document(True) for category in splits.categories],
        categories=np.eye(size),
        train=rng.normal(size=(len(splits.train), size)),
        eval=np.zeros((len(splits.eval), size)),
    )
    teacher = SpyTeacher()
    miner = SecondRoundMiner(RandomMiner(), teacher, AdversarialMiner(), str(tmp_path))
    pipeline.fit_context(miner, splits, vectors, knobs, held_out)
    validation_queries = {splits.train[row].input for row in held_out}
    fit_queries = {splits.train[row].input for row in range(len(splits.train)) if row not in held_out}
    (taught,) = teacher.fitted
    assert {item.query for item in taught.items} == fit_queries
    assert not {item.query for item in taught.items} & validation_queries


def test_a_run_trains_a_teacher_per_mined_set_and_reruns_alike(make_cfg, tmp_path: Path) -> None:
    """End to end with a tiny model: with validation, one teacher on the fit rows and one on all of train; the set
    is the teachers' confusions (never a positive), and a rerun rebuilds the same set from the stored teachers."""
    overrides = ("miner=second_round", "reranker.select_epochs=true", "trackers=none", "log_model=false")
    first = app.run(make_cfg(*overrides, reranker="bi_encoder_finetuned"), tmp_path / "outputs" / "runs" / "a")
    models = tmp_path / "outputs" / "cache" / "models"
    teachers = [path for path in models.glob("ft-*") if (path / "config.json").is_file()]
    assert len(teachers) == 3  # two teachers and the run's own model (its epoch selection saves none)
    folder = first.output_dir
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["finetune_set"]["items"] == 90 * 2
    labels = {category.name: category.document(True) for category in first.splits.categories}
    for example, item in zip(
        [example for example in first.splits.train for _ in range(2)], first.finetune_set.items, strict=True
    ):
        assert item.relevant_passages == [labels[label] for label in example.expected]
        assert len(item.hard_negatives) == 3 and not set(item.hard_negatives) & set(item.relevant_passages)
    second = app.run(make_cfg(*overrides, reranker="bi_encoder_finetuned"), tmp_path / "outputs" / "runs" / "b")
    assert second.finetune_set.digest() == first.finetune_set.digest()
    assert second.fit is not None and second.fit.reused


def test_a_run_that_chooses_nothing_trains_no_teacher_for_validation(make_cfg, tmp_path: Path) -> None:
    """Without a choice to make on validation (select_epochs=false) the validation fit's set is never mined, so
    only the run's own teacher is trained: one teacher and the run's model."""
    overrides = ("miner=second_round", "reranker.select_epochs=false", "trackers=none", "log_model=false")
    app.run(make_cfg(*overrides, reranker="bi_encoder_finetuned"), tmp_path / "outputs" / "runs" / "a")
    models = tmp_path / "outputs" / "cache" / "models"
    assert len([path for path in models.glob("ft-*") if (path / "config.json").is_file()]) == 2
