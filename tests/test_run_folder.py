"""Typed run folder records: an earlier release's folder reads, the docs match the model, bad files are one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from experiments import run_folder
from experiments.errors import UserError
from experiments.files import write_atomic
from experiments.records.sweep import FailedJob, SweepRecord
from experiments.run_folder import QueryRecord, RunRecord
from experiments.tracking.base import headline_metrics, run_metrics

ROOT = Path(__file__).resolve().parents[1]

#: metrics.json and per_query.jsonl exactly as release 0.1 wrote them (a tiny run: select_epochs, replicates=2).
RELEASE_0_1 = Path(__file__).parent / "data" / "run-folder-0.1"
DOC = Path(__file__).resolve().parents[1] / "docs" / "run-folder.md"


def test_a_folder_written_by_the_last_release_reads_and_writes_back_byte_for_byte(tmp_path):
    record = run_folder.read(RELEASE_0_1)
    assert record.finetune_id == "ft-7c60fcc68b8b5d81"
    assert record.fit is not None and record.fit.details["loss"] == "mnrl"
    assert record.validation is not None and record.validation.chosen == 1
    assert record.replicates is not None and record.replicates.seeds == [42, 43]
    assert record.replicates.stat("mrr@5").values == [0.006666666666666667, 0.021666666666666667]
    assert record.reranked("mrr@5") == pytest.approx(0.006666666666666667)
    assert record.to_json() == (RELEASE_0_1 / "metrics.json").read_text("utf-8")
    queries = run_folder.read_queries(RELEASE_0_1)
    assert len(queries) == record.dataset.eval == record.metrics.n_queries
    run_folder.write(tmp_path, record, queries, "table")
    for name in ("metrics.json", "per_query.jsonl"):
        assert (tmp_path / name).read_bytes() == (RELEASE_0_1 / name).read_bytes()


def test_tracked_metrics_come_from_the_record():
    record = run_folder.read(RELEASE_0_1)
    metrics = run_metrics(record)
    assert metrics["train_seconds"] == record.fit.train_seconds  # type: ignore[union-attr]
    assert metrics["replicates_mrr_at_5_sd"] == record.replicates.stat("mrr@5").sd  # type: ignore[union-attr]
    assert metrics["delta_recall_at_5_ci_low"] == record.metrics.delta["recall@5"].ci_low
    assert metrics["latency_rerank_p50_ms"] == record.metrics.latency_ms["rerank_p50"]
    headline = headline_metrics(record)
    assert set(metrics) - set(headline) == {"train_seconds"} | {
        f"replicates_{name}_{stat}"
        for name in ("recall_at_1", "recall_at_3", "recall_at_5", "mrr_at_1", "mrr_at_3", "mrr_at_5")
        for stat in ("mean", "sd")
    }
    # 6 metrics x (mean, ci_low, ci_high) x (baseline, reranker, delta), latency p50/p95, and the validation
    # scores the record holds (the search objective, validation_mrr_at_1, among them)
    validation = {f"validation_{name.replace('@', '_at_')}" for name in record.validation.reranker}  # type: ignore[union-attr]
    assert "validation_mrr_at_1" in validation and validation <= set(headline)
    assert len(headline) == 3 * 6 * 3 + 2 + len(validation)


def _documented_example() -> dict:
    text = DOC.read_text("utf-8")
    block = re.search(r"### `metrics.json`\s+```json\n(.*?)```", text, re.S)
    assert block, "docs/run-folder.md lost its metrics.json example"
    return json.loads(block.group(1))


def _without_ellipses(value: object) -> object:
    """The documented example abbreviates with ``"...": "..."``: drop those keys."""
    if isinstance(value, dict):
        return {key: _without_ellipses(item) for key, item in value.items() if key != "..."}
    if isinstance(value, list):
        return [_without_ellipses(item) for item in value]
    return value


def test_the_documented_metrics_json_example_is_a_valid_record():
    RunRecord.model_validate(_without_ellipses(_documented_example()))


def _fields(model: type[BaseModel], seen: frozenset[type] = frozenset()) -> set[str]:
    """Every field name of ``model`` and of the records nested in it (a record nested in itself counted once)."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for inner in getattr(info.annotation, "__args__", ()) or (info.annotation,):
            for candidate in (inner, *getattr(inner, "__args__", ())):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel) and candidate not in seen | {model}:
                    names |= _fields(candidate, seen | {model})
    return names


@pytest.mark.parametrize("model", [RunRecord, QueryRecord, SweepRecord, FailedJob])
def test_every_field_of_the_records_is_documented(model):
    text = DOC.read_text("utf-8")
    missing = sorted(name for name in _fields(model) if f"`{name}`" not in text and f'"{name}"' not in text)
    assert not missing, f"docs/run-folder.md does not mention {missing}"


def test_a_missing_metrics_json_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(UserError) as error:
        run_folder.read(tmp_path)
    assert str(tmp_path / "metrics.json") in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{not json", "not a valid run record"), ('{"dataset": {}}', "dataset.name"), ("[]", "not a valid run record")],
)
def test_a_corrupt_metrics_json_is_one_line_naming_the_file(tmp_path, text, problem):
    (tmp_path / "metrics.json").write_text(text)
    with pytest.raises(UserError) as error:
        run_folder.read(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'metrics.json'}: ") and problem in message and "\n" not in message


def test_a_corrupt_per_query_row_names_file_and_line(tmp_path):
    good = (RELEASE_0_1 / "per_query.jsonl").read_text("utf-8").splitlines()[0]
    (tmp_path / "per_query.jsonl").write_text(good + "\n" + '{"query": 3}\n')
    with pytest.raises(UserError, match=r"per_query.jsonl:2: "):
        run_folder.read_queries(tmp_path)


def test_write_atomic_leaves_no_partial_file(tmp_path):
    write_atomic(tmp_path / "a.txt", "text")
    write_atomic(tmp_path / "b.bin", b"\x00bytes", unique=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.txt", "b.bin"]
    assert (tmp_path / "b.bin").read_bytes() == b"\x00bytes"


def test_a_write_that_fills_the_disk_names_its_file(tmp_path, monkeypatch):
    """A failed write (not open) carries no file name; write_atomic adds it, so the one-line error says where."""
    import errno
    from pathlib import Path

    from experiments.folders import disk_error

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    target = tmp_path / "cache" / "entry.npz"
    target.parent.mkdir()
    with pytest.raises(OSError) as caught:
        write_atomic(target, b"data")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert list(target.parent.iterdir()) == []
    message = str(disk_error(caught.value, {"paths.outputs_dir": str(tmp_path / "elsewhere")}))
    assert message.startswith(f"cannot write {target}: the disk is full")
    # the option named is the one that owns the folder, a component's own cache_dir included
    folders = {"paths.outputs_dir": str(tmp_path), "miner.cache_dir": str(target.parent)}
    assert str(disk_error(caught.value, folders)).endswith("free space or set miner.cache_dir=<another folder>.")


def test_every_cache_dir_of_the_config_is_a_written_folder():
    from hydra import compose, initialize_config_dir

    from experiments.folders import written_folders

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        config = compose("config", overrides=["paths.outputs_dir=/data/out"])
    folders = written_folders(config)
    assert folders["paths.outputs_dir"] == "/data/out"
    assert folders["miner.cache_dir"] == "/data/out/cache/kmeans"
    assert folders["embedder.cache_dir"] == "/data/out/cache/embeddings"
