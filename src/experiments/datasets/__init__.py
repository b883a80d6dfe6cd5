"""Datasets: where train examples, eval examples and categories come from (``dataset=`` group)."""
