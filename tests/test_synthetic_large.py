"""``dataset=synthetic_large``: the promised size, a merchant split, determinism, and labels that follow the rules."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_synthetic import _matching_scenarios

from experiments.datasets.synthetic import SyntheticLargeTransactions, sub_account
from experiments.datasets.synthetic_catalog import CATEGORIES, COST_CENTRES
from experiments.datasets.transactions import Transaction

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset" / "synthetic_large.yaml"
CENTRE_OF = {department: centre for centre, members in COST_CENTRES for department in members}


@pytest.fixture(scope="module")
def large() -> SyntheticLargeTransactions:
    return SyntheticLargeTransactions()


def test_promised_size_in_seconds() -> None:
    started = time.perf_counter()
    splits = SyntheticLargeTransactions().load()
    seconds = time.perf_counter() - started
    assert len(splits.train) + len(splits.eval) >= 3000 and len(splits.eval) >= 1000
    assert len(splits.categories) >= 150
    assert {label for example in splits.train for label in example.expected} == {c.name for c in splits.categories}
    assert splits.name == "synthetic_large" and splits.group_key == "merchant"
    assert seconds < 30, seconds  # about 1 s on an idle laptop core


def test_merchant_split(large: SyntheticLargeTransactions) -> None:
    train, eval_ = large.transactions()
    assert not {t.merchant_name for t in train} & {t.merchant_name for t in eval_}
    assert 0.2 < len(eval_) / (len(train) + len(eval_)) < 0.4


def test_deterministic_bytes_and_seeded(tmp_path: Path) -> None:
    def written(name: str, **kwargs: object) -> list[bytes]:
        paths = SyntheticLargeTransactions(**kwargs).write_jsonl(tmp_path / name)  # type: ignore[arg-type]
        return [paths[key].read_bytes() for key in ("train", "eval", "categories")]

    assert written("a") == written("b")
    assert written("c", seed=1)[0] != written("a")[0]


def test_sub_accounts_split_every_category_by_cost_centre(large: SyntheticLargeTransactions) -> None:
    names = [category.name for category in large.categories()]
    assert len(names) == len(set(names))
    parents = {name.rsplit(" - ", 1)[0] for name in names}
    assert parents == {category.name for category in CATEGORIES}
    siblings = sum(name.startswith("Team Meals - ") for name in names)
    assert siblings == len(COST_CENTRES)  # every cost centre books team meals: near-synonyms within one parent


def test_noiseless_labels_follow_the_rules_and_the_buyers_cost_centre() -> None:
    train, eval_ = SyntheticLargeTransactions(label_noise=0.0).transactions()
    rows: list[Transaction] = train + eval_
    for row in rows:
        expected = {sub_account(s.category, CENTRE_OF[row.department]) for s in _matching_scenarios(row)}
        assert expected == {row.expense_category}, row


def test_config_matches_the_class_defaults() -> None:
    dataset = instantiate(OmegaConf.load(CONF))
    assert isinstance(dataset, SyntheticLargeTransactions)
    assert dataset.config_dict() == SyntheticLargeTransactions().config_dict()
    assert dataset.config_dict()["cost_centres"] is True
