"""What a run's categoriser is made of, and the folder it is shipped as (the MLflow model's one artifact).

The served categoriser repeats the evaluation's two stages exactly: embed the query with the run's embedder,
take the ``top_k`` categories by cosine similarity to the vectors the run indexed, rescore those candidates with
the run's reranker and sort (ties keep retrieval order). With ``top_k`` null (the run had no first stage) the
reranker scores every category in catalogue order and the embedder is not run. Everything that needs is in the
folder, so a model works from any folder or machine where the project's dependencies are installed:

```
categoriser.json        format, categories, documents, top_k, finetune_id, query_fields, and how to rebuild both models
category_vectors.npy    (categories, dim) float32: the vectors the run's index held, in category order
embedder/               the embedding model, when it is a local folder (the packaged MiniLM is a reference)
reranker/               the reranker's model folder (the fine-tuned model), when it has one
```
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.errors import UserError
from experiments.models import Portable, model_identity
from experiments.records import Category
from experiments.secrets import scrub

FORMAT = 1
SPEC_FILE = "categoriser.json"
VECTORS_FILE = "category_vectors.npy"
#: The key that marks a constructor argument which is itself a shipped part.
PART = "part"
#: Model folders that the package holds no copy of.
SKIPPED_FILES = shutil.ignore_patterns("_trainer", ".*.tmp-*", ".*.damaged-*", "__pycache__")


@dataclass(frozen=True)
class CategoriserPackage:
    """The parts of one run that rank categories for new queries.

    Attributes:
        categories: the candidate categories, in index order.
        documents: each category's text as embedded and reranked (aligned with ``categories``).
        vectors: ``(len(categories), dim)`` unit-length float32 embeddings of ``documents``: the run's index.
        top_k: candidates kept by the first stage; None = every category, no first stage.
        embedder: how to rebuild the embedder.
        reranker: how to rebuild the reranker, ready to score (a trained one from its fine-tuned folder).
        finetune_id: the trained model's id, or None for rerankers that do not train.
        query_fields: the query lines a transaction row is formatted with (``dataset.query_fields``, as the run's
            examples were); None = all seven.
    """

    categories: list[Category]
    documents: list[str]
    vectors: np.ndarray
    top_k: int | None
    embedder: Portable
    reranker: Portable
    finetune_id: str | None = None
    query_fields: list[str] | None = None

    def write(self, folder: Path) -> None:
        """Write the package into ``folder`` (created; must not exist yet)."""
        folder.mkdir(parents=True)
        spec = {
            "format": FORMAT,
            "categories": [category.model_dump() for category in self.categories],
            "documents": self.documents,
            "top_k": self.top_k,
            "finetune_id": self.finetune_id,
            "query_fields": self.query_fields,
            "embedder": _ship(self.embedder, folder, "embedder"),
            "reranker": _ship(self.reranker, folder, "reranker"),
        }
        np.save(folder / VECTORS_FILE, np.ascontiguousarray(self.vectors, dtype=np.float32))
        (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def _ship(part: Portable, folder: Path, name: str, shipped: dict[Path, str] | None = None) -> dict[str, Any]:
    """Copy the part's model folder into ``folder/name`` (when it has one) and describe how to rebuild it.

    A part made of parts (``reranker=fused``) ships each one as ``{"part": <entry>}`` under ``name-<argument>``;
    a model folder two parts share is copied once.
    """
    shipped = {} if shipped is None else shipped
    kwargs = {
        key: {PART: _ship(value, folder, f"{name}-{key}", shipped)} if isinstance(value, Portable) else value
        for key, value in part.kwargs.items()
    }
    entry = {
        "target": part.target,
        "kwargs": scrub(kwargs),
        "model_arg": part.model_arg,
        "model_dir": None,
        "weights_sha256": part.weights_sha256,
    }
    if part.model_dir is not None:
        source = part.model_dir.resolve()
        if source not in shipped:
            shutil.copytree(source, folder / name, ignore=SKIPPED_FILES, copy_function=_link_or_copy)
            shipped[source] = name
        entry["model_dir"] = shipped[source]
    return entry


def _link_or_copy(source: str, target: str) -> None:
    """A hard link where the file system allows one (the package is a staging folder that MLflow copies from: no
    need to write a fine-tuned model's ~170 MB twice), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def rebuild(entry: dict[str, Any], folder: Path) -> Any:
    """Construct a component described by ``_ship``, pointing it at its copied model folder.

    Raises:
        UserError: the model it refers to is missing, or its weights are not the ones the run used.
    """
    import importlib

    module, _, name = str(entry["target"]).rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    kwargs = {
        key: rebuild(value[PART], folder) if isinstance(value, dict) and set(value) == {PART} else value
        for key, value in entry["kwargs"].items()
    }
    model_arg = entry.get("model_arg")
    if model_arg:
        if entry.get("model_dir"):
            kwargs[model_arg] = str(folder / entry["model_dir"])
        expected = entry.get("weights_sha256")
        found = model_identity(str(kwargs[model_arg]))["weights_sha256"]
        if expected and found != expected:
            raise UserError(
                f"{folder}: the {model_arg} {kwargs[model_arg]!r} has weights with SHA-256 {found}, but the "
                f"categoriser was built with {expected}: install the model the run used."
            )
    return cls(**kwargs)


def read_spec(folder: Path) -> dict[str, Any]:
    """The package's ``categoriser.json``, checked for a format this code reads."""
    path = folder / SPEC_FILE
    if not path.is_file():
        raise UserError(f"{folder}: no {SPEC_FILE}; this is not a categoriser package.")
    try:
        spec: Any = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, or nested past the parser's depth
        problem = "nested too deeply" if isinstance(error, RecursionError) else "not valid JSON"
        raise UserError(f"{path}: {problem}; the package is damaged: download or log the model again.") from None
    if not isinstance(spec, dict):
        raise UserError(f"{path}: not a categoriser spec (a JSON object); download or log the model again.")
    if spec.get("format") != FORMAT:
        raise UserError(f"{path}: format {spec.get('format')!r}; this version reads format {FORMAT}.")
    return spec
