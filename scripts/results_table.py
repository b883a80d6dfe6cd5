"""Re-measure the results table (docs/results.md): each row is one run of ``run.py``, printed as a markdown row.

Usage: ``.venv/bin/python scripts/results_table.py [--outputs DIR] [--rows NAME ...] [-- extra overrides]``.
The rows are the default run, then every single-run preset in ``conf/experiment/`` (``python run.py
+experiment=<name>`` reproduces one; the presets that sweep, ``hydra.mode: MULTIRUN``, are not rows).
Rows share one outputs folder (default ``outputs/results-table``), so models and embeddings are reused by content
across rows and reruns. Every number comes from the rows' ``metrics.json``: the eval split only reports; every
choice (epochs, fusion weights) was made on the validation split carved from train.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import OmegaConf
from runs import ROOT, run_once

from experiments.run_folder import Estimate, RunRecord

PRESETS = ROOT / "conf" / "experiment"
#: The row without a preset: the config as it is. It comes first; its baseline is every run's baseline column.
DEFAULT = "default"


def rows(presets: Path = PRESETS) -> dict[str, list[str]]:
    """Row name -> overrides: the default, then each single-run preset by name."""
    single = [
        path.stem
        for path in sorted(presets.glob("*.yaml"))
        if OmegaConf.select(OmegaConf.load(path), "hydra.mode") != "MULTIRUN"
    ]
    return {DEFAULT: [], **{name: [f"+experiment={name}"] for name in single}}


def cell(value: Estimate, sign: str = "") -> str:
    return f"{value.mean:{sign}.3f} [{value.ci_low:{sign}.3f}, {value.ci_high:{sign}.3f}]"


def row(name: str, record: RunRecord) -> str:
    summary, fit = record.metrics, record.fit
    spread = "—"
    if record.replicates is not None:
        stat = record.replicates.stat("mrr@1")
        spread = f"{stat.mean:.3f} ± {stat.sd:.3f}"
    choices = (("epochs", fit.selection.epochs), ("weight", fit.selection.weight)) if fit else ()
    chosen = ", ".join(f"{key}={value}" for key, value in choices if value is not None) or "—"
    seconds = f"{fit.train_seconds:.0f} s" if fit and not fit.reused else ("reused" if fit else "—")
    # A rerun reuses scores by content: the cache's look-ups are not timed, so its latency is not measured.
    p50 = summary.latency_ms.get("rerank_p50")
    latency = "cached" if p50 is None else f"{p50:.1f} ms"
    return (
        f"| {name} | {cell(summary.reranker['mrr@1'])} | {cell(summary.reranker['recall@5'])} | "
        f"{cell(summary.delta['mrr@1'], '+')} | {spread} | {chosen} | {seconds} | "
        f"{latency} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=Path, default=ROOT / "outputs" / "results-table")
    named = rows()
    parser.add_argument("--rows", nargs="*", default=list(named), choices=list(named))
    parser.add_argument("extra", nargs="*", help="overrides added to every row")
    args = parser.parse_args()
    print(
        "| run | mrr@1 [95% CI] | recall@5 [95% CI] | Δ mrr@1 vs baseline | mrr@1 over 3 seeds | chosen on "
        "validation | train | rescoring p50 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for index, name in enumerate(args.rows):
        _, record, _ = run_once(args.outputs, ["trackers=none", *named[name], *args.extra])
        if index == 0:
            baseline = record.metrics.baseline
            print(
                f"| embedding baseline | {cell(baseline['mrr@1'])} | {cell(baseline['recall@5'])} | — | — | — | — | — |"
            )
        print(row(name, record), flush=True)


if __name__ == "__main__":
    main()
