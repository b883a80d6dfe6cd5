"""Run one experiment (or a sweep with ``-m``): ``python run.py miner=cosine k=4``."""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

os.environ.setdefault("EXPERIMENTS_ROOT", str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: on a small CPU shared with other work, spinning threads burn the
# cores the busy ones need (measured: one query's rescoring took 10x the CPU time with the default policy).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from experiments.app import main as run_app

    return run_app(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
