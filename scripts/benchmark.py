"""The speed targets, each printed as ``measured / target / met or MISSED``.

Usage: ``make bench`` or ``.venv/bin/python scripts/benchmark.py [--rows N] [extra overrides ...]``.

1. cold ``make run`` (empty caches) and a warm rerun of the same config (everything cached);
2. training and rescoring of the default model (rescoring p50 per eval query, from the cold run's evaluation),
   and rescoring with each scorer backend (``torch``, ``onnx``) on the same queries: the faster is the default;
3. ``python -m experiments.suggest`` on 10,000 new transactions (rows/s, model load excluded) and on the eval
   split (its rankings must equal the evaluation's, 216/216 on the bundled set); its peak RSS on ``--rows`` rows
   (default 1,000,000, streamed);
4. the same training and rescoring next to one busy process (``python -c 'while True: pass'``), as ratios to the
   figures of step 2 measured in this same invocation.

Runs in a temporary outputs folder, so it never touches your runs. The targets are for an idle 2-core CPU; a
machine shared with other work runs slower, so trust the ratios of one invocation more than absolute seconds, and
note the load average printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil
from runs import run_once

COLD_RUN_TARGET_S = 90.0
WARM_RUN_TARGET_S = 5.0
LATENCY_TARGET_MS = 5.0
SUGGEST_TARGET_ROWS_S = 300.0
RSS_TARGET_MIB = 1024.0
MILLION = 1_000_000
BUSY_RATIO_TARGET = 2.5


def line(name: str, measured: float, target: float, unit: str, at_least: bool = False, note: str = "") -> str:
    met = measured >= target if at_least else measured <= target
    sign = ">=" if at_least else "<="
    verdict = "met" if met else "MISSED"
    return f"{name:<44} {measured:10.2f} {unit:<7} target {sign} {target:g} {unit:<7} {verdict}{note}"


@contextmanager
def busy_neighbour() -> Iterator[None]:
    """One process spinning on a core for as long as the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        yield
    finally:
        spinner.terminate()
        spinner.wait()


def suggest(outputs: Path, model: str, source: Path) -> tuple[float, str, Path, float]:
    """``python -m experiments.suggest`` on a file: wall time, its summary line, the output and peak RSS in MiB."""
    target = source.with_suffix(".out.jsonl")
    command = [sys.executable, "-m", "experiments.suggest", model, "--input", str(source), "--output", str(target)]
    command += ["--no-progress", "--tracking-uri", f"sqlite:///{outputs / 'mlflow.db'}"]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "HF_HUB_OFFLINE": "1"}
        )
        peak = 0
        handle = psutil.Process(child.pid)
        while child.poll() is None:
            try:
                peak = max(peak, handle.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.2)
        child.wait()
        err.seek(0)
        stderr = err.read()
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        sys.exit(f"suggest failed ({child.returncode}):\n{stderr[-3000:]}")
    return elapsed, stderr.strip().splitlines()[-1], target, peak / 2**20


def rate(summary: str) -> float:
    """rows/s from suggest's summary line (``ranked N rows in S s (R rows/s), ...``)."""
    return float(summary.split("(")[1].split(" rows/s")[0])


def served(
    outputs: Path, finetune_id: str, folder: Path, same_data: bool, rows: int, query_fields: Sequence[str] | None
) -> list[str]:
    """suggest on 10,000 new transactions, on the eval split against the evaluation, and peak RSS on ``rows`` rows;
    ``query_fields`` are the model's query lines (None: all seven)."""
    from experiments.datasets.synthetic import SyntheticTransactions
    from experiments.datasets.transactions import QUERY_FIELDS, TransactionFields

    data = outputs / "suggest"
    SyntheticTransactions(seed=1, n_transactions=10_000).write_jsonl(data / "new")
    new = [line for name in ("train.jsonl", "eval.jsonl") for line in (data / "new" / name).read_text().splitlines()]
    (data / "transactions.jsonl").write_text("\n".join(new) + "\n")
    wall, summary, _, _ = suggest(outputs, finetune_id, data / "transactions.jsonl")
    lines = [
        line(f"suggest rows/s ({len(new)} new transactions)", rate(summary), SUGGEST_TARGET_ROWS_S, "rows/s", True)
    ]
    lines.append(f"  {summary.split(';')[0]}; {wall:.1f} s wall with start-up")
    # The memo ranks each distinct query text once: say how many there were, and the model's own rate on them.
    fields = query_fields or QUERY_FIELDS
    texts = {TransactionFields.model_validate_json(row).query_text(fields) for row in new}
    seconds = len(new) / rate(summary)
    distinct = f"{len(texts):,} distinct query texts ({len(fields)} lines)"
    lines.append(f"  {distinct}, ranked once each by the memo: {len(texts) / seconds:.0f} distinct texts/s")
    if same_data:  # the default run's data set (dataset=synthetic with its defaults)
        SyntheticTransactions().write_jsonl(data / "bundled")
        _, _, output, _ = suggest(outputs, finetune_id, data / "bundled" / "eval.jsonl")
        ranked = [json.loads(row)["categories"] for row in output.read_text().splitlines()]
        evaluated = [json.loads(row)["reranked_top"] for row in (folder / "per_query.jsonl").read_text().splitlines()]
        same = sum(ours == theirs for ours, theirs in zip(ranked, evaluated, strict=True))
        lines.append(line("suggest rankings equal to the evaluation's", same, len(evaluated), "queries", True))
    big = data / "many.jsonl"
    with big.open("w", encoding="utf-8") as sink:  # the new transactions over and over, written as a stream
        for index in range(rows):
            sink.write(new[index % len(new)] + "\n")
    _, summary, output, peak = suggest(outputs, finetune_id, big)
    note = "" if rows >= MILLION else f"  (measured on {rows:,} rows, not 1,000,000: --rows {MILLION})"
    lines.append(line(f"suggest peak RSS, {rows:,} rows", peak, RSS_TARGET_MIB, "MiB", note=note))
    lines.append(f"  {summary.split(';')[0]}")
    output.unlink()
    return lines


