"""The winner in use: the logged pyfunc model, `suggest`, `register` and `mlflow models serve` rank as evaluated."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import compose_small, write_small_data

from experiments import app, register, suggest
from experiments.datasets.fields import MAX_FIELD_CHARS, clip
from experiments.pipeline import RunOutcome
from experiments.serving.limits import MAX_ROWS, max_request_bytes
from experiments.serving.mlflow_model import register as register_run
from experiments.serving.mlflow_model import run_model_uri
from experiments.serving.rows import RowError, query_text

#: The documented transaction row (docs/data-formats.md), without its label.
TRANSACTION = {
    "merchant_name": "Blue Bottle Coffee",
    "merchant_category": ["Restaurants", "Coffee Shops"],
    "department": "Engineering",
    "location": "San Francisco, CA",
    "amount": 18.5,
    "spend_program_name": "Team Budget",
}


@dataclass(frozen=True)
class LoggedRun:
    outcome: RunOutcome
    data: dict[str, str]
    tracking_uri: str
    run_id: str
    model_uri: str

    def connect(self) -> None:
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)

    def eval_rows(self) -> list[dict]:
        return [json.loads(line) for line in Path(self.data["eval.jsonl"]).read_text().splitlines()]

    def per_query(self) -> list[dict]:
        return [json.loads(line) for line in (self.outcome.output_dir / "per_query.jsonl").read_text().splitlines()]


def log_run(root: Path, model_dir: Path, reranker: str, *overrides: str) -> LoggedRun:
    import mlflow

    data = write_small_data(root / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        outcome = app.run(compose_small(root / "outputs", model_dir, data, *overrides, reranker=reranker), root / "run")
    uri = f"sqlite:///{root / 'outputs' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    [run] = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    return LoggedRun(outcome, data, uri, run.info.run_id, run_model_uri(run.info.run_id))


@pytest.fixture(scope="module")
def logged(tmp_path_factory, tiny_model_dir) -> Callable[..., LoggedRun]:
    """``logged(reranker, *overrides)``: a tiny run with that reranker, logged to its own MLflow store (once per
    module)."""
    runs: dict[tuple[str, ...], LoggedRun] = {}

    def get(reranker: str = "bi_encoder_finetuned", *overrides: str) -> LoggedRun:
        key = (reranker, *overrides)
        if key not in runs:
            runs[key] = log_run(tmp_path_factory.mktemp(reranker), tiny_model_dir, reranker, *overrides)
        runs[key].connect()
        return runs[key]

    return get


def load(uri: str):
    import mlflow

    return mlflow.pyfunc.load_model(uri)


@pytest.mark.parametrize(
    "reranker",
    [
        "bi_encoder_finetuned",
        pytest.param("cross_encoder_finetuned", marks=pytest.mark.slow),
        "none",
        "label_memory",
        pytest.param("fused", marks=pytest.mark.slow),
    ],
)
def test_logged_model_ranks_the_eval_set_as_the_evaluation_did(logged, reranker):
    run = logged(reranker)
    predicted = load(run.model_uri).predict(pd.DataFrame(run.eval_rows()), params={"top_n": 5})
    per_query = run.per_query()
    assert [list(labels) for labels in predicted["categories"]] == [row["reranked_top"] for row in per_query]
    np.testing.assert_allclose(
        np.array([list(s) for s in predicted["scores"]]), [row["reranked_scores"] for row in per_query], atol=1e-5
    )


def test_numpy_first_stage_returns_lancedb_candidates(logged, tmp_path):
    """With a first stage (search_above=0), every eval query's whole candidate list (top_k of the categories)
    equals LanceDB's cosine search, and the model still ranks as the evaluation did."""
    import mlflow

    from experiments.retrieval.lancedb import LanceDBRetriever
    from experiments.serving.categoriser import Categoriser

    run = logged("bi_encoder_finetuned", "retrieval.search_above=0")
    predicted = load(run.model_uri).predict(pd.DataFrame(run.eval_rows()), params={"top_n": 5})
    assert [list(labels) for labels in predicted["categories"]] == [row["reranked_top"] for row in run.per_query()]
    folder = Path(mlflow.artifacts.download_artifacts(run.model_uri, dst_path=str(tmp_path / "model")))
    categoriser = Categoriser.load(folder / "artifacts" / "categoriser")
    assert categoriser.top_k == 25 < len(categoriser.categories)
    retriever = LanceDBRetriever(uri=str(tmp_path / "lancedb"), top_k=categoriser.top_k, search_above=0)
    retriever.build(categoriser.categories, categoriser.vectors, model_key="test")
    vectors = categoriser.embedder.encode([example.input for example in run.outcome.splits.eval])
    for ours, vector in zip(categoriser.candidates(vectors), vectors, strict=True):
        theirs = retriever.search(vector)
        assert ours.labels == theirs.labels
        np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-5)


