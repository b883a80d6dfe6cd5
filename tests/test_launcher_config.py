"""``hydra/launcher=ray`` composes without Hydra's deprecation warning and is the project's YAML, key for key."""

from __future__ import annotations

import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

pytest.importorskip("hydra_plugins.hydra_ray_launcher")


def test_the_ray_launcher_composes_without_a_deprecation_warning(monkeypatch):
    """Hydra 1.3 warned "'hydra/launcher/ray' is validated against ConfigStore schema with the same name" at every
    composition; as an error here, any such warning fails the test."""
    monkeypatch.setenv("HYDRA_DEPRECATION_WARNINGS_AS_ERRORS", "1")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=ray"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher)
    expected = OmegaConf.to_container(OmegaConf.load(CONF / "hydra" / "launcher" / "ray.yaml"))
    assert launcher == expected


def test_the_plugin_s_aws_launcher_is_still_an_option(monkeypatch):
    monkeypatch.setenv("HYDRA_DEPRECATION_WARNINGS_AS_ERRORS", "1")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=ray_aws"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("RayAWSLauncher")
