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


@pytest.mark.parametrize(
    ("busy", "policy"), [(0.0, "default"), (10.0, "default"), (50.0, "PASSIVE"), (100.0, "PASSIVE")]
)
def test_a_run_spins_only_when_every_core_is_free_at_its_start(monkeypatch, busy, policy) -> None:
    from experiments.threads import CHOSEN_MARK, choose_wait_policy

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv(CHOSEN_MARK, raising=False)
    assert choose_wait_policy(cores=2, busy_percent=busy) == policy
    # OpenMP's default (spin a moment, then sleep) is the variable left unset; ACTIVE would spin for good
    assert os.environ.get("OMP_WAIT_POLICY") == (None if policy == "default" else policy)
    assert os.environ[CHOSEN_MARK] == "chosen"
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert choose_wait_policy(cores=2, busy_percent=0.0) == "PASSIVE", "the user's policy is kept"


class FakeCounters:
    """CPU-time counters advanced by hand: wall seconds, the machine's busy CPU-seconds, this process's own."""

    def __init__(self) -> None:
        from experiments.threads import CpuCounters

        self.now = CpuCounters(wall=100.0, machine_busy=0.0, own=0.0)
        self.reads = 0

    def advance(self, wall: float, others: float, own: float = 0.0) -> None:
        """``wall`` seconds pass while other processes use ``others`` cores and this one ``own`` cores."""
        from experiments.threads import CpuCounters

        self.now = CpuCounters(
            self.now.wall + wall, self.now.machine_busy + (others + own) * wall, self.now.own + own * wall
        )

    def __call__(self):
        self.reads += 1
        return self.now


def _gate(monkeypatch, counters: FakeCounters, threads: int = 2):
    from experiments.threads import CHOSEN_MARK, SpinGate

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv(CHOSEN_MARK, "chosen")  # chosen by the product, not the user: the gate decides
    return SpinGate(threads, cores=2, every_s=1.0, read=counters, clock=lambda: counters.now.wall)


def test_onnx_workers_spin_on_idle_cores_and_stop_when_a_neighbour_starts(monkeypatch) -> None:
    counters = FakeCounters()
    gate = _gate(monkeypatch, counters)
    counters.advance(0.5, others=0.0, own=2.0)  # our own threads working flat out do not count as a neighbour
    assert gate.spin() is True
    counters.advance(0.5, others=1.0)  # a neighbour starts: not looked at again within the second
    assert gate.spin() is True
    counters.advance(0.6, others=1.0)
    assert gate.spin() is False
    counters.advance(1.0, others=0.3, own=1.0)  # it leaves
    assert gate.spin() is True


def test_the_gate_reads_the_counters_at_most_once_a_second(monkeypatch) -> None:
    counters = FakeCounters()
    gate = _gate(monkeypatch, counters)
    counters.advance(0.5, others=0.0)
    assert gate.spin() is True
    reads = counters.reads
    for _ in range(99):  # a hundred calls within the second, a neighbour busy: no reading, the same answer
        counters.advance(0.01, others=2.0)
        assert gate.spin() is True
    assert counters.reads == reads
    counters.advance(0.01, others=2.0)
    assert gate.spin() is False
    assert counters.reads == reads + 1


def test_a_users_wait_policy_or_one_thread_fixes_the_answer(monkeypatch) -> None:
    from experiments.threads import CHOSEN_MARK, SpinGate

    counters = FakeCounters()
    monkeypatch.delenv(CHOSEN_MARK, raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert SpinGate(2, cores=2, read=counters).spin() is True
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    counters.advance(5.0, others=0.0)
    assert SpinGate(2, cores=2, read=counters).spin() is False
    monkeypatch.setenv(CHOSEN_MARK, "chosen")
    assert SpinGate(1, cores=2, read=counters).spin() is False, "one thread has no workers to spin"
    assert counters.reads == 0


def test_real_counters_see_a_busy_neighbour_and_not_this_process() -> None:
    """From the outside: a real spinning child process is seen; this process's own work is not."""
    import time

    from experiments.threads import others_busy_cores, read_counters

    cores = os.cpu_count() or 1
    before = read_counters()
    end = time.monotonic() + 0.4
    while time.monotonic() < end:  # this process busy on one core
        pass
    alone = others_busy_cores(before, read_counters(), cores)
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        before = read_counters()
        time.sleep(0.6)
        beside = others_busy_cores(before, read_counters(), cores)
    finally:
        child.kill()
        child.wait()
    # a machine already saturated by others cannot show more than every core busy
    assert beside >= min(cores, alone + 0.5) - 0.2, (alone, beside)


def test_a_machine_without_cpu_counters_never_spins(monkeypatch) -> None:
    from experiments.threads import CHOSEN_MARK, SpinGate, choose_wait_policy

    def broken():
        raise OSError("/proc/stat: no such file")

    monkeypatch.setenv(CHOSEN_MARK, "chosen")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert SpinGate(2, cores=2, read=broken).spin() is False
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr("psutil.cpu_percent", lambda interval=None: (_ for _ in ()).throw(OSError("no /proc")))
    assert choose_wait_policy(cores=2) == "PASSIVE"
