"""The training recipe every fine-tuned reranker follows, with small hooks per model kind.

Recipe (sentence-transformers' order): base model → rows from the fine-tuning items → loss → training
arguments → trainer → train → save under the fine-tune id, with a JSON record of what happened. The fine-tune
id hashes the set, the base weights and the training arguments; the model store (``experiments.store``) trains
once per id and renames the finished folder into place, so a rerun reuses it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from experiments.errors import ConfigError
from experiments.files import write_atomic
from experiments.models import cache_identity, model_identity, pick_device, quiet_loading, resolve_model
from experiments.records import FinetuneItem, FinetuneSet, sha256_json
from experiments.records.run import Selection
from experiments.rerankers.base import FitContext, FitProgress, FitResult, FitStage, ModelReranker, make_finetune_id
from experiments.rerankers.selection import CRITERION, best, quality
from experiments.store import build_once, set_aside

if TYPE_CHECKING:
    import numpy as np
    from datasets import Dataset
    from torch import nn

#: Called after each training epoch with the model being trained and the epoch reached.
EpochHook = Callable[[Any, float], None]
#: Called with ``(optimiser step, training loss)`` each time the trainer logs the loss.
LossHook = Callable[[int, float], None]

ModelT = TypeVar("ModelT")

log = logging.getLogger(__name__)

#: How often the training loss is logged (kept in the fit record as a loss curve), as transformers' ``logging_steps``:
#: below 1, a share of the run's optimiser steps, rounded up. 0.01: every step of a run of up to 100 steps (a short
#: run still draws a curve), about 100 points, each the mean loss since the last, however long the run.
LOSS_LOG_STEPS = 0.01
#: The key under which a cached epoch choice records the digest of the rest of its content.
DIGEST = "sha256"


def check_positive(owner: object, knob: str, value: float) -> None:
    """Raise a ``ConfigError`` naming the class when a knob that must be positive is not."""
    if not value > 0:
        raise ConfigError(f"{type(owner).__name__}: {knob}={value} must be greater than 0.")


def mnrl_rows(items: Sequence[FinetuneItem]) -> dict[str, list[str]]:
    """n-tuple rows ``(query, positive, negative_1, ..., negative_n)``: one per relevant passage of each item.

    Dataset columns must be rectangular, so ``n`` is the smallest negative count in the set (the miners give
    every item exactly ``k``); extra negatives of longer items are dropped.
    """
    n = min(len(item.hard_negatives) for item in items)
    rows: dict[str, list[str]] = {"query": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(n)}}
    for item in items:
        for passage in item.relevant_passages:
            rows["query"].append(item.query)
            rows["positive"].append(passage)
            for i, negative in enumerate(item.hard_negatives[:n]):
                rows[f"negative_{i + 1}"].append(negative)
    return rows


def trainer_kwargs(
    output_dir: Path, epochs: float, learning_rate: float, batch_size: int, warmup_ratio: float, seed: int
) -> dict[str, Any]:
    """Training arguments shared by every fine-tune: seeded data order, no checkpoints, reporting or hub."""
    return {
        # transformers 5 takes a ratio as a float ``warmup_steps`` (``warmup_ratio`` is deprecated).
        "warmup_steps": warmup_ratio,
        "output_dir": str(output_dir),
        "num_train_epochs": epochs,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "seed": seed,
        "data_seed": seed,
        "save_strategy": "no",
        "logging_strategy": "steps",
        "logging_steps": LOSS_LOG_STEPS,
        "report_to": "none",
        "push_to_hub": False,
        "dataloader_num_workers": 0,
    }


def without_model_card(trainer_class: Any) -> Any:
    """A subclass of a sentence-transformers trainer that skips model-card bookkeeping.

    The stock trainer samples widget examples and dataset statistics for a README we never write (models are
    saved with ``create_model_card=False``), which costs time and prints a progress bar.
    """

    class Trainer(trainer_class):
        def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
            return None

    Trainer.__name__ = trainer_class.__name__
    return Trainer


def run_trainer(trainer: Any, on_epoch: EpochHook | None = None, on_loss: LossHook | None = None) -> Any:
    """``trainer.train()`` without per-log console lines (the progress bar follows the arguments).

    The loss is still logged every ``LOSS_LOG_STEPS`` steps into the trainer's state, for the loss curve, and
    handed to ``on_loss(step, loss)`` as it is logged. ``on_epoch(model, epoch)`` runs after every epoch (in eval
    mode, without gradients), for validation.
    """
    import torch
    from transformers import PrinterCallback, ProgressCallback, TrainerCallback

    class QuietProgress(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            return None

    class EpochEnd(TrainerCallback):
        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            assert on_epoch is not None
            model = trainer.model
            model.eval()
            with torch.no_grad():
                on_epoch(model, round(float(state.epoch), 2))
            model.train()

    class LossLogged(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if on_loss is not None and logs and "loss" in logs:
                on_loss(int(state.global_step), float(logs["loss"]))

    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(QuietProgress)
    if on_epoch is not None:
        trainer.add_callback(EpochEnd)
    if on_loss is not None:
        trainer.add_callback(LossLogged)
    return trainer.train()


def read_selection(path: Path) -> dict[str, Any] | None:
    """A cached epoch choice whose recorded digest matches its content; None when there is none to reuse.

    A file that does not parse or does not match its digest (edited, damaged, or written by an older version) is
    set aside with one warning, and the choice is made again.
    """
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        content = {key: value for key, value in record.items() if key != DIGEST}
        intact = record.get(DIGEST) == sha256_json(content) and "epochs" in content
    except (ValueError, AttributeError):
        intact = False
    if intact:
        return content
    aside = set_aside(path)
    kept = f" (kept as {aside.name})" if aside else ""
    log.warning("%s does not match the digest recorded with it; choosing the epochs again%s", path, kept)
    return None


def loss_history(trainer: Any) -> list[tuple[int, float]]:
    """``(step, loss)`` pairs the trainer logged during training."""
    return [(int(entry["step"]), float(entry["loss"])) for entry in trainer.state.log_history if "loss" in entry]


class TrainedReranker(ModelReranker[ModelT]):
    """A reranker trained on the fine-tuning set and stored under its fine-tune id.

    The shared knobs (set by each subclass's ``__init__`` and checked by ``_check_schedule``): ``base_model``,
    ``epochs``, ``learning_rate``, ``batch_size``, ``warmup_ratio``, ``max_length``, ``device``, ``progress``,
    ``select_epochs``. A subclass says how to load its kind of model (``_load``), which trainer to use
    (``_trainer_classes``), which rows (``_dataset``) and loss (``_loss``) to train on, how a model in training
    scores the validation queries (``_score_matrix``), and what else changes its weights (``_own_train_args``).

    With ``select_epochs`` and a validation split in the fit context, ``epochs`` is an upper bound: a first
    fine-tune on the train examples outside the validation split scores the validation queries after every
    epoch, the best epoch count is chosen there (fewer on a tie), and the stored model is then trained on all
    of train for that many epochs. The choice is cached next to the models, keyed by what determines it.
    """

    kind: str
    base_model: str
    epochs: float
    learning_rate: float
    batch_size: int
    warmup_ratio: float
    max_length: int
    device: str
    progress: bool
    select_epochs: bool = False
    _model_path: Path | None = None

    @property
    @abstractmethod
    def loss_name(self) -> str:
        """The training loss, for the record."""

    @abstractmethod
    def _trainer_classes(self) -> tuple[Any, Any]:
        """``(trainer class, training-arguments class)`` of sentence-transformers for this kind of model."""

    @abstractmethod
    def _dataset(self, items: Sequence[FinetuneItem]) -> tuple[Dataset, int]:
        """The training rows, and the (query, passage) pairs they hold per epoch."""

    @abstractmethod
    def _loss(self, model: ModelT, items: Sequence[FinetuneItem]) -> nn.Module:
        """The training loss for ``model`` on these items."""

    @abstractmethod
    def _score_matrix(self, model: ModelT, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """``(queries × documents)`` relevance scores from ``model`` as it is now (eval mode, no gradients)."""

    def _own_train_args(self) -> dict[str, object]:
        """What besides the shared knobs changes this kind's trained weights."""
        return {}

    def _arguments_extra(self) -> dict[str, Any]:
        """Training arguments of this kind beyond the shared ones (e.g. a batch sampler)."""
        return {}

    def _record_extra(self, items: Sequence[FinetuneItem]) -> dict[str, Any]:
        """Anything derived from the data that the fit record should keep."""
        return {}

    def _check_schedule(self) -> None:
        for knob in ("epochs", "learning_rate", "batch_size", "max_length"):
            check_positive(self, knob, getattr(self, knob))
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"{self.name}: warmup_ratio={self.warmup_ratio} must be in [0, 1).")

    def chooses_on_validation(self) -> bool:
        return self.select_epochs

    def train_args(self, seed: int, epochs: float | None = None) -> dict[str, object]:
        """Everything besides the data and the base model that changes the trained weights (``epochs`` overrides)."""
        return {
            "kind": self.kind,
            "loss": self.loss_name,
            "epochs": self.epochs if epochs is None else epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "warmup_ratio": self.warmup_ratio,
            "max_length": self.max_length,
            "seed": seed,
            **self._own_train_args(),
        }

    model_arg = "base_model"

    def _model_ref(self) -> str:
        """The trained folder after ``fit`` (rebuilt with it as its base model, it scores the same), else the base."""
        return str(self._model_path) if self._model_path else self.base_model

    def _model_source(self) -> str:
        """The model trained by the last ``fit``, or the base model before any ``fit``."""
        return str(self._model_path) if self._model_path else resolve_model(self.base_model)

    def fit(
        self, finetune_set: FinetuneSet, cache_dir: Path, seed: int, context: FitContext | None = None
    ) -> FitResult:
        """Train on ``finetune_set`` into ``cache_dir/<finetune id>``, or reuse the model stored there.

        With ``select_epochs`` and ``context.validation``, the epoch count is chosen on validation first.
        """
        if not finetune_set.items:
            raise ConfigError(f"{self.name}: the fine-tuning set is empty; there is nothing to train on.")
        identity = model_identity(self.base_model)
        selection = Selection()
        epochs = self.epochs
        progress = context.progress if context is not None else None
        if self.select_epochs and context is not None and context.validation is not None:
            selection = self._select_epochs(context, Path(cache_dir), seed, identity)
            assert selection.epochs is not None
            epochs = selection.epochs
        finetune_id = make_finetune_id(finetune_set, cache_identity(identity), self.train_args(seed, epochs))
        final_dir = Path(cache_dir) / finetune_id
        on_loss = _reporting(progress, "final")
        record, reused = build_once(
            final_dir,
            lambda tmp: self._train(finetune_set.items, identity, tmp, seed, epochs, save=True, on_loss=on_loss),
        )
        self._model_path = final_dir
        self._forget_model()
        extra: dict[str, float | int | str] = {
            "loss": self.loss_name,
            "train_loss": record["train_loss"],
            "steps": record["steps"],
            "epochs": epochs,
            **{key: value for key, value in record.get("extra", {}).items() if value is not None},
        }
        return FitResult(
            finetune_id=finetune_id,
            model_path=final_dir,
            reused=reused,
            train_seconds=0.0 if reused else record["train_seconds"],
            train_pairs=record["train_pairs"],
            extra=extra,
            loss_history=[(int(step), float(loss)) for step, loss in record.get("loss_history", [])],
            selection=selection,
        )

    def _select_epochs(self, context: FitContext, cache_dir: Path, seed: int, identity: dict[str, Any]) -> Selection:
        """Fine-tune on the train examples outside validation, score validation after each epoch, pick the best."""
        validation = context.validation
        assert validation is not None
        by_label = context.selection_documents()
        labels = list(by_label)
        documents = [by_label[label] for label in labels]
        queries = [example.input for example in validation.examples]
        held_out = sha256_json([example.model_dump(mode="json") for example in validation.examples])
        key = make_finetune_id(
            validation.fit_set, cache_identity(identity), {**self.train_args(seed), "validation": held_out}
        )
        path = cache_dir / f"selection-{key}.json"
        cached = read_selection(path)
        if cached is not None:
            return Selection.model_validate({**cached, "reused": True})
        curve: list[list[float]] = []
        progress = context.progress

        def on_epoch(model: Any, epoch: float) -> None:
            curve.append([epoch, *quality(self._score_matrix(model, queries, documents), validation.examples, labels)])
            if progress is not None:
                progress.validation(len(curve), dict(zip(CRITERION, curve[-1][1:], strict=True)))

        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="select-") as tmp:
            self._train(
                validation.fit_set.items, identity, Path(tmp), seed, self.epochs, save=False, on_epoch=on_epoch,
                on_loss=_reporting(progress, "selection"),
            )  # fmt: skip
        chosen = best([(point[0], tuple(point[1:])) for point in curve])
        result = {
            "epochs": int(chosen) if chosen.is_integer() else chosen,
            "max_epochs": self.epochs,
            "criterion": list(CRITERION),
            "curve": curve,
            "fit_items": len(validation.fit_set),
            "validation_queries": len(queries),
            "select_seconds": round(time.perf_counter() - started, 3),
        }
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({**result, DIGEST: sha256_json(result)}, indent=2), unique=True)
        return Selection.model_validate({**result, "reused": False})

    def _train(
        self,
        items: Sequence[FinetuneItem],
        identity: dict[str, Any],
        out_dir: Path,
        seed: int,
        epochs: float,
        save: bool,
        on_epoch: EpochHook | None = None,
        on_loss: LossHook | None = None,
    ) -> dict[str, Any]:
        """Train from the base model at ``identity["path"]`` for ``epochs``; with ``save``, save it into ``out_dir``."""
        from transformers import set_seed

        trainer_class, arguments_class = self._trainer_classes()
        device = pick_device(self.device)
        model = self._load(str(identity["path"]))
        model.train()  # type: ignore[attr-defined]
        set_seed(seed)  # data order, dropout and in-batch draws; a new head is seeded by the loader
        dataset, pairs = self._dataset(items)
        arguments = arguments_class(
            **trainer_kwargs(
                out_dir / "_trainer", epochs, self.learning_rate, self.batch_size, self.warmup_ratio, seed
            ),
            use_cpu=device == "cpu",
            disable_tqdm=not self.progress,
            **self._arguments_extra(),
        )
        loss = self._loss(model, items)
        trainer = without_model_card(trainer_class)(model=model, args=arguments, train_dataset=dataset, loss=loss)
        started = time.perf_counter()
        output = run_trainer(trainer, on_epoch, on_loss)
        seconds = time.perf_counter() - started
        shutil.rmtree(out_dir / "_trainer", ignore_errors=True)
        if save:
            with quiet_loading():
                model.save(str(out_dir), create_model_card=False)  # type: ignore[attr-defined]
        return {
            "base_model": identity,
            "train_args": self.train_args(seed, epochs),
            "train_seconds": round(seconds, 3),
            "train_pairs": pairs,
            "train_loss": float(output.training_loss),
            "steps": int(output.global_step),
            "loss_history": loss_history(trainer),
            "extra": self._record_extra(items),
        }


def _reporting(progress: FitProgress | None, stage: FitStage) -> LossHook | None:
    """The loss hook that hands each logged loss of the ``stage`` fine-tune to ``progress`` (None: no hook)."""
    if progress is None:
        return None
    return lambda step, loss: progress.training_loss(step, loss, stage)
