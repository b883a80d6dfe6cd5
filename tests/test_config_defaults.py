"""The YAML files are where users read an option's default: the classes they name must not say otherwise.

Every option of every config group (``conf/<group>/<option>.yaml``) is composed as Hydra composes it, and each
value it sets on a ``_target_`` node (nested nodes included) is compared with the default in that class's
signature. A value that differs is drift, unless it is on ``DIFFERENT_ON_PURPOSE`` with the reason. Not compared:
interpolations (``${progress}``, ``${paths.cache_dir}/...``: wiring to another key, resolved per run), mandatory
``???`` values and parameters without a default (the YAML is their only place).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

from experiments.schema import Knobs

# hparams_search, experiment and debug hold global deltas (a search space, a named sweep, a tiny run), not options
# naming a class.
DELTAS = ("paths", "hparams_search", "experiment", "debug")
GROUPS = sorted(path.name for path in CONF.iterdir() if path.is_dir() and path.name not in DELTAS)
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]

#: ``<group>/<option>:<key>`` -> why the YAML value differs from the class default on purpose.
DIFFERENT_ON_PURPOSE = {
    # The class default registers nothing (a tracker built in code, by a test or a script, leaves the registry
    # alone); the product's config opts in to registering a sweep's winner.
    "trackers/mlflow:mlflow.register_winner": "the config opts in to registering",
    # Inside the fused reranker the memory embeds with the category part's fine-tuned model (null), not with the
    # stand-alone LabelMemory's default model.
    "reranker/fused:memory.model": "null = the category reranker's fine-tuned model",
    # The opt-in larger model: another model than the class default, in smaller batches (768-dim, 5x the weights).
    "embedder/mpnet:model": "the opt-in all-mpnet-base-v2",
    "embedder/mpnet:batch_size": "half MiniLM's batch for a model 5x its size",
    # The class formats the data contract's full seven-line layout (docs/data-formats.md); the default run keeps the
    # four lines chosen on the bundled set's validation split (README, "The query lines were chosen on validation").
    "dataset/synthetic:query_fields": "the four query lines chosen on validation for the default run",
    # The second-round miner's teacher only embeds the train examples once: no ONNX export to keep beside it.
    "miner/second_round:teacher.backend": "a teacher embeds once: torch, no export",
    # Enough of the teacher's confusions for every draw of the default k=4, duplication=2.
    "miner/second_round:then.margin": "k x duplication runners-up for the default knobs",
}


#: Groups chosen in another primary config than config.yaml (``python -m experiments.peers`` composes its own).
PRIMARY = {"peers": "peer_comparison"}


def composed(group: str, option: str) -> dict[str, Any]:
    """The group's node as the run sees it (Hydra defaults lists applied), interpolations left unresolved."""
    override = f"{group}=[{option}]" if group in ("trackers", "peers") else f"{group}={option}"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(PRIMARY.get(group, "config"), overrides=[override])
    node = OmegaConf.to_container(cfg[group], resolve=False)
    assert isinstance(node, dict)
    return node


def settings(node: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """``(target, dotted key, value)`` for every plain value set on a ``_target_`` node, nested ones included."""
    target = node.get("_target_")
    for key, value in node.items():
        if key.startswith("_"):
            continue
        if isinstance(value, Mapping):
            yield from settings(value, f"{prefix}{key}.")
        elif target is not None:
            yield str(target), f"{prefix}{key}", value


def plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{group}/{option}" for group, option in OPTIONS])
def test_every_yaml_value_is_its_class_default(group: str, option: str) -> None:
    drift = []
    for target, key, value in settings(composed(group, option)):
        parameters = inspect.signature(get_class(target)).parameters
        name = key.rpartition(".")[2]
        assert name in parameters, f"conf/{group}/{option}.yaml: {key} is not a parameter of {target}"
        default = parameters[name].default
        wired = isinstance(value, str) and ("${" in value or value == "???")
        if wired or default is inspect.Parameter.empty or f"{group}/{option}:{key}" in DIFFERENT_ON_PURPOSE:
            continue
        if plain(value) != plain(default):
            drift.append(f"{key}: YAML {value!r}, {target.rpartition('.')[2]} default {default!r}")
    assert not drift, f"conf/{group}/{option}.yaml drifted from its class: " + "; ".join(drift)


def test_the_allowlist_names_only_real_differences() -> None:
    found = set()
    for group, option in OPTIONS:
        for target, key, value in settings(composed(group, option)):
            default = inspect.signature(get_class(target)).parameters[key.rpartition(".")[2]].default
            if plain(value) != plain(default):
                found.add(f"{group}/{option}:{key}")
    assert set(DIFFERENT_ON_PURPOSE) <= found


def test_the_top_level_knobs_have_their_defaults_only_in_config_yaml() -> None:
    assert all(field.is_required() for field in Knobs.model_fields.values())
    top = OmegaConf.load(CONF / "config.yaml")
    Knobs.model_validate(OmegaConf.to_container(top, resolve=False))
