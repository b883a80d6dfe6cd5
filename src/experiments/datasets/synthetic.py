"""The bundled data set: deterministic synthetic corporate card transactions of a tech company.

The generator is offline and seeded: the same arguments give the same transactions, the same split and
the same bytes from :meth:`SyntheticTransactions.write_jsonl`. The labels follow the company rules in
``synthetic_catalog.SCENARIOS`` (who buys, on which card, on what kind of trip and for how much), plus a
little label noise, as in a real ledger. With ``cost_centres=True`` (``dataset=synthetic_large``) every category
splits into one sub-account per cost centre that books it: about 200 fine-grained labels whose siblings differ
only by the buyer's department.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from experiments.datasets import synthetic_catalog as catalog
from experiments.datasets.splits import group_holdout
from experiments.datasets.synthetic_catalog import CATEGORIES, Scenario
from experiments.datasets.transactions import Transaction, check_query_fields
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


@dataclass(frozen=True)
class Account:
    """One label of the chart: a category, the rules that book to it, and the departments it takes spend from.

    ``departments`` is ``None`` for a whole category (any department its rules allow), or a cost centre's
    departments for a sub-account.
    """

    category: Category
    rules: tuple[Scenario, ...]
    departments: tuple[str, ...] | None = None

    def pairs(self, rule: Scenario) -> list[tuple[str, str]]:
        """The (department, program) pairs of ``rule`` that book to this account, in declaration order."""
        return [pair for pair in rule.pairs() if self.departments is None or pair[0] in self.departments]


def chart(cost_centres: bool) -> tuple[Account, ...]:
    """The accounts, in ``CATEGORIES`` order (with cost centres: each category's sub-accounts in centre order)."""
    rules: dict[str, list[Scenario]] = defaultdict(list)
    for scenario in catalog.SCENARIOS:
        rules[scenario.category].append(scenario)
    if not cost_centres:
        return tuple(Account(category, tuple(rules[category.name])) for category in CATEGORIES)
    accounts = []
    for category in CATEGORIES:
        for centre, departments in catalog.COST_CENTRES:
            account = Account(
                Category(
                    name=sub_account(category.name, centre),
                    description=f"{category.description} Cost centre: {centre}.",
                ),
                tuple(rules[category.name]),
                departments,
            )
            reachable = tuple(rule for rule in account.rules if account.pairs(rule))
            if reachable:
                accounts.append(Account(account.category, reachable, departments))
    return tuple(accounts)


def sub_account(category: str, centre: str) -> str:
    """The label of a cost centre's sub-account of a category."""
    return f"{category} - {centre}"


def account_labels(rule: Scenario, cost_centres: bool) -> list[str]:
    """The labels that spend under ``rule`` can be booked to."""
    if not cost_centres:
        return [rule.category]
    departments = {department for department, _ in rule.pairs()}
    return [
        sub_account(rule.category, centre)
        for centre, members in catalog.COST_CENTRES
        if departments.intersection(members)
    ]


class SyntheticTransactions:
    """Synthetic card transactions labelled with one of ~30 expense categories (or ~200 cost-centre sub-accounts).

    Data contract:
        - ``transactions()`` returns ``(train, eval)`` lists of :class:`Transaction`; every category of
          ``categories()`` appears in train. ``split="merchant"`` (the default): no merchant appears in both
          lists, eval holds about ``eval_fraction`` of the rows and every category the merchants allow.
          ``split="random"``: every category appears in both, each with an eval share of ``eval_fraction``
          (rounded), and merchants recur across the split.
        - ``load()`` returns :class:`DatasetSplits` named ``name`` (``"synthetic"``) whose examples are
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
        cost_centres: label each transaction with its category's sub-account for the buyer's cost centre
            (``synthetic_catalog.COST_CENTRES``; 206 labels) instead of the category (31 labels).
        query_fields: the lines of the query text to keep (``transactions.QUERY_FIELDS``); None: all seven.
    """

    name = "synthetic"

    def __init__(
        self,
        n_transactions: int = 720,
        eval_fraction: float = 0.3,
        seed: int = 0,
        label_noise: float = 0.02,
        split: SplitName = "merchant",
        cost_centres: bool = False,
        query_fields: list[str] | None = None,
    ) -> None:
        if split not in get_args(SplitName):
            raise ConfigError(f"SyntheticTransactions: split must be one of {list(get_args(SplitName))}, got {split!r}")
        if not isinstance(cost_centres, bool):
            raise ConfigError(f"SyntheticTransactions: cost_centres must be true or false, got {cost_centres!r}")
        self.accounts = chart(cost_centres)
        minimum = 4 * len(self.accounts)
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
        self.cost_centres = cost_centres
        self.query_fields = None if query_fields is None else list(query_fields)
        self._fields = check_query_fields(type(self).__name__, self.query_fields)
        self._cache: tuple[list[Transaction], list[Transaction]] | None = None

    def config_dict(self) -> dict[str, object]:
        """The generator's parameters (what identifies this data set in tracked params)."""
        return {
            "name": self.name,
            "n_transactions": self.n_transactions,
            "eval_fraction": self.eval_fraction,
            "seed": self.seed,
            "label_noise": self.label_noise,
            "split": self.split,
            "cost_centres": self.cost_centres,
            "query_fields": self.query_fields,
            "catalog_version": catalog.CATALOG_VERSION,
        }

    def categories(self) -> list[Category]:
        """The candidate categories, each with a one-line description."""
        return [account.category for account in self.accounts]

    def transactions(self) -> tuple[list[Transaction], list[Transaction]]:
        """Generate (once) and return the ``(train, eval)`` transactions."""
        if self._cache is None:
            self._cache = _generate(
                self.accounts, self.n_transactions, self.eval_fraction, self.seed, self.label_noise, self.split
            )
        return self._cache

    def load(self) -> DatasetSplits:
        """The splits as examples, with the categories and the generator params as ``source``."""
        train, eval_ = self.transactions()
        return DatasetSplits(
            name=self.name,
            train=[_example(t, "train", self._fields) for t in train],
            eval=[_example(t, "eval", self._fields) for t in eval_],
            categories=self.categories(),
            source=self.config_dict(),
            group_key="merchant",
            query_fields=self.query_fields,
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
        categories = [{"category": c.name, "description": c.description} for c in self.categories()]
        paths["categories"].write_bytes((json.dumps(categories, indent=2, ensure_ascii=False) + "\n").encode())
        return paths


class SyntheticLargeTransactions(SyntheticTransactions):
    """``dataset=synthetic_large``: the generator with cost-centre sub-accounts, sized to tell miners apart.

    4,000 transactions over 206 sub-accounts (``cost_centres=True``), split by merchant: about 2,800 train and
    1,200 eval queries, so a 95% interval on mrr@1 is about ±0.03, and a batch of 32 rows can no longer hold
    every label as another row's positive. The arguments and data contract are ``SyntheticTransactions``'s.
    """

    name = "synthetic_large"

    def __init__(
        self,
        n_transactions: int = 4000,
        eval_fraction: float = 0.3,
        seed: int = 0,
        label_noise: float = 0.02,
        split: SplitName = "merchant",
        cost_centres: bool = True,
        query_fields: list[str] | None = None,
    ) -> None:
        super().__init__(n_transactions, eval_fraction, seed, label_noise, split, cost_centres, query_fields)


def _example(transaction: Transaction, split: str, fields: tuple[str, ...]) -> Example:
    example = transaction.to_example(fields)
    metadata = {"merchant": transaction.merchant_name, "department": transaction.department, "split": split}
    return example.model_copy(update={"metadata": metadata})


def _jsonl_row(transaction: Transaction) -> str:
    row = transaction.model_dump()
    return json.dumps({key: row[key] for key in TRANSACTION_KEYS}, ensure_ascii=False)


def _generate(
    accounts: tuple[Account, ...], n: int, eval_fraction: float, seed: int, label_noise: float, split: SplitName
) -> tuple[list[Transaction], list[Transaction]]:
    rng = random.Random(seed)
    # An even share per account, so every account has enough rows for both splits.
    drawn: list[tuple[Scenario, Transaction]] = []
    for index, account in enumerate(accounts):
        weights = [s.weight for s in account.rules]
        for _ in range(n // len(accounts) + (1 if index < n % len(accounts) else 0)):
            scenario = rng.choices(account.rules, weights=weights)[0]
            drawn.append((scenario, _draw(rng, scenario, account)))
    rng.shuffle(drawn)
    cost_centres = any(account.departments is not None for account in accounts)
    labels_of = {scenario: account_labels(scenario, cost_centres) for scenario in catalog.SCENARIOS}
    rows = _add_noise(rng, drawn, label_noise, labels_of, [account.category.name for account in accounts])
    if split == "merchant":
        labels = [row.expense_category for row in rows]
        return _divide(rows, group_holdout(labels, [row.merchant_name for row in rows], eval_fraction, seed))

    # Stratified split on the final labels: each category keeps at least one row on each side.
    positions: dict[str, list[int]] = defaultdict(list)
    for position, row in enumerate(rows):
        positions[row.expense_category].append(position)
    held_out: set[int] = set()
    for account in accounts:
        members = positions[account.category.name]
        n_eval = min(max(1, round(len(members) * eval_fraction)), len(members) - 1)
        held_out.update(rng.sample(members, n_eval))
    return _divide(rows, held_out)


def _divide(rows: list[Transaction], held_out: set[int]) -> tuple[list[Transaction], list[Transaction]]:
    train = [row for position, row in enumerate(rows) if position not in held_out]
    eval_ = [row for position, row in enumerate(rows) if position in held_out]
    return train, eval_


def _draw(rng: random.Random, scenario: Scenario, account: Account) -> Transaction:
    """One transaction that the scenario's rule books to ``account``."""
    department, program = rng.choice(account.pairs(scenario))
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
        expense_category=account.category.name,
    )


def _add_noise(
    rng: random.Random,
    drawn: list[tuple[Scenario, Transaction]],
    label_noise: float,
    labels_of: dict[Scenario, list[str]],
    names: list[str],
) -> list[Transaction]:
    """Re-book a ``label_noise`` share of rows to another label (of ``names``) their merchant kind can reach."""
    reachable: dict[str, list[str]] = defaultdict(list)
    for scenario in catalog.SCENARIOS:
        for label in labels_of[scenario]:
            if label not in reachable[scenario.kind]:
                reachable[scenario.kind].append(label)
    counts: dict[str, int] = defaultdict(int)
    for _, row in drawn:
        counts[row.expense_category] += 1
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
