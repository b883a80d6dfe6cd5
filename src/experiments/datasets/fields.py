"""The length rule for text fields: each is cut to ``MAX_FIELD_CHARS`` characters before anything tokenizes it.

The rerankers read at most ``max_length`` tokens (128 by default) of a text, and a token of their vocabularies
covers a handful of characters, so no field of a real transaction comes near the limit: those rows are ranked on
exactly the same text as before. A field of megabytes (a hostile request, a corrupt export) would otherwise be
tokenized whole (seconds of CPU, gigabytes of memory) only to be truncated to the same window afterwards. The rule
is applied wherever a text enters the product — data files (training and evaluation), ``suggest`` and the served
model — so all three rank the same text.
"""

from __future__ import annotations

#: Characters kept of each text field (an example's ``input``, each transaction field); the rest is dropped.
MAX_FIELD_CHARS = 1000


def clip(text: str) -> str:
    """``text`` cut to its first ``MAX_FIELD_CHARS`` characters (unchanged when shorter)."""
    return text[:MAX_FIELD_CHARS]
