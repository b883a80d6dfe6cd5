"""examples/quickstart.ipynb runs headless on tiny settings: one experiment through the API, a sweep, the report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_quickstart_notebook_runs_headless(tmp_path, tiny_model_dir, small_data, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    tiny = [
        f"paths.outputs_dir={tmp_path / 'outputs'}",
        "dataset=jsonl",
        f"dataset.train_path={small_data['train.jsonl']}",
        f"dataset.eval_path={small_data['eval.jsonl']}",
        f"dataset.categories_path={small_data['categories.json']}",
        f"embedder.model={tiny_model_dir}",
        "reranker=none",
        "progress=false",
        "evaluation.bootstrap_resamples=100",
    ]
    monkeypatch.setenv("QUICKSTART_OVERRIDES", json.dumps(tiny))  # the kernel inherits this environment
    monkeypatch.setenv("EXPERIMENTS_ROOT", str(ROOT))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    notebook = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "examples")}}
    )
    client.execute(env={**os.environ})
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.get("output_type") == "error"]
    text = "".join(output.get("text", "") for output in outputs)
    assert "mrr@1" in text and "model: models:/" in text
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert images  # the report's plots, inline
    markdown = [output["data"]["text/markdown"] for output in outputs if "text/markdown" in output.get("data", {})]
    assert any("**Winner:" in block for block in markdown)
    assert list((tmp_path / "outputs" / "multirun").glob("quickstart-*/report.json"))
