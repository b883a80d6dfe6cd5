"""The sweeper's config node (``hydra/sweeper=experiments_optuna``), registered in Hydra's ConfigStore.

No ``from __future__ import annotations`` here: Hydra's plugin scan runs this module outside ``sys.modules``, where
a dataclass cannot resolve string annotations, and OmegaConf reads these annotations as the node's schema.
"""

from dataclasses import dataclass, field
from typing import Any, Optional  # OmegaConf 2.3 reads Optional[...], not X | None

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    """Settings of a search; ``params`` maps a key to a Hydra sweep expression (``choice(a,b)``,
    ``int(interval(1,8))``, ``tag(log, interval(1e-5,1e-3))``, ``range(1,4)``). Nested keys
    (``reranker: {epochs: ...}``) stand for dotted ones (``reranker.epochs``), so the command line can change or
    remove one (``~hydra.sweeper.params.reranker.epochs``)."""

    _target_: str = "hydra_plugins.experiments_optuna_sweeper.sweeper.OptunaSweeper"
    n_trials: int = 20
    seed: int = 0
    direction: str = "maximize"
    storage: Optional[str] = None  # noqa: UP045
    study_name: str = "search"
    params: dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="experiments_optuna", node=OptunaSweeperConf, provider="experiments"
)
