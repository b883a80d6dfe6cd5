"""Wall time of the default run (cold and warm), training time and rescoring latency against the targets.

Usage: ``make bench`` or ``.venv/bin/python scripts/benchmark.py [extra overrides ...]``. Cold = empty caches
(no embeddings, no trained model); warm = the same command again, everything cached. Runs in a temporary
outputs folder, so it never touches your runs. Targets on a 2-core CPU: the default fine-tune trains in at most
120 s and rescoring the candidates of one query takes at most 10 ms (p50). Machines shared with other work run
slower: compare ratios between runs made side by side rather than absolute seconds.
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
TRAIN_TARGET_S = 120.0
LATENCY_TARGET_MS = 10.0


def verdict(value: float, target: float) -> str:
    return f"(target <= {target:g}: {'met' if value <= target else 'MISSED'})"


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
        print(
            f"training: {seconds:.1f} s {verdict(seconds, TRAIN_TARGET_S)}  ({pairs} pairs/epoch, {rate:.1f} pairs/s)"
        )
        selection = fit.get("selection") or {}
        if "select_seconds" in selection:
            print(
                f"  epochs chosen on validation: {selection['epochs']} (choosing took {selection['select_seconds']} s)"
            )
    p50 = latency["rerank_p50"]
    print(
        f"rescoring latency per query ({metrics['n_queries']} queries x top_k candidates): "
        f"p50 {p50:.1f} ms {verdict(p50, LATENCY_TARGET_MS)}, p95 {latency['rerank_p95']:.1f} ms, "
        f"mean {latency['rerank_mean']:.1f} ms"
    )
    print("stage timings (cold):", json.dumps(cold["timings"]))
    print("stage timings (warm):", json.dumps(warm["timings"]))
    reranker, baseline = metrics["reranker"], metrics["baseline"]
    for name in ("mrr@1", "recall@5"):
        print(f"{name}: baseline {baseline[name]['mean']:.3f} -> reranker {reranker[name]['mean']:.3f}")


if __name__ == "__main__":
    main()
