"""An exact ONNX Runtime path for a sentence-transformers model (``backend: onnx``).

The whole sentence-transformers module stack (transformer, pooling, normalisation, any traceable head) is exported
once with ``torch.onnx.export`` (the TorchScript exporter, opset 17), so pooling and normalisation are the model's
own modules, not a copy of them. Texts are tokenized by the model's own ``preprocess`` (its tokenizer, its
``max_seq_length``), batched by length as ``SentenceTransformer.encode`` does, and the output is L2-normalised.
Against torch the embeddings differ by about 2e-7 (max abs) on all-MiniLM-L6-v2.

The export is cached by the weights digest (and the module stack, the exporter and its opset) in an ``onnx/``
folder inside the model folder, beside a record of that key and of the export's own SHA-256
(``model-<key>.onnx.json``), checked before every use: a file damaged on disk, or another model's export copied
under the expected name, is set aside with one warning and exported again. For a fine-tuned model that folder is
beside its weights in the model store, so the served model's package carries it and never exports. A model whose
folder cannot be written (the packaged MiniLM inside site-packages) is exported into ``$EXPERIMENTS_ONNX_CACHE``
or ``~/.cache/experiments/onnx``. A model that cannot be exported (a custom module the tracer cannot follow) returns
None with one log line, and the caller keeps torch.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from experiments.files import write_atomic
from experiments.models import file_sha256, weights_sha256
from experiments.records import sha256_json
from experiments.store import set_aside
from experiments.threads import SpinGate

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

OPSET = 17
#: Bumped when the exported graph changes for the same weights (invalidates cached exports).
EXPORT_FORMAT = 1
#: The tokenizer outputs a transformer may take, in the order the graph takes them.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
BACKENDS = ("torch", "onnx")


def check_backend(owner: str, backend: str) -> str:
    """``backend`` when it is one of ``BACKENDS``.

    Raises:
        ConfigError: an unknown backend, with the option's name and the choices.
    """
    from experiments.errors import ConfigError

    if backend not in BACKENDS:
        raise ConfigError(
            f"{owner}: backend={backend!r} must be one of {', '.join(BACKENDS)} (e.g. {owner}.backend=onnx)."
        )
    return backend


def export_key(model: SentenceTransformer, folder: Path) -> str | None:
    """What an export depends on: the weights digest, the module stack, torch and the opset. None: no weights."""
    import torch

    digest = weights_sha256(folder)
    if digest is None:
        return None
    modules = [f"{type(module).__module__}.{type(module).__qualname__}" for module in model]
    configs: list[object] = [getattr(module, "get_config_dict", dict)() for module in model]
    payload = {"weights": digest, "modules": modules, "configs": configs, "torch": torch.__version__}
    return sha256_json({**payload, "opset": OPSET, "format": EXPORT_FORMAT})[:32]


def cache_folders(folder: Path) -> list[Path]:
    """Where an export of the model in ``folder`` may live, in the order they are tried."""
    fallback = os.environ.get("EXPERIMENTS_ONNX_CACHE") or str(Path.home() / ".cache" / "experiments" / "onnx")
    return [folder / "onnx", Path(fallback)]


def record_path(target: Path) -> Path:
    """The record beside an export: the key it was exported under and its SHA-256."""
    return target.with_name(target.name + ".json")


def export_problem(target: Path, key: str) -> str | None:
    """Why the export at ``target`` cannot be used for ``key`` (no record, another key, other bytes), or None."""
    try:
        record = json.loads(record_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{record_path(target)} is missing or unreadable"
    if not isinstance(record, dict) or record.get("key") != key:
        return f"{target} was exported from other weights than the model's"
    if record.get("sha256") != file_sha256(target):
        return f"{target} does not match the SHA-256 recorded when it was exported"
    return None


def _export(model: SentenceTransformer, names: Sequence[str], target: Path, key: str) -> None:
    """Trace ``model`` (eval mode, CPU) into an ONNX file at ``target``, written atomically, with its record."""
    import torch

    class Sentence(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, tensors, strict=True)))["sentence_embedding"]

    sample = model.preprocess(["an example to trace", "a second, longer example to trace with padding"])
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "tokens"} for name in names}
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.tmp-")
    os.close(handle)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape checks that are constant for this graph
            torch.onnx.export(
                Sentence().eval(),
                tuple(sample[name] for name in names),
                partial,
                input_names=list(names),
                output_names=["sentence_embedding"],
                dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        # The record first: an export without its record is exported again, never used unchecked.
        write_atomic(record_path(target), json.dumps({"key": key, "sha256": file_sha256(Path(partial))}), unique=True)
        os.replace(partial, target)  # a parallel export of the same model writes the same graph
    finally:
        Path(partial).unlink(missing_ok=True)


class OnnxEncoder:
    """Embeds texts with an ONNX Runtime session of a sentence-transformers model's exported module stack.

    Args:
        model: the loaded sentence-transformers model (its tokenizer and ``max_seq_length`` are used).
        path: the exported graph.
        names: the tokenizer outputs the graph takes, in order.
        threads: ONNX Runtime intra-op threads.
    """

    def __init__(self, model: SentenceTransformer, path: Path, names: Sequence[str], threads: int) -> None:
        self.model = model
        self.names = list(names)
        self.path = path
        self.threads = threads
        # Spinning workers answer sooner on idle cores and later beside a busy process: asked before each call
        # (experiments.threads.SpinGate); the two sessions give the same numbers, only the waiting differs.
        self.gate = SpinGate(threads)
        self._sessions: dict[bool, Any] = {}
        # Load the graph now (a model ONNX Runtime cannot run falls back to torch at once), in the session the
        # machine calls for: the other one (as much memory again) is made only if the answer changes later.
        self.session(self.gate.spin())

    def session(self, spin: bool) -> Any:
        """The ONNX Runtime session whose idle workers spin (``spin``) or sleep, created on first use."""
        if spin not in self._sessions:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
            self._sessions[spin] = onnxruntime.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        return self._sessions[spin]

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 embeddings of ``texts`` (rows aligned with them)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        # Sorted by length, as SentenceTransformer.encode batches: less padding, the same vectors.
        order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
        rows: list[np.ndarray] = []
        for start in range(0, len(order), batch_size):
            batch = [texts[index] for index in order[start : start + batch_size]]
            features = self.model.preprocess(batch)
            inputs = {name: _numpy(features[name]) for name in self.names}
            session = self.session(self.gate.spin())
            rows.append(np.asarray(session.run(None, inputs)[0], dtype=np.float32))
        vectors = np.empty((len(texts), rows[0].shape[1]), dtype=np.float32)
        vectors[order] = np.concatenate(rows)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def _numpy(value: Any) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def onnx_encoder(model: SentenceTransformer, folder: str | Path, threads: int) -> OnnxEncoder | None:
    """An ONNX Runtime encoder for ``model`` loaded from ``folder``, exported on first use and cached.

    Returns None, after one log line, when the model is not on the CPU, has no weights file to key the export
    by, or cannot be exported or loaded (a custom module): the caller scores with torch.
    """
    if str(model.device) != "cpu":
        log.info("backend=onnx runs on the CPU; the model is on %s, so it keeps torch", model.device)
        return None
    sample = model.preprocess(["probe"])
    names = [name for name in TOKEN_INPUTS if name in sample]
    key = export_key(model, Path(folder))
    if key is None:
        log.info("backend=onnx: %s has no weights file to key an export by; scoring with torch", folder)
        return None
    try:
        found = [base / f"model-{key}.onnx" for base in cache_folders(Path(folder))]
        path = next((candidate for candidate in found if _usable(candidate, key)), None)
        if path is None:
            path = _export_somewhere(model, names, found, key)
        return OnnxEncoder(model, path, names, threads)
    except Exception as error:  # any export or load failure falls back to the exact torch path
        log.warning("backend=onnx: %s cannot run in ONNX Runtime (%s); scoring with torch", folder, _first_line(error))
        return None


def _usable(target: Path, key: str) -> bool:
    """Whether an export exists at ``target`` and matches its record; a damaged or foreign one is set aside."""
    if not target.is_file():
        return False
    problem = export_problem(target, key)
    if problem is None:
        return True
    try:
        aside = set_aside(target)
    except OSError:  # a read-only folder (an installed model): the export goes to the next folder
        aside = None
    kept = f" (kept as {aside.name})" if aside else ""
    log.warning("backend=onnx: %s; exporting it again%s", problem, kept)
    return False


def _export_somewhere(model: SentenceTransformer, names: Sequence[str], targets: Sequence[Path], key: str) -> Path:
    """Export into the first of ``targets`` whose folder can be written."""
    failure: OSError | None = None
    for target in targets:
        try:
            _export(model, names, target, key)
            log.info("exported %s for ONNX Runtime", target)
            return target
        except OSError as error:  # a read-only model folder: try the next place
            failure = error
    raise failure or OSError("no folder to export into")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
