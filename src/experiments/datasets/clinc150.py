"""CLINC150: crowd-written queries to a task-oriented assistant, each labelled with one of 150 intents in 10 domains.

The data is CLINC's intent-classification benchmark (Larson et al., 2019, "An Evaluation Dataset for Intent
Classification and Out-of-Scope Prediction", EMNLP-IJCNLP 2019, https://aclanthology.org/D19-1131), from
https://github.com/clinc/oos-eval (``data/data_full.json``, commit 828f809), licensed CC BY 3.0: the licence and
an attribution lie beside the CSVs in ``experiments/datasets/data/clinc150/``. It is bundled, so nothing is
downloaded at run time.

Data contract (``IntentBenchmark``'s, with CLINC150's numbers):
    - only the 150 in-scope intents: the release's out-of-scope queries (``oos_train``, ``oos_val``,
      ``oos_test``, label ``oos``) are not bundled, since every query here must have an intent to rank.
    - eval is always the whole in-scope test split: 4,500 queries, 30 of every intent (or, with
      ``evaluate_on=validation``, up to ``validation_size`` left-out train queries).
    - train is a seeded, stratified few-shot draw from the 15,000 train queries (100 per intent): ``shots``
      queries of every intent, or all of train with ``shots=None``. The draw for an intent depends only on
      ``(seed, intent)`` (seed string ``clinc150:{seed}:{intent}``), so a larger ``shots`` with the same seed keeps
      the smaller draw's queries.
    - CLINC's own ``val`` split (20 per intent) is not bundled and not used: the train pool already holds far
      more queries per intent than a few-shot draw takes, ``evaluate_on=validation`` carves its split from the
      left-out train queries by the same rule as Banking77's, and the pool stays the paper's train split.
    - no test query is in train: train queries equal to a test query up to case, spacing and punctuation (20 in
      the release, e.g. "goodbye!" for "goodbye") are left out of the pool before drawing, so an intent has 95 to
      100 queries to draw from.
    - the categories are the 150 intent ids, in the release's order, made readable by one rule (``readable``):
      underscores become spaces and the first letter is upper case (``improve_credit_score`` becomes "Improve
      credit score", ``w2`` "W2"). They are the labels and the documents; there is no hand-written description.
    - each example's metadata keeps the original intent id (``intent``) and the split; ``group_key`` is None
      (every query stands alone).
"""

from __future__ import annotations

from experiments.datasets.intent_benchmark import IntentBenchmark


class Clinc150(IntentBenchmark):
    """CLINC150 assistant queries ranked against the 150 in-scope intent names (``dataset=clinc150``).

    The options are ``IntentBenchmark``'s; ``shots=None`` is all of train (15,000 less the 20 test duplicates) and
    ``validation_size`` defaults to the test split's size.
    """

    name = "clinc150"
    folder = "data/clinc150"
    release = "clinc/oos-eval@828f8093932c8fe6ca7936c3d2e52903b1c523de"
    intent_count = 150

    def __init__(
        self, shots: int | None = 10, seed: int = 0, evaluate_on: str = "test", validation_size: int = 4500
    ) -> None:
        super().__init__(shots=shots, seed=seed, evaluate_on=evaluate_on, validation_size=validation_size)
