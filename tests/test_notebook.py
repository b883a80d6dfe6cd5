"""examples/quickstart.ipynb runs headless on tiny settings: one experiment through the API, a sweep through the API
(in the kernel's process, no subprocess), the report with the winner's per-step training loss, and no warnings."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_notebook(overrides: list[str]) -> list[dict]:
    """Execute the quickstart with ``overrides`` in place of its settings; the code cells' outputs."""
    import nbformat
    from nbclient import NotebookClient

    os.environ["QUICKSTART_OVERRIDES"] = json.dumps(overrides)  # the kernel inherits this environment
    notebook = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "examples")}}
    )
    client.execute(env={**os.environ})
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


@pytest.mark.slow
def test_the_quickstart_notebook_runs_headless(tmp_path, tiny_model_dir, small_data, monkeypatch):
    from experiments import run_folder

    tiny = [
        f"paths.outputs_dir={tmp_path / 'outputs'}",
        "dataset=jsonl",
        f"dataset.train_path={small_data['train.jsonl']}",
        f"dataset.eval_path={small_data['eval.jsonl']}",
        f"dataset.categories_path={small_data['categories.json']}",
        f"embedder.model={tiny_model_dir}",
        f"reranker.base_model={tiny_model_dir}",
        "debug=fast",
        "progress=true",  # the bars render as widgets (the notebook extra), without tqdm's "IProgress not found"
    ]
    monkeypatch.setenv("EXPERIMENTS_ROOT", str(ROOT))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("QUICKSTART_OVERRIDES", raising=False)
    outputs = run_notebook(tiny)
    assert not [output for output in outputs if output.get("output_type") == "error"]
    text = "".join(output.get("text", "") for output in outputs)
    assert "mrr@1" in text and "model: models:/" in text
    assert "IProgress" not in text and "Warning" not in text, text
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert images  # the report's plots, inline
    markdown = [output["data"]["text/markdown"] for output in outputs if "text/markdown" in output.get("data", {})]
    assert any("**Winner:" in block for block in markdown)
    [report_file] = (tmp_path / "outputs" / "multirun").glob("*/*/report.json")
    report = json.loads(report_file.read_text())
    assert any(Path(plot).name == "winner_loss.png" for plot in report["plots"])
    fit = run_folder.read(Path(report["winner_folder"])).fit
    assert fit is not None and fit.details["steps"] > 1
    steps = list(range(1, fit.details["steps"] + 1))
    assert [step for step, _ in fit.loss_history] == steps  # a curve: the loss at every optimiser step


def test_the_notebook_extra_holds_what_the_notebook_needs_beyond_make_run():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(dependencies: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[ ;]", dependency, maxsplit=1)[0] for dependency in dependencies}

    extra = names(project["optional-dependencies"]["notebook"])
    # A kernel, widgets for tqdm's notebook bars (else "IProgress not found"), the headless runner.
    assert {"ipykernel", "ipywidgets", "nbclient", "nbformat"} <= extra
    assert not extra & names(project["dependencies"])  # make run installs none of them
    assert any("notebook" in dependency for dependency in project["optional-dependencies"]["dev"])  # make test does
    assert '-e ".[notebook]"' in (ROOT / "Makefile").read_text()  # make notebook does
