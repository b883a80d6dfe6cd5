"""Optional extras: a laptop install has no Ray; choosing an option that needs one is one line naming the extra."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from experiments.errors import UserError
from experiments.extras import check_extras, chosen

ROOT = Path(__file__).resolve().parents[1]


def test_the_core_install_has_no_cluster_runtime():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "ray" not in core
    assert any(dep.startswith("ray[default]") for dep in project["optional-dependencies"]["cluster"])
    assert any(dep.startswith("hydra-ray-launcher") for dep in project["optional-dependencies"]["cluster"])
    assert any(dep.startswith("optuna") for dep in project["optional-dependencies"]["search"])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["hydra/launcher=ray"], True),
        (["-m", "k=2,4", "hydra/launcher=ray"], True),
        (["+hydra/launcher=ray"], True),
        (["hydra/launcher=joblib"], False),
        (["hydra.launcher.ray.init.address=x"], False),
    ],
)
def test_the_option_is_found_on_the_command_line(overrides, expected):
    assert chosen(overrides, "hydra/launcher=ray") is expected


def test_a_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    expected = r'needs the \'cluster\' extra \(ray is not installed\): pip install -e "\.\[cluster\]"'
    with pytest.raises(UserError, match=expected):
        check_extras(["-m", "hydra/launcher=ray"])
    check_extras(["-m", "hydra/launcher=joblib"])  # nothing else is refused


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path):
    # run.py as the user runs it, in a process where Ray cannot be imported.
    code = (
        "import runpy, sys; sys.modules['ray'] = None; "
        f"sys.argv = ['run.py', '-m', 'hydra/launcher=ray', 'paths.outputs_dir={tmp_path}']; "
        f"runpy.run_path({str(ROOT / 'run.py')!r}, run_name='__main__')"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: hydra/launcher=ray needs the 'cluster' extra (ray is not installed): pip install -e \".[cluster]\""
    ]
    assert not list(tmp_path.iterdir())
