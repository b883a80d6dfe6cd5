"""Wall time of the default run (cold and warm), training time and rescoring latency against the targets, and
`suggest` throughput.

Usage: ``make bench`` or ``.venv/bin/python scripts/benchmark.py [extra overrides ...]``. Cold = empty caches
(no embeddings, no trained model); warm = the same command again, everything cached. Then the run's logged model
ranks 10,000 new transactions with ``python -m experiments.suggest`` (rows/s, model load excluded) and the eval
split (its rankings must equal the evaluation's). Runs in a temporary outputs folder, so it never touches your
runs. Targets on a 2-core CPU: the default fine-tune trains in at most 120 s and rescoring the candidates of one
query takes at most 10 ms (p50). Machines shared with other work run slower: compare ratios between runs made
side by side rather than absolute seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runs import run_once

TRAIN_TARGET_S = 120.0
LATENCY_TARGET_MS = 10.0


def verdict(value: float, target: float) -> str:
    return f"(target <= {target:g}: {'met' if value <= target else 'MISSED'})"


def suggest(outputs: Path, model: str, source: Path) -> tuple[float, str, list[dict[str, object]]]:
    """Run ``python -m experiments.suggest`` on a file: wall time, its summary line, the written rows."""
    target = source.with_suffix(".out.jsonl")
    command = [sys.executable, "-m", "experiments.suggest", model, "--input", str(source), "--output", str(target)]
    command += ["--no-progress", "--tracking-uri", f"sqlite:///{outputs / 'mlflow.db'}"]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"suggest failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    summary = completed.stderr.strip().splitlines()[-1]
    return elapsed, summary, [json.loads(line) for line in target.read_text().splitlines()]


def suggest_benchmark(outputs: Path, finetune_id: str, folder: Path, same_data: bool) -> list[str]:
    """10,000 new transactions through the logged model, and the eval split against the evaluation's rankings."""
    from experiments.datasets.synthetic import SyntheticTransactions

    data = outputs / "suggest"
    SyntheticTransactions(seed=1, n_transactions=10_000).write_jsonl(data / "new")
    rows = [line for name in ("train.jsonl", "eval.jsonl") for line in (data / "new" / name).read_text().splitlines()]
    (data / "transactions.jsonl").write_text("\n".join(rows) + "\n")
    wall, summary, _ = suggest(outputs, finetune_id, data / "transactions.jsonl")
    lines = [f"suggest, {len(rows)} new transactions: {summary.split(';')[0]}; {wall:.1f} s wall with start-up"]
    if same_data:  # the default run's data set (dataset=synthetic with its defaults)
        SyntheticTransactions().write_jsonl(data / "bundled")
        _, _, ranked = suggest(outputs, finetune_id, data / "bundled" / "eval.jsonl")
        evaluated = [json.loads(line)["reranked_top"] for line in (folder / "per_query.jsonl").read_text().splitlines()]
        same = sum(row["categories"] == top for row, top in zip(ranked, evaluated, strict=True))
        lines.append(f"suggest on the eval split: {same}/{len(evaluated)} rankings (top 5) equal the evaluation's")
    return lines


def main() -> None:
    overrides = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        outputs = Path(tmp)
        cold_s, cold, folder = run_once(outputs, overrides)
        warm_s, warm, _ = run_once(outputs, overrides)
        finetune_id = cold.finetune_id
        same_data = not any(override.startswith(("dataset", "retrieval")) for override in overrides)
        served = suggest_benchmark(outputs, finetune_id, folder, same_data) if isinstance(finetune_id, str) else []
    fit, metrics = cold.fit, cold.metrics
    latency = metrics.latency_ms
    print(f"cores: {os.cpu_count()}  overrides: {' '.join(overrides) or '(defaults)'}")
    print(f"run wall time, cold (empty caches):   {cold_s:7.1f} s")
    reused = bool(warm.fit and warm.fit.reused)
    print(f"run wall time, warm (all cached):     {warm_s:7.1f} s   (model reused: {reused})")
    if fit:
        pairs, seconds = fit.train_pairs, fit.train_seconds
        rate = pairs * fit.details.get("epochs", 1) / seconds if seconds else float("nan")
        print(
            f"training: {seconds:.1f} s {verdict(seconds, TRAIN_TARGET_S)}  ({pairs} pairs/epoch, {rate:.1f} pairs/s)"
        )
        selection = fit.selection
        if "select_seconds" in selection:
            print(
                f"  epochs chosen on validation: {selection['epochs']} (choosing took {selection['select_seconds']} s)"
            )
    p50 = latency["rerank_p50"]
    print(
        f"rescoring latency per query ({metrics.n_queries} queries x top_k candidates): "
        f"p50 {p50:.1f} ms {verdict(p50, LATENCY_TARGET_MS)}, p95 {latency['rerank_p95']:.1f} ms, "
        f"mean {latency['rerank_mean']:.1f} ms"
    )
    print("stage timings (cold):", json.dumps(cold.timings.model_dump(exclude_unset=True)))
    print("stage timings (warm):", json.dumps(warm.timings.model_dump(exclude_unset=True)))
    reranker, baseline = metrics.reranker, metrics.baseline
    for name in ("mrr@1", "recall@5"):
        print(f"{name}: baseline {baseline[name].mean:.3f} -> reranker {reranker[name].mean:.3f}")
    for line in served:
        print(line)


if __name__ == "__main__":
    main()
