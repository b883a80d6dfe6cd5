"""Honest numbers: grouped splits, choices made on validation only, seed replicates, label memory and fusion."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from experiments import app, run_folder
from experiments.datasets.jsonl import JsonlDataset
from experiments.datasets.splits import group_holdout, holdout
from experiments.datasets.synthetic import SyntheticTransactions
from experiments.errors import DataError, UserError
from experiments.records import Example, FinetuneSet
from experiments.records.run import Selection
from experiments.rerankers.base import FitContext, Holdout, Reranker
from experiments.rerankers.fused import FusedReranker
from experiments.rerankers.label_memory import LabelMemory


def run_dir(tmp_path: Path, name: str = "run") -> Path:
    return tmp_path / "outputs" / "runs" / name


def test_the_bundled_default_split_has_no_merchant_on_both_sides() -> None:
    train, eval_ = SyntheticTransactions().transactions()
    assert not {t.merchant_name for t in train} & {t.merchant_name for t in eval_}
    assert abs(len(eval_) / (len(train) + len(eval_)) - 0.3) < 0.02
    in_train = Counter(t.expense_category for t in train)
    in_eval = Counter(t.expense_category for t in eval_)
    assert set(in_train) == set(in_eval) and len(in_train) == 31  # every category on both sides
    splits = SyntheticTransactions().load()
    assert splits.group_key == "merchant" and all(e.metadata["merchant"] for e in splits.eval)


def test_split_random_keeps_the_old_split_where_merchants_recur() -> None:
    train, eval_ = SyntheticTransactions(split="random").transactions()
    shared = {t.merchant_name for t in train} & {t.merchant_name for t in eval_}
    assert len(eval_) == 218 and len(shared) > 50


def test_group_holdout_keeps_groups_whole_and_labels_on_both_sides() -> None:
    labels = [f"L{i % 5}" for i in range(100)]
    groups = [f"G{i % 23}" for i in range(100)]
    held = group_holdout(labels, groups, 0.25, seed=3)
    assert held == group_holdout(labels, groups, 0.25, seed=3)
    assert held != group_holdout(labels, groups, 0.25, seed=4)
    assert not {groups[p] for p in held} & {groups[p] for p in range(100) if p not in held}
    assert abs(len(held) - 25) <= 5
    assert {labels[p] for p in range(100) if p not in held} == set(labels)


def test_jsonl_group_by_groups_rows_and_the_run_warns_about_shared_groups(make_cfg, tmp_path, small_data, caplog):
    dataset = JsonlDataset(small_data["train.jsonl"], small_data["eval.jsonl"], group_by="merchant_name")
    splits = dataset.load()
    assert splits.group_key == "merchant_name"
    held = holdout(splits.train, splits.group_key, 0.2, seed=0)
    merchants = [example.metadata["merchant_name"] for example in splits.train]
    assert held and not {merchants[p] for p in held} & {m for p, m in enumerate(merchants) if p not in held}
    with caplog.at_level(logging.WARNING):
        app.run(make_cfg("dataset.group_by=merchant_name", "trackers=none"), run_dir(tmp_path, "a"))
    assert "share a merchant_name" not in caplog.text  # the bundled rows split by merchant
    train_row = Path(small_data["train.jsonl"]).read_text().splitlines()[0]
    with Path(small_data["eval.jsonl"]).open("a") as handle:
        handle.write(train_row + "\n")
    with caplog.at_level(logging.WARNING):
        app.run(make_cfg("dataset.group_by=merchant_name", "trackers=none"), run_dir(tmp_path, "b"))
    assert "1 of 31 eval queries share a merchant_name with the train split" in caplog.text
    Path(small_data["eval.jsonl"]).write_text('{"input": "q", "expected": ["Lodging"]}\n')
    with pytest.raises(DataError, match=r"eval.jsonl:1: merchant_name: missing"):
        dataset.load()


def poison_eval_labels(small_data: dict[str, str]) -> None:
    """Give every eval row another category: anything chosen on eval would now choose differently."""
    path = Path(small_data["eval.jsonl"])
    names = [c["category"] for c in json.loads(Path(small_data["categories.json"]).read_text())]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row["expense_category"] = names[(names.index(row["expense_category"]) + 7) % len(names)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def choice(selection: Selection) -> dict:
    """A selection record without what describes the computation rather than the choice."""
    return selection.model_dump(exclude_unset=True, exclude={"reused", "select_seconds"})


@pytest.mark.parametrize(
    ("reranker", "overrides"),
    [
        ("bi_encoder_finetuned", ["reranker.select_epochs=true", "reranker.epochs=3"]),
        ("fused", ["reranker.category.epochs=1"]),
    ],
)
def test_choices_do_not_read_eval_labels(make_cfg, tmp_path, small_data, tiny_model_dir, reranker, overrides):
    extra = [f"reranker.category.base_model={tiny_model_dir}"] if reranker == "fused" else []
    cfg = make_cfg("trackers=none", *overrides, *extra, reranker=reranker)
    clean = app.run(cfg, run_dir(tmp_path, "clean"))
    poison_eval_labels(small_data)
    fresh = f"paths.cache_dir={tmp_path / 'fresh-cache'}"  # nothing reused: the choice is made again
    poisoned = app.run(make_cfg("trackers=none", fresh, *overrides, *extra, reranker=reranker), run_dir(tmp_path, "p"))
    assert clean.fit is not None and poisoned.fit is not None
    chosen = clean.fit.selection
    assert chosen.curve and choice(chosen) == choice(poisoned.fit.selection)
    assert not poisoned.fit.reused and clean.fit.finetune_id == poisoned.fit.finetune_id
    # the eval metrics did change: the poison reached the evaluation, just not the choice
    assert clean.summary.reranker != poisoned.summary.reranker
    recorded = json.loads((clean.output_dir / "metrics.json").read_text())["fit"]["selection"]
    assert recorded["curve"] == [list(point) for point in chosen.curve]


def test_selected_epochs_are_the_best_on_validation_and_refit_on_all_of_train(make_cfg, tmp_path):
    outcome = app.run(
        make_cfg("trackers=none", "reranker.select_epochs=true", "reranker.epochs=3", reranker="bi_encoder_finetuned"),
        run_dir(tmp_path),
    )
    selection = outcome.fit.selection
    curve = selection.curve
    assert [point[0] for point in curve] == [1, 2, 3]
    assert max(tuple(point[1:]) for point in curve) == tuple(next(p for p in curve if p[0] == selection.epochs)[1:])
    assert outcome.fit.extra["epochs"] == selection.epochs
    assert selection.validation_queries > 0 and selection.fit_items < len(outcome.finetune_set)


def test_replicates_report_every_seed_with_mean_and_sd(make_cfg, tmp_path):
    outcome = app.run(make_cfg("trackers=none", "replicates=3", reranker="bi_encoder_finetuned"), run_dir(tmp_path))
    block = json.loads((outcome.output_dir / "metrics.json").read_text())["replicates"]
    assert block["n"] == 3 and block["seeds"] == [42, 43, 44]
    for name in ("recall@1", "recall@3", "recall@5", "mrr@1", "mrr@3", "mrr@5"):
        values = block[name]["values"]
        assert len(values) == 3
        assert block[name]["mean"] == pytest.approx(np.mean(values))
        assert block[name]["sd"] == pytest.approx(np.std(values, ddof=1))
    assert values[0] == pytest.approx(outcome.summary.reranker["mrr@5"].mean)
    assert len(set(block["mrr@5"]["values"])) > 1  # the seeds really trained different models
    assert outcome.metric("mrr@1") == pytest.approx(block["mrr@1"]["mean"])


def test_replicates_that_choose_on_validation_report_every_seeds_validation(make_cfg, tmp_path):
    """Each seed chooses its own epochs; metrics.json keeps every seed's validation score, and the run's validation
    score (what a sweep ranks by) becomes their mean."""
    cfg = make_cfg("trackers=none", "replicates=2", "reranker.select_epochs=true", reranker="bi_encoder_finetuned")
    outcome = app.run(cfg, run_dir(tmp_path))
    record = run_folder.read(outcome.output_dir)
    assert record.validation is not None and record.replicates is not None and record.replicates.validation
    over_seeds = record.replicates.validation["mrr@1"]
    assert len(over_seeds.values) == 2 and over_seeds.values[0] == record.validation.reranker["mrr@1"].mean
    assert record.validation_score("mrr@1") == pytest.approx(np.mean(over_seeds.values))
    assert set(record.replicates.validation) == {"mrr@1", "mrr@5"}


def test_bad_run_knobs_are_user_errors(make_cfg, tmp_path):
    for override in ("validation_fraction=1.0", "replicates=0"):
        with pytest.raises(UserError, match=override.split("=")[0]):
            app.run(make_cfg(override), run_dir(tmp_path))


# Label memory and fusion on a toy set.

DOCS = {"Meals": "Meals: food", "Travel": "Travel: trips", "Software": "Software: programs"}
TRAIN = [
    ("Name : Pasta Bar\nAmount: 30", "Meals"),
    ("Name : Pasta Bar\nAmount: 45", "Meals"),
    ("Name : Sky Air\nAmount: 300", "Travel"),
    ("Name : Sky Air\nAmount: 410", "Travel"),
    ("Name : CodeHub\nAmount: 20", "Software"),
    ("Name : CodeHub\nAmount: 25", "Software"),
]


def examples(rows: Sequence[tuple[str, str]]) -> list[Example]:
    return [Example(input=text, expected=[label]) for text, label in rows]


def test_label_memory_ranks_by_the_nearest_labelled_queries(tiny_model_dir, tmp_path):
    memory = LabelMemory(str(tiny_model_dir), neighbours=2, device="cpu")
    assert memory.fit(FinetuneSet([]), tmp_path, 0, FitContext(examples(TRAIN), DOCS)) is None
    documents = list(DOCS.values())
    for text, label in TRAIN:
        scores = memory.score(text, documents)
        assert documents[int(np.argmax(scores))] == DOCS[label], text
        assert sum(scores) == pytest.approx(1.0) and min(scores) >= 0.0
    with pytest.raises(UserError, match="no stored model 'ft-0123'"):
        LabelMemory("ft-0123").fit(FinetuneSet([]), tmp_path, 0, FitContext(examples(TRAIN), DOCS))


class AlwaysSoftware(Reranker):
    """A category scorer that is confidently wrong for meals and travel."""

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        return [1.0 if document.startswith("Software") else 0.0 for document in documents]


def test_fusion_chooses_its_weight_on_validation_and_ranks_the_toy_set(tiny_model_dir, tmp_path):
    train = examples(TRAIN)
    validation = Holdout(fit_examples=train[::2], fit_set=FinetuneSet([]), examples=train[1::2])
    fused = FusedReranker(AlwaysSoftware(), LabelMemory(str(tiny_model_dir), neighbours=1, device="cpu"))
    fused.fit(FinetuneSet([]), tmp_path, 0, FitContext(train, DOCS, validation))
    # the memory alone is right on validation and the category scorer is wrong for 2 of 3: w must stay low
    assert fused._chosen < 0.5
    documents = list(DOCS.values())
    for text, label in TRAIN:
        assert documents[int(np.argmax(fused.score(text, documents)))] == DOCS[label]
    fixed = FusedReranker(AlwaysSoftware(), LabelMemory(str(tiny_model_dir), device="cpu"), weight=1.0)
    fixed.fit(FinetuneSet([]), tmp_path, 0, FitContext(train, DOCS, validation))
    assert documents[int(np.argmax(fixed.score(TRAIN[0][0], documents)))] == DOCS["Software"]
