"""Run one experiment (or a sweep with ``-m``): ``python run.py miner=cosine k=4``; returns ``optimized_metric``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("EXPERIMENTS_ROOT", str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from experiments.threads import choose_wait_policy

choose_wait_policy()  # before torch loads: OpenMP's default on an idle machine, PASSIVE beside other work


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from experiments.api import task

    return task(cfg)


if __name__ == "__main__":
    from experiments.errors import UserError
    from experiments.extras import check_extras
    from experiments.hydra_errors import one_line_config_errors
    from experiments.secrets import guard_output, refuse_secret_overrides

    guard_output()  # the console and every log record (run.log too) are redacted from here on
    try:
        refuse_secret_overrides(sys.argv[1:])  # before Hydra saves the overrides into the run folder
        check_extras(sys.argv[1:])  # an option whose extra is missing: one line, not Hydra's listing
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    one_line_config_errors()  # an unknown option or key, a malformed override: one line, exit 2
    main()  # a sweep with failed jobs exits 1 (experiments.sweeps.callback.SweepFailed)
