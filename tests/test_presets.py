"""Presets: the named experiments (``+experiment=<name>``) and the ``debug=fast`` group compose with the real configs.

Every preset and every ``debug=fast`` specialisation is composed as Hydra composes it; each key it sets must be a
parameter of the class its node names (a typo or a key of another option would otherwise fail only at run time).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from typing import Any

import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf
from test_config_defaults import settings

sys.path.insert(0, str(CONF.parent / "scripts"))
import results_table

PRESETS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))
#: The groups whose chosen option debug=fast shrinks (conf/debug/<group>/fast_<option>.yaml).
SHRUNK = ("dataset", "reranker", "miner")
OPTIONS = [(group, path.stem) for group in SHRUNK for path in sorted((CONF / group).glob("*.yaml"))]


def composed(*overrides: str) -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    return container


def unknown_keys(config: Mapping[str, Any]) -> list[str]:
    """Keys set on an option that its class does not take."""
    found = []
    for group in (*SHRUNK, "embedder", "retrieval"):
        for target, key, _ in settings(config[group], f"{group}."):
            if key.rpartition(".")[2] not in inspect.signature(get_class(target)).parameters:
                found.append(f"{key} ({target})")
    return found


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_composes_into_options_that_take_its_keys(name):
    config = composed(f"+experiment={name}")
    assert not unknown_keys(config)
    assert config != composed()  # a preset that changes nothing names nothing


def test_the_results_table_rows_are_the_default_then_every_single_run_preset():
    rows = results_table.rows()
    assert next(iter(rows)) == "default" and rows["default"] == []
    sweeps = {"banking77_learning_curve", "banking77_mining_grid"}  # hydra.mode: MULTIRUN
    assert set(rows) == {"default", *(set(PRESETS) - sweeps)}
    assert all(rows[name] == [f"+experiment={name}"] for name in rows if name != "default")
    # The README's rows, each one preset away.
    assert composed(*rows["fused"])["reranker"]["_target_"].endswith("FusedReranker")
    assert composed(*rows["miner_cosine"])["miner"]["_target_"].endswith("CosineMiner")
    assert composed(*rows["default_replicates"])["replicates"] == 3
    assert composed(*rows["split_random"])["dataset"]["split"] == "random"


def epochs(node: Mapping[str, Any]) -> list[Any]:
    """Every ``epochs`` set in a node, nested nodes included (the fused reranker's category part, a teacher)."""
    found = [node["epochs"]] if "epochs" in node else []
    return found + [count for value in node.values() if isinstance(value, Mapping) for count in epochs(value)]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{group}/{option}" for group, option in OPTIONS])
def test_debug_fast_shrinks_every_option_and_sets_only_what_it_takes(group, option):
    config = composed("debug=fast", f"{group}={option}")
    assert not unknown_keys(config)
    assert config["progress"] is False and config["evaluation"]["bootstrap_resamples"] <= 100
    assert all(count == 1 for count in epochs(config["reranker"]) + epochs(config["miner"]))
    dataset = config["dataset"]
    assert dataset.get("n_transactions", 0) <= 400 and (dataset.get("shots") or 0) <= 2


def test_debug_fast_overrides_the_config_and_yields_to_the_command_line():
    default = composed()
    assert (default["progress"], default["evaluation"]["bootstrap_resamples"]) == (True, 1000)
    assert (default["dataset"]["n_transactions"], default["reranker"]["epochs"]) == (720, 3)
    fast = composed("debug=fast")
    assert (fast["progress"], fast["evaluation"]["bootstrap_resamples"]) == (False, 100)
    assert (fast["dataset"]["n_transactions"], fast["reranker"]["epochs"]) == (124, 1)
    typed = composed(
        "debug=fast", "reranker.epochs=2", "evaluation.bootstrap_resamples=7", "dataset.n_transactions=200"
    )
    assert (typed["reranker"]["epochs"], typed["evaluation"]["bootstrap_resamples"]) == (2, 7)
    assert typed["dataset"]["n_transactions"] == 200


def test_every_debug_specialisation_names_an_option_that_exists():
    files = sorted((CONF / "debug").glob("*/*.yaml"))
    assert files
    for path in files:
        debug, _, option = path.stem.partition("_")
        assert (CONF / "debug" / f"{debug}.yaml").is_file(), path
        assert (CONF / path.parent.name / f"{option}.yaml").is_file(), path
