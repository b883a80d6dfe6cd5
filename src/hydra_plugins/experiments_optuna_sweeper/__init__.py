"""``hydra/sweeper=experiments_optuna``: a Hydra sweeper on Optuna's ask-and-tell API (``hparams_search=optuna``)."""