def test_a_registered_model_works_without_the_run_outputs(logged, tmp_path):
    """The package carries the models: moving the model cache and the LanceDB folder away changes nothing."""
    import mlflow

    run = logged()
    folder = Path(mlflow.artifacts.download_artifacts(run.model_uri, dst_path=str(tmp_path / "elsewhere")))
    package = folder / "artifacts" / "categoriser"
    assert (package / "reranker" / "model.safetensors").is_file()  # the fine-tuned model
    assert (package / "embedder" / "model.safetensors").is_file()  # a local embedder folder is shipped too
    outputs = Path(run.tracking_uri.removeprefix("sqlite:///")).parent
    stored = list((outputs / "mlartifacts").rglob("model.safetensors"))
    assert stored and all(path.stat().st_nlink == 1 for path in stored)  # copies, never links to the model cache
    # The LanceDB folder exists only when a run searched it (a first stage; not the bundled 31 categories).
    moved = [path for path in (outputs / "cache", outputs / "lancedb") if path.exists()]
    assert outputs / "cache" in moved
    for path in moved:
        path.rename(path.with_name(path.name + ".moved"))
    try:
        predicted = load(str(folder)).predict(pd.DataFrame(run.eval_rows()))
    finally:
        for path in moved:
            path.with_name(path.name + ".moved").rename(path)
    assert [list(labels) for labels in predicted["categories"]] == [row["reranked_top"] for row in run.per_query()]


def test_logged_requirements_are_this_environment_s_so_mlflow_s_check_is_skipped(logged, tmp_path, caplog):
    """The model's pinned requirements are what is installed (MLflow's own check would pass), and that check, which
    costs about 0.75 s of every run, is skipped only while logging."""
    import logging
    from importlib import metadata

    import mlflow
    from mlflow.utils import environment

    from experiments.serving.mlflow_model import REQUIREMENTS, trusted_requirements

    run = logged()
    folder = Path(mlflow.artifacts.download_artifacts(run.model_uri, dst_path=str(tmp_path / "model")))
    pinned = dict(line.split("==") for line in (folder / "requirements.txt").read_text().split() if "==" in line)
    for name in REQUIREMENTS:
        assert pinned[name] == metadata.version(name).split("+")[0]
    check = environment.warn_dependency_requirement_mismatches
    with caplog.at_level(logging.WARNING, logger="mlflow"):
        with trusted_requirements():
            environment.warn_dependency_requirement_mismatches(["numpy==0.0.1"])
        assert "mismatches" not in caplog.text
        assert environment.warn_dependency_requirement_mismatches is check
        environment.warn_dependency_requirement_mismatches(["numpy==0.0.1"])
    assert "numpy" in caplog.text and "mismatches" in caplog.text


def test_model_signature_and_bad_rows(logged):
    import mlflow

    run = logged()
    model = load(run.model_uri)
    signature = model.metadata.get_input_schema().input_names()
    assert {"input", "merchant_name", "merchant_category", "amount", "trip_name"} <= set(signature)
    assert model.metadata.get_params_schema().params[0].name == "top_n"
    text_rows = pd.DataFrame({"input": [example.input for example in run.outcome.splits.eval[:3]]})
    top_two = model.predict(text_rows, params={"top_n": 2})["categories"]
    assert [list(labels) for labels in top_two] == [row["reranked_top"][:2] for row in run.per_query()[:3]]
    mixed = pd.DataFrame([{"input": run.outcome.splits.eval[1].input}, run.eval_rows()[0]])
    assert [list(labels) for labels in model.predict(mixed)["categories"]] == [
        run.per_query()[1]["reranked_top"],
        run.per_query()[0]["reranked_top"],
    ]
    for bad, message in [
        ({"merchant_name": "Uber", "department": "Sales"}, "row 2: merchant_category: Field required"),
        ({**run.eval_rows()[0], "amount": "twelve"}, "row 2: amount: Input should be a valid number"),
        ({"input": ""}, "row 2: input: must be a non-empty string"),
    ]:
        with pytest.raises(mlflow.exceptions.MlflowException, match=message):
            model.predict(pd.DataFrame([run.eval_rows()[0], bad]))


