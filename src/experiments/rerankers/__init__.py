"""Rerankers (``reranker=`` group): optionally trained on the fine-tuning set, then rescoring candidates."""
