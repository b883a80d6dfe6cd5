"""Wall time of the default run (cold and warm), training throughput and rerank latency on this machine.

Usage: ``make bench`` or ``.venv/bin/python scripts/benchmark.py [extra overrides ...]``. Cold = empty caches
(no embeddings, no trained model); warm = the same command again, everything cached. Runs in a temporary
outputs folder, so it never touches your runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_run(outputs: Path, overrides: list[str]) -> tuple[float, dict[str, object]]:
    command = [sys.executable, str(ROOT / "run.py"), f"paths.outputs_dir={outputs}", "progress=false", *overrides]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"run failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    folder = Path(completed.stdout.strip().splitlines()[-1].removeprefix("run folder: "))
    return elapsed, json.loads((folder / "metrics.json").read_text())


def main() -> None:
    overrides = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        outputs = Path(tmp)
        cold_s, cold = timed_run(outputs, overrides)
        warm_s, warm = timed_run(outputs, overrides)
    fit = cold.get("fit") or {}
    assert isinstance(fit, dict)
    metrics = cold["metrics"]
    assert isinstance(metrics, dict)
    latency = metrics["latency_ms"]
    print(f"cores: {os.cpu_count()}  overrides: {' '.join(overrides) or '(defaults)'}")
    print(f"run wall time, cold (empty caches):   {cold_s:7.1f} s")
    reused = bool(warm["fit"] and warm["fit"]["reused"])  # type: ignore[index]
    print(f"run wall time, warm (all cached):     {warm_s:7.1f} s   (model reused: {reused})")
    if fit:
        pairs, seconds = fit.get("train_pairs", 0), fit.get("train_seconds", 0.0)
        rate = pairs * fit.get("epochs", 1) / seconds if seconds else float("nan")
        print(f"training: {pairs} pairs/epoch, {seconds:.1f} s  -> {rate:.1f} pairs/s")
    print(
        f"rerank latency ({metrics['n_queries']} queries x top_k candidates): "
        f"p50 {latency['rerank_p50']:.1f} ms, p95 {latency['rerank_p95']:.1f} ms, mean {latency['rerank_mean']:.1f} ms"
    )
    print("stage timings (cold):", json.dumps(cold["timings"]))
    print("stage timings (warm):", json.dumps(warm["timings"]))
    reranker, baseline = metrics["reranker"], metrics["baseline"]
    for name in ("mrr@1", "recall@5"):
        print(f"{name}: baseline {baseline[name]['mean']:.3f} -> reranker {reranker[name]['mean']:.3f}")


if __name__ == "__main__":
    main()