def test_query_text_from_rows():
    transaction = dict(TRANSACTION)
    text = query_text({**transaction, "trip_name": float("nan"), "expense_category": "Team Meals", "id": 3})
    assert text.splitlines()[0] == "Name : Blue Bottle Coffee" and text.endswith("Trip Name: unknown")
    assert query_text({"input": "Name : Uber", "expected": ["Travel"]}) == "Name : Uber"
    assert query_text({**transaction, "merchant_category": np.array(["Restaurants"])}).splitlines()[1] == (
        "Category: Restaurants"
    )
    long_name = "Uber " * 1000  # every text field is cut to MAX_FIELD_CHARS before anything tokenizes it
    assert query_text({**transaction, "merchant_name": long_name}).splitlines()[0] == (
        f"Name : {long_name[:MAX_FIELD_CHARS]}"
    )
    assert query_text({"input": "x" * 5 * MAX_FIELD_CHARS}) == "x" * MAX_FIELD_CHARS
    assert query_text(transaction, ("name", "card")) == "Name : Blue Bottle Coffee\nCard: Team Budget"
    assert query_text({"input": "Name : Uber"}, ("card",)) == "Name : Uber"  # a query text is ranked as is
    for row, message in [
        ({"input": " "}, "input: must be a non-empty string"),
        ({**transaction, "amount": "twelve"}, "amount: Input should be a valid number"),
        ({"merchant_name": "Uber"}, "merchant_category: Field required"),
        ({"expected": ["x"]}, "row: neither a query row"),
        ([1, 2], "row: expected a JSON object, got list"),
    ]:
        with pytest.raises(RowError, match=message):
            query_text(row)


def test_log_model_false_logs_no_model(make_cfg, tmp_path):
    import mlflow

    app.run(make_cfg("log_model=false"), tmp_path / "run")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    [run] = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    assert run.info.status == "FINISHED"
    assert not mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")


def test_register_points_the_champion_alias_at_the_run(logged, capsys, tmp_path):
    import mlflow

    run = logged()
    first = register_run(run.run_id, "categoriser-test")
    champion = mlflow.MlflowClient().get_model_version_by_alias("categoriser-test", "champion")
    assert champion.version == first.version
    register.main([str(run.outcome.output_dir), "--name", "categoriser-test", "--tracking-uri", run.tracking_uri])
    # The same run again: no second version (tests/test_register_idempotent.py), the alias stays on it.
    assert "models:/categoriser-test@champion -> version 1" in capsys.readouterr().out
    assert str(mlflow.MlflowClient().get_model_version_by_alias("categoriser-test", "champion").version) == "1"
    predicted = load("models:/categoriser-test@champion").predict(pd.DataFrame(run.eval_rows()[:5]))
    assert [list(labels) for labels in predicted["categories"]] == [row["reranked_top"] for row in run.per_query()[:5]]
    (tmp_path / "sweep" / "k=2").mkdir(parents=True)
    shutil.copy(run.outcome.output_dir / "metrics.json", tmp_path / "sweep" / "k=2")
    with pytest.raises(SystemExit) as exit_info:
        register.main([str(tmp_path / "sweep"), "--tracking-uri", run.tracking_uri])
    assert exit_info.value.code == 2
    assert "is a sweep folder" in capsys.readouterr().err


