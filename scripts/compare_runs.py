"""Compare finished runs from any sweeps against one reference run, paired on the same eval queries.

Usage: ``.venv/bin/python scripts/compare_runs.py REFERENCE RUN [RUN ...] [--metric mrr@1]``, each a run folder
(``outputs/multirun/<date>/<time>/<job>``). Prints one markdown row per run: the first seed's eval metric with its
interval, the mean ± sd over its replicate seeds, recall@5 over seeds, the validation score when the run chose on
validation (mean over seeds), and the paired difference against the reference on the first seed's queries with
its bootstrap interval and sign-flip p-value, Holm-corrected over the compared runs. Use it for runs of different
sweeps (a sweep's own report pairs its rows already); runs of other eval queries are refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from experiments import run_folder
from experiments.errors import UserError
from experiments.run_folder import RunRecord
from experiments.sweeps.stats import holm, paired_delta, sign_flip_p_value


def _over_seeds(record: RunRecord, metric: str) -> tuple[float, float]:
    if record.replicates is None:
        return record.reranked(metric), 0.0
    stat = record.replicates.stat(metric)
    return stat.mean, stat.sd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--metric", default="mrr@1")
    args = parser.parse_args(argv)
    folders = [args.reference, *args.runs]
    try:
        records = [run_folder.read(folder) for folder in folders]
        queries = [run_folder.read_queries(folder) for folder in folders]
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    scores = [np.array([row.reranker[args.metric] for row in rows]) for rows in queries]
    if any([row.query for row in rows] != [row.query for row in queries[0]] for rows in queries):
        print("error: the runs were evaluated on other queries; nothing to pair.", file=sys.stderr)
        return 2
    deltas = [paired_delta(values, scores[0]) for values in scores[1:]]
    adjusted = holm([sign_flip_p_value(values, scores[0]) for values in scores[1:]])
    print(
        f"| run | eval {args.metric}, first seed [95% CI] | eval {args.metric} over seeds (mean ± sd) | recall@5 over "
        f"seeds | validation {args.metric} | Δ vs reference [95% CI] | p (Holm) | top-1 changed |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for index, (folder, record) in enumerate(zip(folders, records, strict=True)):
        estimate = record.metrics.reranker[args.metric]
        mean, sd = _over_seeds(record, args.metric)
        validation = record.validation_score(args.metric)
        changed = sum(a.reranked_top[:1] != b.reranked_top[:1] for a, b in zip(queries[index], queries[0], strict=True))
        if index == 0:
            versus, p_text = "— (reference)", "—"
        else:
            delta = deltas[index - 1]
            versus, p_text = (
                f"{delta.mean:+.3f} [{delta.ci_low:+.3f}, {delta.ci_high:+.3f}]",
                f"{adjusted[index - 1]:.3f}",
            )
        print(
            f"| {folder.name} | {estimate.mean:.3f} [{estimate.ci_low:.3f}, {estimate.ci_high:.3f}] | {mean:.3f} ± "
            f"{sd:.3f} | {_over_seeds(record, 'recall@5')[0]:.3f} | "
            f"{'—' if validation is None else f'{validation:.3f}'} | {versus} | {p_text} | {changed} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
