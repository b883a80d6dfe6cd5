"""Banking77: real customer queries of an online bank, each labelled with one of 77 fine-grained intents.

The data is PolyAI's Banking77 (Casanueva et al., 2020, "Efficient Intent Detection with Dual Sentence
Encoders", https://arxiv.org/abs/2003.04807), from https://github.com/PolyAI-LDN/task-specific-datasets
(commit 57ec275), licensed CC BY 4.0: the licence and an attribution lie beside the CSVs in
``experiments/datasets/data/banking77/``. It is bundled, so nothing is downloaded at run time.

Data contract (``IntentBenchmark``'s, with Banking77's numbers):
    - eval is always the whole test split: 3,080 queries, every intent (or, with ``evaluate_on=validation``, up
      to ``validation_size`` left-out train queries).
    - train is a seeded, stratified few-shot draw from the 10,003 train queries: ``shots`` queries of every
      intent (all of an intent's queries when it has fewer), or all of train with ``shots=None``. The draw for
      an intent depends only on ``(seed, intent)`` (seed string ``banking77:{seed}:{intent}``), so a larger
      ``shots`` with the same seed keeps the smaller draw's queries (a learning curve adds rows, it does not
      swap them).
    - no test query is in train: train queries equal to a test query up to case, spacing and punctuation (25
      in the release) are left out of the pool before drawing.
    - the categories are the 77 intent names made readable by one rule (``readable``): underscores become
      spaces and the first letter is upper case (``card_payment_not_recognised`` becomes "Card payment not
      recognised"). They are the labels and the documents; there is no hand-written description.
    - each example's metadata keeps the original intent id (``intent``) and the split; ``group_key`` is None
      (every query stands alone).
"""

from __future__ import annotations

from experiments.datasets.intent_benchmark import IntentBenchmark, normalised, readable

__all__ = ["Banking77", "normalised", "readable"]


class Banking77(IntentBenchmark):
    """Banking77 customer queries ranked against the 77 intent names (``dataset=banking77``).

    The options are ``IntentBenchmark``'s; ``shots=None`` is all of train (10,003 less the 25 test duplicates) and
    ``validation_size`` defaults to the test split's size.
    """

    name = "banking77"
    folder = "data/banking77"
    release = "PolyAI-LDN/task-specific-datasets@57ec275d8078af65b7731c2a98be812d844a6d6b"
    intent_count = 77

    def __init__(
        self, shots: int | None = 10, seed: int = 0, evaluate_on: str = "test", validation_size: int = 3080
    ) -> None:
        super().__init__(shots=shots, seed=seed, evaluate_on=evaluate_on, validation_size=validation_size)