def run_suggest(capsys, *args: str) -> tuple[int, str, str]:
    try:
        suggest.main([*args, "--no-progress"])
        code = 0
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_suggest_ranks_a_file_skipping_bad_rows(logged, capsys, tmp_path):
    run = logged()
    lines = Path(run.data["eval.jsonl"]).read_text().splitlines()
    lines.insert(3, '{"merchant_name": "Uber", "department": "Sales"}')
    lines.insert(6, "not json")
    source = tmp_path / "new.jsonl"
    source.write_text("\n".join(lines) + "\n\n")
    code, _, err = run_suggest(capsys, run.run_id, "--input", str(source), "--tracking-uri", run.tracking_uri)
    assert code == 0, err
    assert f"skipped: {source}:4: merchant_category: Field required" in err
    assert f"skipped: {source}:7: not valid JSON (Expecting value at column 1)" in err
    assert "ranked 30 rows" in err and "skipped 2 bad rows" in err
    written = [json.loads(line) for line in (tmp_path / "new.suggestions.jsonl").read_text().splitlines()]
    assert [row["line"] for row in written] == [n for n in range(1, 33) if n not in (4, 7)]
    assert [row["categories"] for row in written] == [row["reranked_top"] for row in run.per_query()]

    strict_out = tmp_path / "strict.jsonl"
    code, _, err = run_suggest(
        capsys, run.run_id, "--input", str(source), "--output", str(strict_out), "--strict", "--tracking-uri",
        run.tracking_uri,
    )  # fmt: skip
    assert code == 2
    assert err.strip() == f"error: {source}:4: merchant_category: Field required (--strict stops at the first bad row)"
    assert not strict_out.exists()


def test_a_run_on_fewer_query_lines_is_served_with_those_lines(logged, capsys, tmp_path):
    """A model trained with dataset.query_fields formats transaction rows as its run formatted its examples: the
    served model, suggest's file and single-row paths all rank as the evaluation did."""
    from experiments.serving.mlflow_model import query_fields

    fields = ("name", "category", "card")
    run = logged("bi_encoder_finetuned", "dataset.query_fields=[name,category,card]")
    model = load(run.model_uri)
    assert query_fields(model) == fields
    rows, per_query = run.eval_rows(), run.per_query()
    assert per_query[0]["query"] == query_text(rows[0], fields)
    predicted = model.predict(pd.DataFrame(rows), params={"top_n": 5})
    assert [list(labels) for labels in predicted["categories"]] == [row["reranked_top"] for row in per_query]
    seven_lines = model.predict(pd.DataFrame([{"input": query_text(row)} for row in rows]), params={"top_n": 5})
    assert list(seven_lines["categories"]) != list(predicted["categories"])  # the layout really differs

    uri = ["--tracking-uri", run.tracking_uri]
    output = tmp_path / "o"
    code, _, err = run_suggest(capsys, run.run_id, "--input", run.data["eval.jsonl"], "--output", str(output), *uri)
    assert code == 0, err
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["categories"] for row in written] == [row["reranked_top"] for row in per_query]
    code, out, err = run_suggest(capsys, run.run_id, "--row", json.dumps(rows[0]), "--json", *uri)
    assert code == 0, err
    assert json.loads(out)["categories"] == per_query[0]["reranked_top"]


def test_suggest_names_a_line_that_is_not_utf8(tmp_path):
    source = tmp_path / "latin1.jsonl"
    source.write_bytes(b'{"input": "fine"}\n{"input": "caf\xe9"}\n')
    with pytest.raises(suggest.DataError) as caught:
        suggest.read_rows(source, strict=False)
    assert str(caught.value) == f"{source}:2: not UTF-8 text (byte 0xe9 at column 15); save the file as UTF-8."


def transaction_flags(row: dict, skip: str = "") -> list[str]:
    fields = ("merchant_name", "department", "location", "amount", "spend_program_name", "trip_name")
    flags = [arg for name in fields if row.get(name) and name != skip for arg in (f"--{name}", str(row[name]))]
    flags += [arg for category in row["merchant_category"] for arg in ("--merchant_category", category)]
    return [flag.replace("_", "-") if flag.startswith("--") else flag for flag in flags]


