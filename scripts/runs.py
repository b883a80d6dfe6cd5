"""Run ``run.py`` from a script and read what it wrote: shared by benchmark.py and results_table.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from experiments import run_folder
from experiments.run_folder import RunRecord

ROOT = Path(__file__).resolve().parents[1]


def run_once(outputs: Path, overrides: list[str]) -> tuple[float, RunRecord, Path]:
    """One run into ``outputs``: its wall time in seconds, its ``metrics.json`` and its folder; exits on failure."""
    command = [sys.executable, str(ROOT / "run.py"), f"paths.outputs_dir={outputs}", "progress=false", *overrides]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"run failed ({completed.returncode}): {' '.join(overrides)}\n{completed.stderr[-3000:]}")
    folder = Path(completed.stdout.strip().splitlines()[-1].removeprefix("run folder: "))
    return elapsed, run_folder.read(folder), folder
