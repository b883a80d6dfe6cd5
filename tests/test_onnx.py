"""The ONNX Runtime backend of the bi-encoder: exact against torch, exported once, validated, and a fallback."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from experiments import onnx
from experiments.errors import ConfigError
from experiments.rerankers.bi_encoder_finetuned import FinetunedBiEncoder

QUERIES = [
    "Name : Blue Bottle Coffee\nCategory: Restaurants\nDepartment: Engineering\nAmount: 18.5",
    "Name : United Airlines\nCategory: Airlines\nDepartment: Sales\nAmount: 412.0\nTrip Name: Boston offsite",
    "x",
]
DOCUMENTS = ["Team Meals: food for a team", "Airfare: flights", "Software", "Office Supplies: pens, paper", "Travel"]


@pytest.fixture
def model_dir(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> Path:
    """A private copy of the tiny model (its export is written beside it), and an empty fallback cache."""
    monkeypatch.setenv("EXPERIMENTS_ONNX_CACHE", str(tmp_path / "fallback"))
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "tiny"))


def scores(backend: str, model: Path) -> np.ndarray:
    reranker = FinetunedBiEncoder(base_model=str(model), backend=backend, device="cpu")
    return np.array(reranker.score_many(QUERIES, [DOCUMENTS] * len(QUERIES)))


def test_onnx_scores_equal_torch_and_are_exported_once_beside_the_weights(model_dir: Path, monkeypatch) -> None:
    torch_scores = scores("torch", model_dir)
    onnx_scores = scores("onnx", model_dir)
    assert np.abs(onnx_scores - torch_scores).max() <= 1e-5
    assert (np.argsort(-onnx_scores, axis=1) == np.argsort(-torch_scores, axis=1)).all()
    [exported] = (model_dir / "onnx").glob("model-*.onnx")

    def no_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx, "_export", no_export)
    np.testing.assert_allclose(scores("onnx", model_dir), onnx_scores, atol=0)  # the cached graph
    assert list((model_dir / "onnx").glob("model-*.onnx")) == [exported]


def test_onnx_encoder_matches_sentence_transformers_encode(model_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    encoder = onnx.onnx_encoder(model, model_dir, threads=1)
    assert encoder is not None
    texts = QUERIES + DOCUMENTS
    expected = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.abs(encoder.encode(texts, batch_size=3) - expected).max() <= 1e-5


def test_spinning_or_sleeping_workers_give_the_same_embeddings(model_dir: Path, monkeypatch) -> None:
    """The spin gate only chooses how idle threads wait: both sessions give bit-identical vectors."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    encoder = onnx.onnx_encoder(model, model_dir, threads=2)
    assert encoder is not None
    texts = QUERIES + DOCUMENTS
    vectors = {}
    for spin in (True, False):
        monkeypatch.setattr(encoder.gate, "spin", lambda spin=spin: spin)
        vectors[spin] = encoder.encode(texts, batch_size=3)
    assert set(encoder._sessions) == {True, False}
    np.testing.assert_array_equal(vectors[True], vectors[False])


def test_an_encoder_holds_one_session_while_the_answer_holds(model_dir: Path, monkeypatch) -> None:
    from sentence_transformers import SentenceTransformer

    monkeypatch.delenv("EXPERIMENTS_WAIT_POLICY", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the user's: never spin
    encoder = onnx.onnx_encoder(SentenceTransformer(str(model_dir), device="cpu"), model_dir, threads=2)
    assert encoder is not None
    encoder.encode(QUERIES)
    assert set(encoder._sessions) == {False}


def test_a_model_that_cannot_be_exported_scores_with_torch_after_one_log_line(
    model_dir: Path, monkeypatch, caplog
) -> None:
    def unsupported(*args: object) -> None:
        raise RuntimeError("Unsupported: a custom module the tracer cannot follow\nmore detail")

    monkeypatch.setattr(onnx, "_export", unsupported)
    with caplog.at_level(logging.WARNING, logger="experiments.onnx"):
        fallback = scores("onnx", model_dir)
    np.testing.assert_allclose(fallback, scores("torch", model_dir), atol=1e-6)
    [record] = [r for r in caplog.records if r.name == "experiments.onnx"]
    assert "scoring with torch" in record.getMessage() and "\n" not in record.getMessage()


@pytest.mark.parametrize("backend", ["tensorrt", "ONNX", ""])
def test_the_backend_knob_is_validated(backend: str) -> None:
    with pytest.raises(ConfigError, match=r"backend=.*must be one of torch, onnx"):
        FinetunedBiEncoder(backend=backend)


@pytest.mark.slow
def test_onnx_ranks_the_bundled_eval_split_as_torch(minilm_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """The packaged MiniLM on the bundled eval split: every score within 1e-5, every ranking identical."""
    from experiments.datasets.synthetic import SyntheticTransactions

    monkeypatch.setenv("EXPERIMENTS_ONNX_CACHE", str(tmp_path / "onnx"))
    splits = SyntheticTransactions().load()
    queries = [example.input for example in splits.eval]
    documents = [category.document(True) for category in splits.categories]
    rankings = {}
    for backend in ("torch", "onnx"):
        reranker = FinetunedBiEncoder(base_model="packaged:all-MiniLM-L6-v2", backend=backend, device="cpu")
        rankings[backend] = np.array(reranker.score_many(queries, [documents] * len(queries)))
    assert len(queries) == 216
    assert np.abs(rankings["onnx"] - rankings["torch"]).max() <= 1e-5
    assert (np.argsort(-rankings["onnx"], axis=1) == np.argsort(-rankings["torch"], axis=1)).all()
