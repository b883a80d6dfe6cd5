"""Experiment framework for fine-tuning rerankers."""

__version__ = "0.1.0"
