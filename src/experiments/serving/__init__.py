"""Use a run's winner: the categoriser packaged as an MLflow pyfunc model, ranked from Python, shell or HTTP."""
