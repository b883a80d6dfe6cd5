"""A bundled, human-labelled intent benchmark: real queries ranked against readable intent names.

What a benchmark such as Banking77 or CLINC150 shares lives here; a subclass names its data folder, its release
and how many intents the release has, and its own option defaults.

Data contract (every bundled intent benchmark):
    - the data folder (``experiments/datasets/<folder>/``) holds ``train.csv`` and ``test.csv`` (columns
      ``text,category``), ``categories.json`` (the release's intent ids, in order), the licence and an attribution.
    - eval is the whole test split (``evaluate_on="test"``, what results report) or, with
      ``evaluate_on="validation"``, up to ``validation_size`` train queries the few-shot draw left out.
    - train is a seeded, stratified few-shot draw from the train pool: ``shots`` queries of every intent (all of an
      intent's queries when it has fewer), or all of the pool with ``shots=None``. The draw for an intent depends
      only on ``(name, seed, intent)``, so a larger ``shots`` with the same seed keeps the smaller draw's queries (a
      learning curve adds rows, it does not swap them).
    - no test query is in the pool: train queries equal to a test query up to case, spacing and punctuation are
      left out of it before drawing; a validation query is never a test query and never equals a drawn one.
    - the categories are the intent ids made readable by one rule (``readable``): underscores become spaces and the
      first letter is upper case (``card_payment_not_recognised`` becomes "Card payment not recognised"). They are
      the labels and the documents; there is no hand-written description.
    - each example's metadata keeps the original intent id (``intent``) and the split; ``group_key`` is None (every
      query stands alone).
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import ClassVar

from experiments.errors import ConfigError, DataError
from experiments.records import Category, DatasetSplits, Example


def readable(intent: str) -> str:
    """The documented rule that turns an intent id into its category name: ``atm_support`` -> "Atm support"."""
    text = " ".join(intent.replace("_", " ").split())
    return text[:1].upper() + text[1:]


def normalised(text: str) -> str:
    """A query as compared across splits: its words (letters and digits), case-folded, one space apart; spacing
    and punctuation are not part of a query (Banking77 has "How do I change my address ?" in train and "How do
    I change my address?" in test)."""
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


class IntentBenchmark:
    """Queries of a bundled intent benchmark ranked against its readable intent names.

    A subclass sets ``name`` (the config option, also the draw's seed prefix), ``folder`` (its data folder beside
    this module), ``release`` (repository@commit of the data) and ``intent_count`` (how many intents the release
    has), and declares the options with their defaults (the YAML's values must equal them).

    Args:
        shots: queries of each intent drawn from the train pool (e.g. 5, 10, 30); None = the whole pool. Eval is
            the full test split whatever this is.
        seed: seed of the few-shot draw; separate from the run seed, so every run of a sweep (and every
            replicate) sees the same train rows.
        evaluate_on: "test" (the full test split: what results report) or "validation": up to
            ``validation_size`` train queries that the few-shot draw left out, drawn with ``seed``, for choosing
            a recipe or a default without ever reading the test split.
        validation_size: how many left-out train queries ``evaluate_on=validation`` scores.
    """

    name: ClassVar[str]
    folder: ClassVar[str]
    release: ClassVar[str]
    intent_count: ClassVar[int]

    def __init__(self, shots: int | None, seed: int, evaluate_on: str, validation_size: int) -> None:
        if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
            raise ConfigError(
                f"dataset.shots must be a whole number of queries per intent >= 1, or null; got {shots!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"dataset.seed must be a whole number; got {seed!r}")
        if evaluate_on not in ("test", "validation"):
            raise ConfigError(f"dataset.evaluate_on must be test or validation; got {evaluate_on!r}")
        if evaluate_on == "validation" and shots is None:
            raise ConfigError(
                "dataset.evaluate_on=validation scores train queries the few-shot draw left out: set dataset.shots"
            )
        if isinstance(validation_size, bool) or not isinstance(validation_size, int) or validation_size < 1:
            raise ConfigError(f"dataset.validation_size must be a whole number >= 1; got {validation_size!r}")
        self.shots = shots
        self.seed = seed
        self.evaluate_on = evaluate_on
        self.validation_size = validation_size

    def config_dict(self) -> dict[str, object]:
        source: dict[str, object] = {"name": self.name, "shots": self.shots, "seed": self.seed, "release": self.release}
        if self.evaluate_on == "validation":
            source.update(evaluate_on=self.evaluate_on, validation_size=self.validation_size)
        return source

    def load(self) -> DatasetSplits:
        intents = self._intents()
        test = self._rows("test.csv", intents)
        held = {normalised(text) for text, _ in test}
        pool = [(text, intent) for text, intent in self._rows("train.csv", intents) if normalised(text) not in held]
        train = self.draw(pool)
        if self.evaluate_on == "validation":
            evaluated = [_example(text, intent, "train") for text, intent in self.left_out(pool, train)]
        else:
            evaluated = [_example(text, intent, "test") for text, intent in test]
        return DatasetSplits(
            name=self.name,
            train=[_example(text, intent, "train") for text, intent in train],
            eval=evaluated,
            categories=[Category(name=readable(intent)) for intent in intents],
            source=self.config_dict(),
        )

    def draw(self, pool: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """``shots`` rows of each intent (seeded by name, seed and intent), in the pool's order; the pool with None."""
        if self.shots is None:
            return pool
        positions: dict[str, list[int]] = defaultdict(list)
        for position, (_, intent) in enumerate(pool):
            positions[intent].append(position)
        kept: set[int] = set()
        for intent, members in positions.items():
            order = list(members)
            random.Random(f"{self.name}:{self.seed}:{intent}").shuffle(order)
            kept.update(order[: self.shots])
        return [row for position, row in enumerate(pool) if position in kept]

    def left_out(self, pool: list[tuple[str, str]], train: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Up to ``validation_size`` pool rows outside the draw (seeded by name and seed), in the pool's order: a
        validation split of train that no run trains on (no query equal to a drawn one up to case, spacing and
        punctuation) and that is never the test split."""
        drawn = {normalised(text) for text, _ in train}
        rest = [position for position, (text, _) in enumerate(pool) if normalised(text) not in drawn]
        random.Random(f"{self.name}:{self.seed}:validation").shuffle(rest)
        chosen = set(rest[: self.validation_size])
        return [row for position, row in enumerate(pool) if position in chosen]

    def _path(self, name: str) -> Path:
        return Path(str(resources.files("experiments.datasets").joinpath(self.folder, name)))

    def _intents(self) -> list[str]:
        path = self._path("categories.json")
        intents = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(intents, list) or len(set(intents)) != self.intent_count:
            raise DataError(
                f"{path}: expected the release's list of {self.intent_count} intents; reinstall the package."
            )
        return [str(intent) for intent in intents]

    def _rows(self, name: str, intents: list[str]) -> list[tuple[str, str]]:
        path = self._path(name)
        known = set(intents)
        rows = []
        with path.open(encoding="utf-8", newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                text, intent = (row.get("text") or "").strip(), row.get("category") or ""
                if not text or intent not in known:
                    raise DataError(
                        f"{path}:{number}: expected a query and one of the {self.intent_count} intents; "
                        "reinstall the package."
                    )
                rows.append((text, intent))
        return rows


def _example(text: str, intent: str, split: str) -> Example:
    return Example(input=text, expected=[readable(intent)], metadata={"intent": intent, "split": split})
