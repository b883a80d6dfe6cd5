"""From a composed Hydra config to a finished run: build the components, run the pipeline, report.

The only place that reads ``cfg``; library code receives plain arguments.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from experiments.errors import UserError
from experiments.pipeline import Components, Folders, Knobs, RunOutcome, run_experiment
from experiments.tracking.base import scrub

log = logging.getLogger(__name__)

#: The config groups that become a run's components (``experiments.pipeline.Components``), in build order.
GROUPS = ("dataset", "embedder", "retrieval", "miner", "reranker", "tracker")


def build(cfg: DictConfig, group: str) -> Any:
    """Instantiate one config group, turning a rejected option into a one-line ``UserError``."""
    try:
        return instantiate(cfg[group])
    except MissingMandatoryValue as error:
        raise UserError(f"{error.full_key} is required: add {error.full_key}=<value> to the command line.") from None
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, UserError | ValueError | TypeError):
            raise UserError(f"{group}: {cause}") from None
        raise


def run(cfg: DictConfig, output_dir: Path) -> RunOutcome:
    """Run the experiment the config describes and write its folder under ``output_dir``."""
    parts = Components(**{group: build(cfg, group) for group in GROUPS})
    config = scrub(OmegaConf.to_container(cfg, resolve=True))
    knobs = Knobs(
        k=cfg.k,
        duplication=cfg.duplication,
        seed=cfg.seed,
        bootstrap_resamples=cfg.evaluation.bootstrap_resamples,
        progress=cfg.progress,
        validation_fraction=cfg.validation_fraction,
        replicates=cfg.replicates,
    )
    folders = Folders(
        output_dir=output_dir,
        models_dir=Path(cfg.paths.models_dir),
        scores_dir=Path(cfg.paths.scores_dir),
    )
    return run_experiment(parts, knobs, folders, config)


def main(cfg: DictConfig, output_dir: Path) -> float:
    """CLI entry: run, print the table and the run folder; a user mistake exits 2 with one line, no traceback."""
    try:
        outcome = run(cfg, output_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print()
    print(outcome.table)
    if outcome.fit is not None:
        state = "reused" if outcome.fit.reused else f"trained in {outcome.fit.train_seconds:.1f}s"
        print(f"fine-tune id: {outcome.fit.finetune_id} ({state})")
    print(f"fine-tuning set: {len(outcome.finetune_set)} items, digest {outcome.finetune_set.digest()[:16]}")
    for note, count in outcome.finetune_set.fill_notes.items():
        if count:
            print(f"note: {note} = {count} (the strategy's pool ran short; set miner.strict=true to fail instead)")
    print(f"run folder: {outcome.output_dir}")
    return outcome.primary_metric
