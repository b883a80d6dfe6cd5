"""The bi-encoder's losses and batch sampler, alone and inside a fit: which documents count as a row's negatives."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from experiments.errors import ConfigError
from experiments.records import FinetuneItem, FinetuneSet
from experiments.rerankers.bi_encoder_finetuned import FinetunedBiEncoder, load_bi_encoder

# Row 0 wants Red (mined negative Blue), row 1 wants Green (mined negative Yellow): with in-batch negatives, row 0
# also sees Green and Yellow, row 1 also sees Red and Blue.
COLUMNS = [["a red query", "a green query"], ["Red", "Green"], ["Blue", "Yellow"]]
FAST = {"epochs": 1, "batch_size": 4, "device": "cpu"}


def loss_and_gradient(model_dir: Path, make_loss, columns: list[list[str]] = COLUMNS):
    import torch

    model = load_bi_encoder(str(model_dir), 32, "cpu")  # eval mode: no dropout, so values are comparable
    value = make_loss(model)([model.preprocess(column) for column in columns], None)
    value.backward()
    gradient = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return value.item(), gradient


def test_mined_only_loss_ignores_in_batch_negatives(tiny_model_dir: Path) -> None:
    """Its value is the mean of each row's loss over its own (positive, negatives); the default's is not."""
    import torch

    from experiments.rerankers.losses import DistinctMNRL, MinedOnlyMNRL

    mined, mined_gradient = loss_and_gradient(tiny_model_dir, lambda m: MinedOnlyMNRL(m, scale=20.0))
    default, default_gradient = loss_and_gradient(tiny_model_dir, lambda m: DistinctMNRL(m, scale=20.0))
    model = load_bi_encoder(str(tiny_model_dir), 32, "cpu")
    with torch.no_grad():
        vectors = [
            torch.nn.functional.normalize(model(model.preprocess(c))["sentence_embedding"], dim=-1) for c in COLUMNS
        ]
    queries, positives, negatives = vectors
    expected = [
        math.log1p(math.exp(20.0 * float(queries[row] @ negatives[row] - queries[row] @ positives[row])))
        for row in range(2)
    ]
    assert mined == pytest.approx(sum(expected) / 2, rel=1e-4)
    alone = [
        loss_and_gradient(tiny_model_dir, lambda m: MinedOnlyMNRL(m), [[c[row]] for c in COLUMNS])[0]
        for row in range(2)
    ]
    assert mined == pytest.approx(sum(alone) / 2, rel=1e-4)
    assert default > mined + 1e-3  # the default also sums the other row's two documents into each softmax
    assert not torch.allclose(mined_gradient, default_gradient, atol=1e-6)


def test_mined_only_loss_needs_a_mined_negative(tiny_model_dir: Path) -> None:
    from experiments.rerankers.losses import MinedOnlyMNRL

    with pytest.raises(ValueError, match=r"k >= 1"):
        loss_and_gradient(tiny_model_dir, lambda m: MinedOnlyMNRL(m), COLUMNS[:2])


def test_guided_loss_drops_in_batch_negatives_the_guide_ranks_above_the_positive(tiny_model_dir: Path) -> None:
    import copy

    import torch

    from experiments.rerankers.losses import GuidedMNRL, MinedOnlyMNRL, token_keys

    model = load_bi_encoder(str(tiny_model_dir), 32, "cpu")
    features = [model.preprocess(column) for column in COLUMNS]
    loss = GuidedMNRL(model, copy.deepcopy(model), margin=0.0)
    doc_keys = [key for f in features[1:] for key in token_keys(f)]
    distinct = list(dict.fromkeys(doc_keys))
    doc_ids = torch.tensor([distinct.index(key) for key in doc_keys])
    with torch.no_grad():
        q, *docs = (torch.nn.functional.normalize(model(f)["sentence_embedding"], dim=-1) for f in features)
    similarity = q @ torch.cat(docs).T
    expected = torch.tensor(
        [[j % 2 != i and bool(similarity[i, j] > similarity[i, i]) for j in range(4)] for i in range(2)]
    )
    assert torch.equal(loss.excluded(features, distinct, doc_ids), expected)
    # A margin wider than any cosine gap drops every in-batch document: what is left is the mined-only loss.
    wide, _ = loss_and_gradient(tiny_model_dir, lambda m: GuidedMNRL(m, copy.deepcopy(m), margin=2.5))
    assert wide == pytest.approx(loss_and_gradient(tiny_model_dir, lambda m: MinedOnlyMNRL(m))[0], rel=1e-5)


def test_distinct_positive_batches_never_repeat_a_category() -> None:
    from datasets import Dataset

    from experiments.rerankers.samplers import DistinctPositivesBatchSampler

    positives = [f"cat{i % 7}" for i in range(60)] + ["cat0"] * 10  # skewed: cat0 fills the tail
    dataset = Dataset.from_dict({"query": [f"q{i}" for i in range(70)], "positive": positives})
    sampler = DistinctPositivesBatchSampler(dataset, batch_size=5, drop_last=False, seed=3)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(len({positives[i] for i in batch}) == len(batch) <= 5 for batch in batches)
        assert sorted(i for batch in batches for i in batch) == list(range(70))
        epochs.append(batches)
    assert epochs[0] != epochs[1]
    again = DistinctPositivesBatchSampler(dataset, batch_size=5, drop_last=False, seed=3)
    assert list(again) == epochs[0]
    dropped = DistinctPositivesBatchSampler(dataset, batch_size=5, drop_last=True, seed=3)
    assert all(len(batch) == 5 for batch in dropped)


def test_length_grouped_batches_pad_less_and_visit_every_row_once() -> None:
    import random

    from datasets import Dataset

    from experiments.rerankers.samplers import LengthGroupedBatchSampler

    rng = random.Random(0)
    queries = ["x" * rng.choice([5, 10, 20, 80]) for _ in range(300)]
    dataset = Dataset.from_dict({"query": queries, "positive": ["cat"] * 300})
    sampler = LengthGroupedBatchSampler(dataset, batch_size=8, drop_last=False, seed=3)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) and sorted(i for batch in batches for i in batch) == list(range(300))
        epochs.append(batches)
    assert epochs[0] != epochs[1]
    assert list(LengthGroupedBatchSampler(dataset, batch_size=8, drop_last=False, seed=3)) == epochs[0]

    def padded(batches: list[list[int]]) -> int:
        return sum(len(batch) * max(len(queries[i]) for i in batch) for batch in batches)

    order = list(range(300))
    rng.shuffle(order)
    random_batches = [order[i : i + 8] for i in range(0, 300, 8)]
    assert padded(epochs[0]) < 0.6 * padded(random_batches)
    # not sorted end to end: the batch order is shuffled, so long and short batches alternate
    first = [max(len(queries[i]) for i in batch) for batch in epochs[0]]
    assert first != sorted(first, reverse=True) and first != sorted(first)


def test_random_batches_do_repeat_categories() -> None:
    """The situation the sampler removes: 32 random rows over 30 categories share positives (birthday bound)."""
    import random

    rng = random.Random(0)
    repeats = sum(max(Counter(rng.randrange(30) for _ in range(32)).values()) > 1 for _ in range(200))
    assert repeats == 200


def k_zero_set() -> FinetuneSet:
    colours = ["Red", "Blue", "Green", "Yellow"]
    return FinetuneSet(
        [FinetuneItem(query=f"shop {i} paid in {colours[i % 4]}", relevant_passages=[colours[i % 4]]) for i in range(8)]
    )


def test_k_zero_trains_on_in_batch_negatives_only(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from experiments.rerankers import losses

    seen: list[int] = []
    forward = losses.DistinctMNRL.forward

    def spy(self, sentence_features, labels):
        features = list(sentence_features)
        seen.append(len(features))
        return forward(self, features, labels)

    monkeypatch.setattr(losses.DistinctMNRL, "forward", spy)
    reranker = FinetunedBiEncoder(str(tiny_model_dir), **FAST)
    fit = reranker.fit(k_zero_set(), tmp_path, seed=0)
    assert seen and set(seen) == {2}  # (query, positive) only: every negative comes from the other rows
    assert fit.train_pairs == 8 and fit.extra["train_loss"] > 0
    with pytest.raises(ConfigError, match=r"in_batch_negatives=false.*k=0"):
        FinetunedBiEncoder(str(tiny_model_dir), in_batch_negatives=False, **FAST).fit(k_zero_set(), tmp_path, seed=0)


@pytest.mark.parametrize(
    "knobs",
    [{"in_batch_negatives": False}, {"guide_margin": 0.0}, {"batches": "distinct_positives"}, {"batches": "by_length"}],
)
def test_each_ablation_trains_under_its_own_fine_tune_id(
    tiny_model_dir: Path, tmp_path: Path, knobs: dict[str, object]
) -> None:
    items = [
        FinetuneItem(query=f"shop {i} paid in {c}", relevant_passages=[c], hard_negatives=[n])
        for i, (c, n) in enumerate([("Red", "Blue"), ("Blue", "Green"), ("Green", "Red"), ("Red", "Green")] * 2)
    ]
    finetune_set = FinetuneSet(items)
    default = FinetunedBiEncoder(str(tiny_model_dir), **FAST)
    ablation = FinetunedBiEncoder(str(tiny_model_dir), **FAST, **knobs)  # type: ignore[arg-type]
    assert ablation.train_args(0) != default.train_args(0)
    fit = ablation.fit(finetune_set, tmp_path, seed=0)
    assert not fit.reused and math.isfinite(float(fit.extra["train_loss"]))
    assert ablation.score("shop 9 paid in Red", ["Red", "Blue"])


def test_default_train_args_carry_no_ablation_keys() -> None:
    """The fine-tune id hashes these: random batches keep the id they had before the ablations existed (a fit
    resolves ``batches=auto`` to random or by_length first: tests/test_batching.py)."""
    args = FinetunedBiEncoder(device="cpu", batches="random").train_args(0)
    assert args["loss"] == "mnrl"
    assert set(args) == {
        *("kind", "loss", "epochs", "learning_rate", "batch_size", "warmup_ratio", "max_length", "seed"),
        *("scale", "embed_once"),
    }
    assert FinetunedBiEncoder(device="cpu", batches="by_length").train_args(0)["batches"] == "by_length"


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"guide_margin": -0.1}, "guide_margin=-0.1"),
        ({"guide_margin": 0.1, "in_batch_negatives": False}, "in_batch_negatives=false has none"),
    ],
)
def test_bad_ablation_knobs_name_the_class(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=f"FinetunedBiEncoder: .*{message}"):
        FinetunedBiEncoder(**knobs)  # type: ignore[arg-type]
