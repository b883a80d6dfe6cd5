"""The embedder contract: texts in, L2-normalised vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from experiments.models import Portable


class Embedder(Protocol):
    """Turns texts into ``(len(texts), dim)`` float32 vectors of unit length (cosine = dot product)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in order."""
        ...

    def identity(self) -> dict[str, str | None]:
        """Name, resolved path and weights digest: what a vector depends on, for caching and tracking."""
        ...

    def portable(self) -> Portable | None:
        """How to rebuild this embedder inside a served model (no disk cache); None when it cannot be shipped."""
        ...
