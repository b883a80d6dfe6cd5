"""Optional extras: heavy parts a laptop install leaves out, and the one line that names the extra to install.

``pip install -e .`` installs what one run and a grid sweep on this machine need. A cluster launcher and the
hyperparameter search are extras (``pyproject.toml``): choosing one without its extra would otherwise end in
Hydra's "Could not find 'hydra/launcher/ray'" listing, or an ImportError deep inside a plugin.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.errors import UserError


@dataclass(frozen=True)
class Extra:
    """An option of a config group that needs an extra: ``override`` chosen → ``modules`` must be importable."""

    override: str
    extra: str
    modules: tuple[str, ...]


#: Options that need an extra. The launcher's plugin and its runtime are checked separately: either may be missing.
EXTRAS = (
    Extra("hydra/launcher=ray", "cluster", ("hydra_plugins.hydra_ray_launcher", "ray")),
    Extra("hparams_search=optuna", "search", ("optuna",)),
)


def importable(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (a blocked module, ``sys.modules[m] = None``,
    counts as missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or a module blocked in sys.modules
        return False


def chosen(overrides: Sequence[str], option: str) -> bool:
    """Whether the command line chooses ``option`` (``group=name``, also as ``+group=name`` or in a list)."""
    group, name = option.split("=", 1)
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key == group and name in (part.strip() for part in value.split(",")):
            return True
    return False


def check_extras(overrides: Sequence[str]) -> None:
    """Refuse, in one line, an option whose extra is not installed.

    Raises:
        UserError: names the option, the missing module and the ``pip install`` line that adds it.
    """
    for extra in EXTRAS:
        if not chosen(overrides, extra.override):
            continue
        missing = [module for module in extra.modules if not importable(module)]
        if missing:
            raise UserError(
                f"{extra.override} needs the '{extra.extra}' extra ({missing[0]} is not installed): "
                f'pip install -e ".[{extra.extra}]"'
            )
