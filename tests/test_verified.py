"""Nothing stored is trusted blindly: real files damaged on disk (a zeroed or truncated model, another model's ONNX
export under the expected name, zeroed or garbage cached vectors, a cache another process keeps locked) are found
before reuse and rebuilt with one warning naming the file, never used."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_cli import run_cli, shrunk
from test_rerankers import COLOURS, FAST, colour_items, transaction

from experiments import cache as cache_module
from experiments.embedders.sentence_transformer import SentenceTransformerEmbedder
from experiments.records import FinetuneSet
from experiments.rerankers.bi_encoder_finetuned import FinetunedBiEncoder
from experiments.store import COMPLETE_MARKER, DIGESTS_KEY

TEXTS = [transaction(f"Shop {i}", COLOURS[i % 6], 10.0 + i) for i in range(12)] + COLOURS


@pytest.fixture(scope="module")
def tiny_set() -> FinetuneSet:
    return colour_items([f"Shop {i}" for i in range(8)])


def zero_inside(path: Path, size: int) -> None:
    """Overwrite ``size`` bytes in the middle of a file with zeros, in place (the file keeps its length)."""
    with path.open("r+b") as handle:
        handle.seek(path.stat().st_size // 2 - size // 2)
        handle.write(b"\0" * size)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


# --- stored models (fine-tuned rerankers, second-round teachers: both go through the model store) ---


@pytest.mark.parametrize("damage", ["zeroed", "truncated", "planted"])
def test_a_damaged_stored_model_is_set_aside_and_trained_again(
    damage: str, tiny_model_dir: Path, tiny_set: FinetuneSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reranker = FinetunedBiEncoder(str(tiny_model_dir), **FAST)
    fit = reranker.fit(tiny_set, tmp_path, seed=0)
    expected = reranker.score(TEXTS[0], COLOURS)
    weights = fit.model_path / "model.safetensors"
    if damage == "zeroed":
        zero_inside(weights, 1 << 20)
    elif damage == "truncated":
        os.truncate(weights, weights.stat().st_size // 2)
    else:  # a pickle-format weights file planted beside the safetensors
        (fit.model_path / "pytorch_model.bin").write_bytes(b"planted")

    again = FinetunedBiEncoder(str(tiny_model_dir), **FAST)
    with caplog.at_level(logging.WARNING):
        refit = again.fit(tiny_set, tmp_path, seed=0)
    assert not refit.reused and refit.finetune_id == fit.finetune_id
    [warning] = warnings_of(caplog)
    named = "pytorch_model.bin" if damage == "planted" else "model.safetensors"
    assert str(fit.model_path / named) in warning and "training it again" in warning
    assert again.score(TEXTS[0], COLOURS) == pytest.approx(expected, abs=1e-6)
    [aside] = tmp_path.glob(f".{fit.finetune_id}.damaged-*")  # kept, not deleted
    assert (aside / named).is_file()
    record = json.loads((fit.model_path / COMPLETE_MARKER).read_text())
    assert set(record[DIGESTS_KEY]) >= {"model.safetensors", "config.json"}


def test_an_intact_stored_model_is_reused_after_one_hash_pass(
    tiny_model_dir: Path, tiny_set: FinetuneSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    FinetunedBiEncoder(str(tiny_model_dir), **FAST).fit(tiny_set, tmp_path, seed=0)
    with caplog.at_level(logging.WARNING):
        assert FinetunedBiEncoder(str(tiny_model_dir), **FAST).fit(tiny_set, tmp_path, seed=0).reused
    assert warnings_of(caplog) == []


@pytest.mark.slow
def test_a_damaged_second_round_teacher_is_trained_again_and_mines_the_same_set(
    make_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from experiments import app

    overrides = ("miner=second_round", "reranker.select_epochs=false", "trackers=none", "log_model=false")
    first = app.run(make_cfg(*overrides, reranker="bi_encoder_finetuned"), tmp_path / "outputs" / "runs" / "a")
    assert first.fit is not None
    models = tmp_path / "outputs" / "cache" / "models"
    [teacher] = [path for path in models.glob("ft-*") if path.name != first.fit.finetune_id]
    zero_inside(teacher / "model.safetensors", 1 << 20)
    with caplog.at_level(logging.WARNING):
        second = app.run(make_cfg(*overrides, reranker="bi_encoder_finetuned"), tmp_path / "outputs" / "runs" / "b")
    assert second.finetune_set.digest() == first.finetune_set.digest()  # the same teacher, so the same set
    assert any(str(teacher / "model.safetensors") in warning for warning in warnings_of(caplog))
    assert second.fit is not None and second.fit.reused  # the run's own model was intact


def test_a_truncated_model_the_user_points_at_is_one_line_naming_the_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    weights = model / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    overrides = [arg for arg in shrunk(tmp_path, tiny_model_dir) if not arg.startswith("embedder.model=")]
    completed = run_cli(*overrides, f"embedder.model={model}", "reranker=none", "trackers=none")
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    assert (
        completed.stderr.strip().splitlines()[-1].startswith(f"error: {weights}: the model's weights cannot be read (")
    )


@pytest.mark.slow
def test_an_edited_epoch_choice_is_made_again(make_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from experiments import app

    overrides = ("trackers=none", "log_model=false", "reranker.select_epochs=true", "reranker.epochs=2")
    first = app.run(make_cfg(*overrides, reranker="bi_encoder_finetuned"), tmp_path / "outputs" / "runs" / "a")
    assert first.fit is not None
    [cached] = (tmp_path / "outputs" / "cache" / "models").glob("selection-*.json")
    record = json.loads(cached.read_text())
    record["epochs"] = 3 - record["epochs"]  # the other choice, in valid JSON
    cached.write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING):
        second = app.run(make_cfg(*overrides, reranker="bi_encoder_finetuned"), tmp_path / "outputs" / "runs" / "b")
    assert second.fit is not None and not second.fit.selection.reused
    assert second.fit.selection.epochs == first.fit.selection.epochs
    assert any(str(cached) in warning and "choosing the epochs again" in warning for warning in warnings_of(caplog))


# --- ONNX exports, keyed by the weights they were exported from ---


def test_another_models_onnx_under_the_expected_name_is_exported_again(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("EXPERIMENTS_ONNX_CACHE", str(tmp_path / "fallback"))
    mine = Path(shutil.copytree(tiny_model_dir, tmp_path / "mine"))
    other_model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    with torch.no_grad():
        for parameter in other_model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    other = tmp_path / "other"
    other_model.save(str(other))

    def scores(backend: str, folder: Path) -> np.ndarray:
        reranker = FinetunedBiEncoder(base_model=str(folder), backend=backend, device="cpu")
        return np.array(reranker.score_many(TEXTS[:4], [COLOURS] * 4))

    expected = scores("torch", mine)
    assert np.abs(scores("onnx", mine) - expected).max() <= 1e-5
    assert np.abs(scores("onnx", other) - expected).max() > 1e-3  # the other model scores differently
    [my_export] = (mine / "onnx").glob("model-*.onnx")
    [other_export] = (other / "onnx").glob("model-*.onnx")
    shutil.copyfile(other_export, my_export)  # a valid ONNX of another model, under the expected name
    with caplog.at_level(logging.WARNING):
        assert np.abs(scores("onnx", mine) - expected).max() <= 1e-5
    assert any(str(my_export) in warning and "exporting it again" in warning for warning in warnings_of(caplog))

    # Its record copied along too: the record names the other weights, so it is refused as well.
    shutil.copyfile(other_export, my_export)
    shutil.copyfile(other_export.with_name(other_export.name + ".json"), my_export.with_name(my_export.name + ".json"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert np.abs(scores("onnx", mine) - expected).max() <= 1e-5
    assert any("exported from other weights" in warning for warning in warnings_of(caplog))
    assert len(list((mine / "onnx").glob(".model-*.onnx.damaged-*"))) == 2  # set aside, not deleted


# --- cached vectors ---


def embedder(model: Path, cache_dir: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(str(model), device="cpu", cache_dir=str(cache_dir), progress=False)


def test_zeroed_cached_vectors_are_computed_again(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = embedder(tiny_model_dir, tmp_path).encode(TEXTS)
    with sqlite3.connect(tmp_path / "embeddings.sqlite") as connection:  # every stored vector zeroed
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            connection.execute(f"UPDATE {table} SET vector = zeroblob(length(vector))")
    with caplog.at_level(logging.WARNING):
        again = embedder(tiny_model_dir, tmp_path).encode(TEXTS)
    np.testing.assert_allclose(again, expected, atol=1e-6)
    [warning] = warnings_of(caplog)
    assert str(tmp_path / "embeddings.sqlite") in warning and f"{len(TEXTS)} cached vectors fail" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # written back: the next read finds them intact
        np.testing.assert_allclose(embedder(tiny_model_dir, tmp_path).encode(TEXTS), expected, atol=1e-6)
    assert warnings_of(caplog) == []


def test_a_garbage_cache_file_is_set_aside_and_started_again(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = embedder(tiny_model_dir, tmp_path / "clean").encode(TEXTS)
    (tmp_path / "embeddings.sqlite").write_bytes(b"not a database at all " * 200)
    with caplog.at_level(logging.WARNING):
        np.testing.assert_allclose(embedder(tiny_model_dir, tmp_path).encode(TEXTS), expected, atol=1e-6)
    [warning] = warnings_of(caplog)
    assert str(tmp_path / "embeddings.sqlite") in warning and "not a readable SQLite cache" in warning
    [aside] = tmp_path.glob(".embeddings.sqlite.damaged-*")
    assert aside.read_bytes().startswith(b"not a database")  # kept for the user, not deleted
    with sqlite3.connect(tmp_path / "embeddings.sqlite") as connection:  # the new cache holds the vectors
        assert connection.execute("SELECT count(*) FROM entries").fetchone()[0] == len(TEXTS)


HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(120)
"""


