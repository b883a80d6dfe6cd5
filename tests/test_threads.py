"""Threads that share the CPU: the free cores decide the thread count; OpenMP workers sleep when idle."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from experiments.errors import ConfigError
from experiments.threads import fair_threads


@pytest.mark.parametrize(
    ("cores", "busy", "threads"), [(2, 0.0, 2), (2, 50.0, 1), (2, 100.0, 1), (16, 25.0, 12), (4, 60.0, 2)]
)
def test_threads_are_the_cores_other_work_leaves_free(monkeypatch, cores, busy, threads) -> None:
    monkeypatch.delenv("EXPERIMENTS_THREADS", raising=False)
    assert fair_threads(cores=cores, busy_percent=busy) == threads


def test_the_thread_count_can_be_set_and_is_checked(monkeypatch) -> None:
    monkeypatch.setenv("EXPERIMENTS_THREADS", "3")
    assert fair_threads(cores=2, busy_percent=100.0) == 3
    monkeypatch.setenv("EXPERIMENTS_THREADS", "0")
    with pytest.raises(ConfigError, match="EXPERIMENTS_THREADS='0' must be a whole number"):
        fair_threads()


def test_the_served_model_and_suggest_make_openmp_workers_sleep() -> None:
    """Importing the served model's code (before torch) sets a passive wait policy unless one is set."""
    code = "import os, experiments.serving.pyfunc_model; print(os.environ['OMP_WAIT_POLICY'])"
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "PASSIVE"
    kept = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "OMP_WAIT_POLICY": "ACTIVE"}
    )
    assert kept.stdout.strip() == "ACTIVE"


def test_a_run_uses_every_core_whatever_the_load(monkeypatch) -> None:
    """Training sums in thread order: a run's results must not depend on what else the machine was doing."""
    import torch

    from experiments.threads import share_the_cpu

    monkeypatch.delenv("EXPERIMENTS_THREADS", raising=False)
    monkeypatch.setattr("psutil.cpu_percent", lambda interval=None: 100.0)
    before = torch.get_num_threads()
    try:
        assert share_the_cpu(adaptive=False) == (os.cpu_count() or 1)
        assert share_the_cpu(adaptive=True) == 1
    finally:
        torch.set_num_threads(before)


def test_the_thread_count_reaches_torch_without_importing_it() -> None:
    """A fully cached run never needs torch: the count waits in OMP_NUM_THREADS until torch loads."""
    code = (
        "import sys\n"
        "from experiments.threads import share_the_cpu\n"
        "share_the_cpu(adaptive=False)\n"
        "assert 'torch' not in sys.modules, 'share_the_cpu imported torch'\n"
        "import torch\n"
        "print(torch.get_num_threads())\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "EXPERIMENTS_THREADS": "1"}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