def rescoring_ms(model_dir: Path, documents: list[str], queries: list[str], backend: str) -> float:
    """p50 ms to score one query against the run's candidates (every document: no first stage by default)."""
    from experiments.rerankers.bi_encoder_finetuned import FinetunedBiEncoder

    reranker = FinetunedBiEncoder(base_model=str(model_dir), backend=backend)
    reranker.score(queries[0], documents)  # load the model and embed the documents, as the evaluation's first call
    times = []
    for query in queries:
        started = time.perf_counter()
        reranker.score(query, documents)
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=MILLION, help="rows for the peak-RSS line (default 1,000,000)")
    options, overrides = parser.parse_known_args()
    from experiments.threads import share_the_cpu

    print(f"cores: {os.cpu_count()}  load average at start: {os.getloadavg()}  overrides: {' '.join(overrides) or '-'}")
    threads = share_the_cpu()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        outputs = Path(tmp)
        cold_s, cold, folder = run_once(outputs, overrides)
        warm_s, warm, _ = run_once(outputs, overrides)
        fit, metrics = cold.fit, cold.metrics
        finetune_id = cold.finetune_id
        print(line("cold make run (empty caches)", cold_s, COLD_RUN_TARGET_S, "s"))
        reused = bool(warm.fit and warm.fit.reused)
        print(
            line("warm rerun of a finished config", warm_s, WARM_RUN_TARGET_S, "s", note=f"  (model reused: {reused})")
        )
        p50 = metrics.latency_ms["rerank_p50"]
        print(line("rescoring p50 per query (evaluation)", p50, LATENCY_TARGET_MS, "ms"))
        timings = json.dumps(cold.timings.model_dump(exclude_unset=True))
        print(f"  candidate recall {metrics.candidate_recall:.1%}; stage timings (cold): {timings}")
        same_data = not any(override.startswith(("dataset", "retrieval")) for override in overrides)
        if isinstance(finetune_id, str):
            spec = json.loads(next(outputs.rglob("categoriser.json")).read_text())
            model_dir = outputs / "cache" / "models" / finetune_id
            queries = [json.loads(row)["query"] for row in (folder / "per_query.jsonl").read_text().splitlines()]
            idle = {
                backend: rescoring_ms(model_dir, spec["documents"], queries, backend) for backend in ("torch", "onnx")
            }
            faster = min(idle, key=idle.__getitem__)
            print(
                f"  rescoring p50 by backend, {threads} thread(s): torch {idle['torch']:.2f} ms, onnx "
                f"{idle['onnx']:.2f} ms (onnx/torch {idle['onnx'] / idle['torch']:.2f}; faster: {faster})"
            )
            for row in served(outputs, finetune_id, folder, same_data, options.rows, spec.get("query_fields")):
                print(row)
            with busy_neighbour():
                busy_p50 = rescoring_ms(model_dir, spec["documents"], queries, "onnx")
                busy_s, busy, _ = run_once(outputs / "busy", overrides)
            ratio = busy_p50 / idle["onnx"]
            print(line("rescoring p50 next to one busy process", ratio, BUSY_RATIO_TARGET, "x idle"))
            print(f"  {idle['onnx']:.2f} ms -> {busy_p50:.2f} ms")
            if fit and busy.fit:
                seconds, busy_train = fit.train_seconds, busy.fit.train_seconds
                print(line("training next to one busy process", busy_train / seconds, BUSY_RATIO_TARGET, "x idle"))
                print(f"  {seconds:.1f} s -> {busy_train:.1f} s; the cold run next to it took {busy_s:.1f} s")
        reranker, baseline = metrics.reranker, metrics.baseline
        for name in ("mrr@1", "recall@5"):
            print(f"{name}: baseline {baseline[name].mean:.3f} -> reranker {reranker[name].mean:.3f}")
        print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
