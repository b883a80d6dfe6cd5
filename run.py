"""Run one experiment (or a sweep with ``-m``): ``python run.py miner=cosine k=4``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

os.environ.setdefault("EXPERIMENTS_ROOT", str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from experiments.app import main as run_app

    return run_app(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    from experiments.errors import UserError
    from experiments.secrets import refuse_secret_overrides

    try:
        refuse_secret_overrides(sys.argv[1:])  # before Hydra saves the overrides into the run folder
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    main()
