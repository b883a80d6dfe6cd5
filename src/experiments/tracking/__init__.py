"""Experiment trackers (``tracker=`` group): MLflow by default."""
