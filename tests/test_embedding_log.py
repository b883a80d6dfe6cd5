"""The embedder's log line counts distinct texts: a repeated text is neither a cache hit nor new work."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from experiments.embedders.sentence_transformer import SentenceTransformerEmbedder

LOGGER = "experiments.embedders.sentence_transformer"


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


def test_repeats_are_not_counted_as_cache_hits(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = SentenceTransformerEmbedder(str(tiny_model_dir), device="cpu", cache_dir=str(tmp_path), progress=False)
    texts = ["Team Meals", "Airfare", "Team Meals", "Lodging", "Airfare", "Team Meals"]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        embedder.encode(texts)  # a fresh cache: nothing is cached, 3 distinct texts are new
        embedder.encode([*texts, "Software"])  # the 3 are cached now; one new text
    assert logged(caplog) == [
        "embedding 6 texts (3 distinct: 0 cached, 3 new)",
        "embedding 7 texts (4 distinct: 3 cached, 1 new)",
    ]
