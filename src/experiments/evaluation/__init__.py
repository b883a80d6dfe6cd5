"""Retrieval metrics, bootstrap intervals and the evaluation loop."""
