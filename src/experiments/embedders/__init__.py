"""Embedders (``embedder=`` group): text → L2-normalised vectors, cached on disk."""
