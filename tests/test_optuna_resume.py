"""A resumed search says the count it runs: ``n_trials`` less the trials the study has spent, and no configuration
twice (it printed "4 jobs" and then "3 of 3 jobs completed", trial 3 being trial 0 again)."""

from __future__ import annotations

import json

from test_hparams_search import trials
from test_search_budget import job_folders, run, search


def test_a_resumed_search_prints_the_count_it_runs(tmp_path, tiny_model_dir):
    """Trials that fail fast (k above the 30 a data set of 31 categories allows) keep it quick."""
    args = search(tmp_path, tiny_model_dir, 2, "hydra.sweeper.params.k='int(interval(40, 45))'", "trackers=none")
    first = run(args)
    assert "sweep: 2 jobs into" in first.stderr, first.stderr[-2000:]
    more = [item for item in args if not item.startswith("hydra.sweeper.n_trials=")] + ["hydra.sweeper.n_trials=5"]
    resumed = run(more)
    assert resumed.returncode == 1, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "sweep: 3 jobs into" in resumed.stderr  # 5 trials, 2 spent: 3 run now
    assert "search: study 'reranker-search' resumed with 2 of its 5 trials spent; up to 3 more" in resumed.stdout
    assert "sweep: 3/3 finished" in resumed.stderr and "sweep: 4/" not in resumed.stderr
    assert "sweep: 0 of 5 jobs completed" in resumed.stdout  # every job of the sweep folder, all failed
    ran = [trial for trial in trials(tmp_path / "sweep") if trial["repeat_of"] is None]
    configurations = {json.dumps(trial["params"], sort_keys=True) for trial in ran}
    assert len(ran) == len(configurations) == len(job_folders(tmp_path / "sweep")) == 5