def test_suggest_one_transaction_by_flags_and_model_references(logged, capsys):
    run = logged()
    first, uri = run.eval_rows()[0], ["--tracking-uri", run.tracking_uri]
    expected = run.per_query()[0]["reranked_top"][:3]
    for reference in (run.run_id, run.outcome.fit.finetune_id, run.model_uri):
        code, out, err = run_suggest(capsys, reference, *transaction_flags(first), "--top-n", "3", *uri)
        assert code == 0, err
        assert [line.split(". ", 1)[1].rsplit("  ", 1)[0] for line in out.splitlines()] == expected
    code, out, _ = run_suggest(capsys, run.run_id, "--row", json.dumps(first), "--json", *uri)
    assert json.loads(out)["categories"] == run.per_query()[0]["reranked_top"]
    code, _, err = run_suggest(capsys, run.run_id, *transaction_flags(first, skip="amount"), *uri)
    assert code == 2 and err.strip() == "error: --amount: Field required"
    for reference, message in [
        ("ft-0000000000000000", "no finished run with fine-tune id ft-0000000000000000"),
        ("0" * 32, f"no MLflow run {'0' * 32}"),
        ("models:/nothing@champion", "cannot load the model models:/nothing@champion"),
        ("nonsense", "'nonsense' is not a model URI"),
    ]:
        code, _, err = run_suggest(capsys, reference, "--query", "x", "--tracking-uri", run.tracking_uri)
        assert code == 2 and err.startswith(f"error: {message}"), err
        assert "Traceback" not in err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(url: str, payload: dict) -> tuple[int, dict]:
    return post_bytes(url, json.dumps(payload).encode())


def post_bytes(url: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, {"message": text.decode(errors="replace")}


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(logged, tmp_path):
    """The real `mlflow models serve` on 127.0.0.1 ranks over HTTP as the pyfunc model and the evaluation do."""
    run = logged()
    register_run(run.run_id, "served")
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # uvicorn must be on the PATH of the active environment
    env = {**os.environ, "MLFLOW_TRACKING_URI": run.tracking_uri, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/served@champion"]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/invocations"
        status, body = post(url, {"dataframe_records": run.eval_rows()[:10], "params": {"top_n": 3}})
        assert status == 200, body
        assert [p["categories"] for p in body["predictions"]] == [r["reranked_top"][:3] for r in run.per_query()[:10]]
        status, body = post(url, {"dataframe_records": [{"merchant_name": "Uber"}]})
        assert status == 400 and "row 1: merchant_category: Field required" in body["message"]
        deep = b'{"dataframe_records": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
        status, body = post_bytes(url, deep)
        assert status == 400 and "nested too deeply" in body["message"]
        status, body = post(url, {"dataframe_records": [{"input": "taxi"}] * (MAX_ROWS + 1)})
        assert status == 400 and f"at most {MAX_ROWS}" in body["message"]
        # A long field is cut by the documented rule: it ranks as its first MAX_FIELD_CHARS characters do.
        long_row = {**run.eval_rows()[0], "merchant_name": "Uber " * 100_000}
        clipped_row = {**long_row, "merchant_name": clip(long_row["merchant_name"])}
        status, long_body = post(url, {"dataframe_records": [long_row]})
        assert status == 200, long_body
        assert long_body == post(url, {"dataframe_records": [clipped_row]})[1]
        status, body = post(url, {"dataframe_records": [{"input": "x" * (max_request_bytes() + 1)}]})
        assert status == 413 and "limit" in body["message"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_suggest_command_ranks_ten_thousand_transactions(logged, tmp_path):
    from experiments.datasets.synthetic import SyntheticTransactions

    run = logged()
    SyntheticTransactions(seed=1, n_transactions=10_000).write_jsonl(tmp_path / "big")
    rows = [
        json.loads(line)
        for name in ("train.jsonl", "eval.jsonl")
        for line in (tmp_path / "big" / name).read_text().splitlines()
    ]
    source = tmp_path / "transactions.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows[:10_000]))
    completed = subprocess.run(
        [sys.executable, "-m", "experiments.suggest", run.run_id, "--input", str(source), "--no-progress"],
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": run.tracking_uri},
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "ranked 10000 rows" in completed.stderr
    written = (tmp_path / "transactions.suggestions.jsonl").read_text().splitlines()
    assert len(written) == 10_000 and len(json.loads(written[-1])["categories"]) == 5
