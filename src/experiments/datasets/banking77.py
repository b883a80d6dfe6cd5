"""Banking77: real customer queries of an online bank, each labelled with one of 77 fine-grained intents.

The data is PolyAI's Banking77 (Casanueva et al., 2020, "Efficient Intent Detection with Dual Sentence
Encoders", https://arxiv.org/abs/2003.04807), from https://github.com/PolyAI-LDN/task-specific-datasets
(commit 57ec275), licensed CC BY 4.0: the licence and an attribution lie beside the CSVs in
``experiments/datasets/data/banking77/``. It is bundled, so nothing is downloaded at run time.

Data contract:
    - eval is always the whole test split: 3,080 queries, every intent.
    - train is a seeded, stratified few-shot draw from the 10,003 train queries: ``shots`` queries of every
      intent (all of an intent's queries when it has fewer), or all of train with ``shots=None``. The draw for
      an intent depends only on ``(seed, intent)``, so a larger ``shots`` with the same seed keeps the smaller
      draw's queries (a learning curve adds rows, it does not swap them).
    - no test query is in train: train queries equal to a test query up to case, spacing and punctuation (25
      in the release) are left out of the pool before drawing.
    - the categories are the 77 intent names made readable by one rule (``readable``): underscores become
      spaces and the first letter is upper case (``card_payment_not_recognised`` becomes "Card payment not
      recognised"). They are the labels and the documents; there is no hand-written description.
    - each example's metadata keeps the original intent id (``intent``) and the split; ``group_key`` is None
      (every query stands alone).
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections import defaultdict
from importlib import resources
from pathlib import Path

from experiments.errors import ConfigError, DataError
from experiments.records import Category, DatasetSplits, Example

DATA = "data/banking77"
RELEASE = "PolyAI-LDN/task-specific-datasets@57ec275d8078af65b7731c2a98be812d844a6d6b"


def readable(intent: str) -> str:
    """The documented rule that turns an intent id into its category name: ``atm_support`` -> "Atm support"."""
    text = " ".join(intent.replace("_", " ").split())
    return text[:1].upper() + text[1:]


def normalised(text: str) -> str:
    """A query as compared across splits: its words (letters and digits), case-folded, one space apart; spacing
    and punctuation are not part of a query (the release has "How do I change my address ?" in train and "How do
    I change my address?" in test)."""
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


class Banking77:
    """Banking77 customer queries ranked against the 77 intent names (``dataset=banking77``).

    Args:
        shots: queries of each intent drawn from train (e.g. 5, 10, 30); None = all of train (10,003 less the 25
            test duplicates). Eval is the full test split whatever this is.
        seed: seed of the few-shot draw; separate from the run seed, so every run of a sweep (and every
            replicate) sees the same train rows.
    """

    name = "banking77"

    def __init__(self, shots: int | None = 10, seed: int = 0) -> None:
        if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
            raise ConfigError(
                f"dataset.shots must be a whole number of queries per intent >= 1, or null; got {shots!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"dataset.seed must be a whole number; got {seed!r}")
        self.shots = shots
        self.seed = seed

    def config_dict(self) -> dict[str, object]:
        return {"name": self.name, "shots": self.shots, "seed": self.seed, "release": RELEASE}

    def load(self) -> DatasetSplits:
        intents = _intents()
        test = _rows("test.csv", intents)
        held = {normalised(text) for text, _ in test}
        pool = [(text, intent) for text, intent in _rows("train.csv", intents) if normalised(text) not in held]
        train = self.draw(pool)
        return DatasetSplits(
            name=self.name,
            train=[_example(text, intent, "train") for text, intent in train],
            eval=[_example(text, intent, "test") for text, intent in test],
            categories=[Category(name=readable(intent)) for intent in intents],
            source=self.config_dict(),
        )

    def draw(self, pool: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """``shots`` rows of each intent (seeded by seed and intent), in the pool's order; the pool with None."""
        if self.shots is None:
            return pool
        positions: dict[str, list[int]] = defaultdict(list)
        for position, (_, intent) in enumerate(pool):
            positions[intent].append(position)
        kept: set[int] = set()
        for intent, members in positions.items():
            order = list(members)
            random.Random(f"banking77:{self.seed}:{intent}").shuffle(order)
            kept.update(order[: self.shots])
        return [row for position, row in enumerate(pool) if position in kept]


def _path(name: str) -> Path:
    return Path(str(resources.files("experiments.datasets").joinpath(DATA, name)))


def _intents() -> list[str]:
    path = _path("categories.json")
    intents = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(intents, list) or len(set(intents)) != 77:
        raise DataError(f"{path}: expected the release's list of 77 intents; reinstall the package.")
    return [str(intent) for intent in intents]


def _rows(name: str, intents: list[str]) -> list[tuple[str, str]]:
    path = _path(name)
    known = set(intents)
    rows = []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            text, intent = (row.get("text") or "").strip(), row.get("category") or ""
            if not text or intent not in known:
                raise DataError(f"{path}:{number}: expected a query and one of the 77 intents; reinstall the package.")
            rows.append((text, intent))
    return rows


def _example(text: str, intent: str, split: str) -> Example:
    return Example(input=text, expected=[readable(intent)], metadata={"intent": intent, "split": split})
