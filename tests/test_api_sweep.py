"""``experiments.sweep``: a sweep in the caller's process, as ``python run.py -m`` runs it, with its report back."""

from __future__ import annotations

import json
import logging
import signal

import pytest
from test_api import small_overrides

import experiments
from experiments.errors import UserError


@pytest.fixture
def small(tmp_path, tiny_model_dir, small_data, monkeypatch) -> list[str]:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("EXPERIMENTS_PARENT_MLFLOW", raising=False)
    return [*small_overrides(tmp_path, tiny_model_dir, small_data), "reranker=none", "log_model=false"]


def test_a_sweep_runs_in_process_and_returns_its_report(small, tmp_path, capsys):
    from hydra.core.hydra_config import HydraConfig

    root = logging.getLogger()
    handlers, on_sigterm = list(root.handlers), signal.getsignal(signal.SIGTERM)
    result = experiments.sweep([*small, "miner=random,cosine", "k=2"])
    assert result.exit_code == 0
    assert result.sweep_dir.parent.parent == tmp_path / "outputs" / "multirun"
    done = sorted(path.parent.name for path in result.sweep_dir.glob("*/metrics.json"))
    assert len(done) == 2 and all(name.startswith(("k=2,miner=", "dataset=jsonl,debug=fast")) for name in done)
    assert result.report == json.loads((result.sweep_dir / "report.json").read_text())
    assert result.report["winner"] and "**Winner:" in result.markdown
    assert result.plots and all(plot.is_file() for plot in result.plots)
    # Each job logged into its own run.log, as under run.py; no job's log handler or SIGTERM handler outlives it.
    assert all((result.sweep_dir / name / "run.log").is_file() for name in done)
    assert root.handlers == handlers and signal.getsignal(signal.SIGTERM) == on_sigterm
    assert not HydraConfig.initialized()
    capsys.readouterr()
    again = experiments.sweep([*small, "miner=random,cosine", "k=2", f"hydra.sweep.dir={result.sweep_dir}"])
    assert again.exit_code == 0 and again.sweep_dir == result.sweep_dir
    assert capsys.readouterr().out.count("reused: ") == 2  # jobs ran as a sweep's: the completed ones are reused


def test_a_failed_job_is_counted_as_run_py_exits(small):
    result = experiments.sweep([*small, "k=-1,2"])
    assert result.exit_code == 1
    assert "k=-1" in result.markdown and result.report["winner"]


def test_a_bad_option_stops_the_sweep_in_one_line(small):
    with pytest.raises(UserError, match=r"Could not find .miner/nope.") as raised:
        experiments.sweep([*small, "miner=nope,cosine"])
    assert "\n" not in str(raised.value)
