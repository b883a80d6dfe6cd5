"""Peers: what a user would pick instead of this project's recipe, run by the project on its own data.

``python -m experiments.peers [overrides] [--against <run folder>]`` (``make peers ARGS="..."``) runs, on the
train and eval splits, embedder, category documents and seed that ``python run.py <overrides>`` would use:
sentence-transformers' own recipe (``st_recipe``), SetFit (``setfit_peer``, the ``peers`` extra), logistic
regression on frozen embeddings (``logistic_regression``) and the embedding baseline (``embedding_baseline``);
each is one option of ``conf/peers/``. ``compare`` writes one run folder per peer and ``table.md``; docs/peers.md
says what each peer is exactly.
"""
