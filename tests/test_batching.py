"""``reranker.batches=auto`` and the small-set guard (``experiments.rerankers.batching``)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from experiments.errors import ConfigError
from experiments.records import FinetuneItem, FinetuneSet
from experiments.rerankers.batching import BY_LENGTH_PADDING, MIN_GUARDED_BATCH, plan_batches, random_batch_padding
from experiments.rerankers.bi_encoder_finetuned import FinetunedBiEncoder


def simulated_padding(lengths: list[int], batch_size: int, draws: int = 4000) -> float:
    rng = random.Random(0)
    padded = sum(max(rng.choices(lengths, k=batch_size)) for _ in range(draws)) / draws
    return padded / (sum(lengths) / len(lengths))


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_expected_padding_matches_random_batches(batch_size: int) -> None:
    lengths = [8] * 90 + [12] * 8 + [60] * 2  # mostly short, a few long: what Banking77 looks like
    assert random_batch_padding(lengths, batch_size) == pytest.approx(simulated_padding(lengths, batch_size), rel=0.03)
    assert random_batch_padding([10] * 50, batch_size) == pytest.approx(1.0)


def test_auto_groups_by_length_only_where_random_batches_waste_tokens() -> None:
    spread = [6] * 300 + [40] * 20  # one long query in most batches of 64: padding about 5x
    even = [20 + i % 5 for i in range(320)]
    assert plan_batches(spread, "auto", 64, 8).batches == "by_length"
    assert plan_batches(spread, "auto", 64, 8).padding >= BY_LENGTH_PADDING
    assert plan_batches(even, "auto", 64, 8).batches == "random"
    assert plan_batches(even, "by_length", 64, 8).batches == "by_length"  # an explicit choice is kept
    assert plan_batches(spread, "random", 64, 8).batches == "random"


def test_a_small_set_gets_smaller_batches_down_to_the_floor() -> None:
    assert plan_batches([10] * 1540, "random", 64, 8).batch_size == 64
    assert plan_batches([10] * 120, "random", 64, 8).batch_size == 15  # 8 steps per epoch
    assert plan_batches([10] * 20, "random", 64, 8).batch_size == MIN_GUARDED_BATCH
    assert plan_batches([10] * 20, "random", 4, 8).batch_size == 4  # never above batch_size
    assert plan_batches([10] * 120, "random", 64, 0).batch_size == 64  # 0: no guard


def items(n: int, long_every: int | None) -> FinetuneSet:
    def query(i: int) -> str:
        words = 30 if long_every and i % long_every == 0 else 2
        return " ".join([f"shop{i}"] + ["paid"] * words + ["red" if i % 2 else "blue"])

    return FinetuneSet([FinetuneItem(query=query(i), relevant_passages=["Red" if i % 2 else "Blue"]) for i in range(n)])


@pytest.mark.parametrize(("long_every", "chosen"), [(None, "random"), (10, "by_length")])
def test_a_fit_trains_and_records_what_auto_chose(
    tiny_model_dir: Path, tmp_path: Path, long_every: int | None, chosen: str
) -> None:
    finetune_set = items(64, long_every)
    auto = FinetunedBiEncoder(str(tiny_model_dir), epochs=1, device="cpu")
    plan = auto.plan(finetune_set.items)
    assert plan.batches == chosen and plan.batch_size == MIN_GUARDED_BATCH  # 64 rows // 8 steps
    fit = auto.fit(finetune_set, tmp_path, seed=0)
    assert fit.extra["batches"] == chosen and fit.extra["batch_size"] == MIN_GUARDED_BATCH
    assert fit.extra["steps"] == 8
    assert auto.batches == "auto" and auto.batch_size == 64  # the configured knobs are left as they were
    # The same training spelled out explicitly is the same model under the same fine-tune id.
    explicit = FinetunedBiEncoder(
        str(tiny_model_dir), epochs=1, device="cpu", batches=chosen, batch_size=MIN_GUARDED_BATCH
    )
    again = explicit.fit(finetune_set, tmp_path, seed=0)
    assert again.finetune_id == fit.finetune_id and again.reused


def test_a_negative_step_floor_is_refused() -> None:
    with pytest.raises(ConfigError, match="min_steps_per_epoch=-1"):
        FinetunedBiEncoder(device="cpu", min_steps_per_epoch=-1)


def test_token_lengths_match_the_model_tokenizer_without_loading_torch(tiny_model_dir: Path) -> None:
    """A rerun that reuses its stored model must not import torch just to plan batches (tests/test_pipeline.py)."""
    import subprocess
    import sys

    texts = ["a short one", "a much longer query about a card payment " * 20, ""]
    code = (
        "import sys\n"
        "from experiments.rerankers.bi_encoder_finetuned import token_lengths\n"
        f"print(token_lengths({str(tiny_model_dir)!r}, {texts!r}, 16))\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lengths, torch_loaded = done.stdout.splitlines()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir), local_files_only=True)
    expected = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=16)["input_ids"]]
    assert lengths == str(expected) and torch_loaded == "False"


def test_a_damaged_tokenizer_file_is_one_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from experiments.rerankers.bi_encoder_finetuned import token_lengths

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"tokenizer\.json: not a tokenizer that can be read \(key must be a string"):
        token_lengths(str(model), ["a query"], 16)