def test_a_cache_another_process_keeps_locked_is_done_without(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    expected = embedder(tiny_model_dir, tmp_path).encode(TEXTS)
    monkeypatch.setattr(cache_module, "LOCK_TIMEOUT_S", 1.0, raising=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "embeddings.sqlite")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        with caplog.at_level(logging.WARNING):
            vectors = embedder(tiny_model_dir, tmp_path).encode(TEXTS)
            embedder(tiny_model_dir, tmp_path).encode(TEXTS[:2])  # found locked once: not waited for again
        assert time.perf_counter() - started < 20
    finally:
        holder.kill()
        holder.wait()
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    [warning] = warnings_of(caplog)
    assert str(tmp_path / "embeddings.sqlite") in warning and "locked by another process" in warning


# --- the LanceDB table of the categories ---


def test_another_lancedb_table_under_the_expected_name_is_written_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from experiments.records import Category
    from experiments.retrieval.lancedb import LanceDBRetriever

    rng = np.random.default_rng(0)
    categories = [Category(name=f"c{i}", description="") for i in range(12)]
    mine, other = (rng.normal(size=(12, 8)).astype(np.float32) for _ in range(2))
    query = rng.normal(size=8).astype(np.float32)

    def retriever(folder: Path, vectors: np.ndarray) -> LanceDBRetriever:
        built = LanceDBRetriever(str(folder), top_k=3, search_above=0)
        built.build(categories, vectors, model_key="test")
        return built

    expected = retriever(tmp_path / "mine", mine).search(query)
    with caplog.at_level(logging.WARNING):
        assert retriever(tmp_path / "mine", mine).search(query) == expected  # reused as it is
    assert warnings_of(caplog) == []
    retriever(tmp_path / "other", other)
    [my_table] = (tmp_path / "mine").glob("*.lance")
    [other_table] = (tmp_path / "other").glob("*.lance")
    shutil.rmtree(my_table)
    shutil.copytree(other_table, my_table)  # another table's rows under the expected name
    with caplog.at_level(logging.WARNING):
        assert retriever(tmp_path / "mine", mine).search(query) == expected
    [warning] = warnings_of(caplog)
    assert str(my_table) in warning and "writing it again" in warning
