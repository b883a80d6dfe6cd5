"""The bundled data set: deterministic synthetic corporate card transactions of a tech company.

The generator is offline and seeded: the same arguments give the same transactions, the same split and
the same bytes from :meth:`SyntheticTransactions.write_jsonl`. The labels follow the company rules in
``synthetic_catalog.SCENARIOS`` (who buys, on which card, on what kind of trip and for how much), plus a
little label noise, as in a real ledger.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Literal, get_args

from experiments.datasets import synthetic_catalog as catalog
from experiments.datasets.splits import group_holdout
from experiments.datasets.synthetic_catalog import CATEGORIES, Scenario
from experiments.datasets.transactions import Transaction
from experiments.errors import ConfigError
from experiments.records import Category, DatasetSplits, Example

TRANSACTION_KEYS = (
    "merchant_name",
    "merchant_category",
    "department",
    "location",
    "amount",
    "spend_program_name",
    "trip_name",
    "expense_category",
)

SplitName = Literal["merchant", "random"]


class SyntheticTransactions:
    """Synthetic card transactions labelled with one of ~30 expense categories.

    Data contract:
        - ``transactions()`` returns ``(train, eval)`` lists of :class:`Transaction`; every category of
          :data:`CATEGORIES` appears in train. ``split="merchant"`` (the default): no merchant appears in both
          lists, eval holds about ``eval_fraction`` of the rows and every category the merchants allow.
          ``split="random"``: every category appears in both, each with an eval share of ``eval_fraction``
          (rounded), and merchants recur across the split.
        - ``load()`` returns :class:`DatasetSplits` named ``"synthetic"`` whose examples are
          ``Transaction.to_example()`` (query text in the 7-line layout of docs/data-formats.md, one expected
          label) with ``metadata = {"merchant", "department", "split"}`` and ``group_key="merchant"``, and whose
          categories carry a description.
        - ``trip_name`` is set only for spend on a business trip or an offsite, and ``location`` is then the
          trip's city; spend-program names never contain a category name.

    Args:
        n_transactions: How many transactions to generate (split evenly across categories).
        eval_fraction: Share of each category held out for evaluation, in (0, 1).
        seed: Seed of the generator; independent of the run seed, so sweeps share one data set.
        label_noise: Probability that a transaction is booked to a plausible wrong category, in [0, 0.2].
        split: ``merchant`` (eval merchants are never seen in train) or ``random`` (stratified by category).
    """

    def __init__(
        self,
        n_transactions: int = 720,
        eval_fraction: float = 0.3,
        seed: int = 0,
        label_noise: float = 0.02,
        split: SplitName = "merchant",
    ) -> None:
        if split not in get_args(SplitName):
            raise ConfigError(f"SyntheticTransactions: split must be one of {list(get_args(SplitName))}, got {split!r}")
        minimum = 4 * len(CATEGORIES)
        if isinstance(n_transactions, bool) or not isinstance(n_transactions, int) or n_transactions < minimum:
            raise ConfigError(
                f"SyntheticTransactions: n_transactions must be an integer >= {minimum} "
                f"(4 per category), got {n_transactions!r}"
            )
        if isinstance(eval_fraction, bool) or not isinstance(eval_fraction, int | float):
            raise ConfigError(f"SyntheticTransactions: eval_fraction must be a number, got {eval_fraction!r}")
        if not 0.0 < eval_fraction < 1.0:
            raise ConfigError(f"SyntheticTransactions: eval_fraction must be in (0, 1), got {eval_fraction!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"SyntheticTransactions: seed must be an integer, got {seed!r}")
        if isinstance(label_noise, bool) or not isinstance(label_noise, int | float):
            raise ConfigError(f"SyntheticTransactions: label_noise must be a number, got {label_noise!r}")
        if not 0.0 <= label_noise <= 0.2:
            raise ConfigError(f"SyntheticTransactions: label_noise must be in [0, 0.2], got {label_noise!r}")
        self.n_transactions = n_transactions
        self.eval_fraction = float(eval_fraction)
        self.seed = seed
        self.label_noise = float(label_noise)
        self.split = split
        self._cache: tuple[list[Transaction], list[Transaction]] | None = None

    def config_dict(self) -> dict[str, object]:
        """The generator's parameters (what identifies this data set in tracked params)."""
        return {
            "name": "synthetic",
            "n_transactions": self.n_transactions,
            "eval_fraction": self.eval_fraction,
            "seed": self.seed,
            "label_noise": self.label_noise,
            "split": self.split,
            "catalog_version": catalog.CATALOG_VERSION,
        }

    def categories(self) -> list[Category]:
        """The candidate categories, each with a one-line description."""
        return list(CATEGORIES)

    def transactions(self) -> tuple[list[Transaction], list[Transaction]]:
        """Generate (once) and return the ``(train, eval)`` transactions."""
        if self._cache is None:
            self._cache = _generate(self.n_transactions, self.eval_fraction, self.seed, self.label_noise, self.split)
        return self._cache

    def load(self) -> DatasetSplits:
        """The splits as examples, with the categories and the generator params as ``source``."""
        train, eval_ = self.transactions()
        return DatasetSplits(
            name="synthetic",
            train=[_example(t, "train") for t in train],
            eval=[_example(t, "eval") for t in eval_],
            categories=self.categories(),
            source=self.config_dict(),
            group_key="merchant",
        )

    def write_jsonl(self, directory: str | Path) -> dict[str, Path]:
        """Write the splits as transaction rows (``train.jsonl``, ``eval.jsonl``) and ``categories.json``.

        The rows have exactly the transaction keys of docs/data-formats.md, in that order; the categories file is
        a list of ``{"category", "description"}`` objects. The bytes depend only on the constructor arguments.

        Returns:
            The paths written, keyed ``"train"``, ``"eval"`` and ``"categories"``.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        train, eval_ = self.transactions()
        paths = {
            "train": out / "train.jsonl",
            "eval": out / "eval.jsonl",
            "categories": out / "categories.json",
        }
        for split, rows in (("train", train), ("eval", eval_)):
            paths[split].write_bytes("".join(_jsonl_row(t) + "\n" for t in rows).encode("utf-8"))
        categories = [{"category": c.name, "description": c.description} for c in CATEGORIES]
        paths["categories"].write_bytes((json.dumps(categories, indent=2, ensure_ascii=False) + "\n").encode())
        return paths


def _example(transaction: Transaction, split: str) -> Example:
    example = transaction.to_example()
    metadata = {"merchant": transaction.merchant_name, "department": transaction.department, "split": split}
    return example.model_copy(update={"metadata": metadata})


def _jsonl_row(transaction: Transaction) -> str:
    row = transaction.model_dump()
    return json.dumps({key: row[key] for key in TRANSACTION_KEYS}, ensure_ascii=False)


def _generate(
    n: int, eval_fraction: float, seed: int, label_noise: float, split: SplitName
) -> tuple[list[Transaction], list[Transaction]]:
    rng = random.Random(seed)
    by_category: dict[str, list[Scenario]] = defaultdict(list)
    for scenario in catalog.SCENARIOS:
        by_category[scenario.category].append(scenario)

    # An even share per category, so every category has enough rows for both splits.
    drawn: list[tuple[Scenario, Transaction]] = []
    for index, category in enumerate(CATEGORIES):
        options = by_category[category.name]
        weights = [s.weight for s in options]
        for _ in range(n // len(CATEGORIES) + (1 if index < n % len(CATEGORIES) else 0)):
            scenario = rng.choices(options, weights=weights)[0]
            drawn.append((scenario, _draw(rng, scenario)))
    rng.shuffle(drawn)
    rows = _add_noise(rng, drawn, label_noise)
    if split == "merchant":
        labels = [row.expense_category for row in rows]
        return _divide(rows, group_holdout(labels, [row.merchant_name for row in rows], eval_fraction, seed))

    # Stratified split on the final labels: each category keeps at least one row on each side.
    positions: dict[str, list[int]] = defaultdict(list)
    for position, row in enumerate(rows):
        positions[row.expense_category].append(position)
    held_out: set[int] = set()
    for category in CATEGORIES:
        members = positions[category.name]
        n_eval = min(max(1, round(len(members) * eval_fraction)), len(members) - 1)
        held_out.update(rng.sample(members, n_eval))
    return _divide(rows, held_out)


def _divide(rows: list[Transaction], held_out: set[int]) -> tuple[list[Transaction], list[Transaction]]:
    train = [row for position, row in enumerate(rows) if position not in held_out]
    eval_ = [row for position, row in enumerate(rows) if position in held_out]
    return train, eval_


def _draw(rng: random.Random, scenario: Scenario) -> Transaction:
    """One transaction that the scenario's rule books to its category."""
    department, program = rng.choice(scenario.pairs())
    trip_kind = rng.choice(scenario.trips)
    merchants = [
        m for m in catalog.MERCHANTS[scenario.kind] if scenario.merchants is None or m.name in scenario.merchants
    ]
    merchant = rng.choice(merchants)
    if trip_kind == catalog.NONE:
        trip_name, location = None, merchant.hq or rng.choice(catalog.OFFICES)
    elif trip_kind == catalog.TRIP:
        location = rng.choice(catalog.TRIP_CITIES)
        purpose = rng.choice(catalog.TRIP_PURPOSES[catalog.DEPARTMENT_TRIP_GROUP[department]])
        trip_name = f"{purpose} - {location.split(',')[0]}"
    else:
        location = rng.choice(catalog.OFFSITE_CITIES)
        trip_name = f"{rng.choice(catalog.OFFSITE_TEAMS)} Offsite - {location.split(',')[0]}"
    # Squaring a uniform draw skews amounts towards the low end, as card spend is.
    amount = round(scenario.low + (scenario.high - scenario.low) * rng.random() ** 2, 2)
    return Transaction(
        merchant_name=merchant.name,
        merchant_category=list(merchant.mcc),
        department=department,
        location=location,
        amount=amount,
        spend_program_name=program,
        trip_name=trip_name,
        expense_category=scenario.category,
    )


def _add_noise(rng: random.Random, drawn: list[tuple[Scenario, Transaction]], label_noise: float) -> list[Transaction]:
    """Re-book a ``label_noise`` share of rows to another category their merchant kind can reach."""
    reachable: dict[str, list[str]] = defaultdict(list)
    for scenario in catalog.SCENARIOS:
        if scenario.category not in reachable[scenario.kind]:
            reachable[scenario.kind].append(scenario.category)
    counts: dict[str, int] = defaultdict(int)
    for _, row in drawn:
        counts[row.expense_category] += 1
    names = [c.name for c in CATEGORIES]
    rows = []
    for scenario, row in drawn:
        # The draw happens for every row, so the noise pattern does not shift the rest of the stream.
        flip, pick = rng.random() < label_noise, rng.random()
        if flip and counts[row.expense_category] > 3:
            others = [c for c in reachable[scenario.kind] if c != row.expense_category]
            pool = others or [c for c in names if c != row.expense_category]
            label = pool[int(pick * len(pool))]
            counts[row.expense_category] -= 1
            counts[label] += 1
            row = row.model_copy(update={"expense_category": label})
        rows.append(row)
    return rows
