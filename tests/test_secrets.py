"""Secrets (``experiments.secrets``): keys told by name, by shape and inside URLs; refused on the command line
whatever their form; redacted on the console, in every log record, in what a tracker is handed and in the Python
API's errors, in linear time; and a canary passed every way found nowhere a run writes, records or prints."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from fake_services import FakeCohere, Reply, Request
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli import ROOT, shrunk
from test_hardening import cli_env, free_port, mlflow_server, run_cli, server_runs
from test_trust import run_py

from experiments.errors import UserError
from experiments.secrets import (
    env_key,
    looks_like_key,
    redact,
    redact_bytes,
    redact_keys,
    refuse_resolved_secrets,
    refuse_secret_overrides,
    scrub,
    secret_values,
)

# Canaries: each must appear nowhere a run writes, records or prints.
HF_AUTH = "hfAuthCanary4d1f9b27c3e8a6"
OPENAI_KEY = "sk-openaiCanary7e2b9d4a1c6f8"
URI_PASSWORD = "uriPassCanary5b8e1d3f"
CANARIES = (HF_AUTH, OPENAI_KEY, URI_PASSWORD, "co-canary-0d9be53a7e11")

CO_KEY = "co-hostileCanary5e1d9a7b3c"
CANARY = "CANARYkey0123456789abcdefXYZ"


# Told by name, by shape and inside URLs; scrubbed from what a tracker is handed.


def test_scrub_hides_secret_looking_keys_at_any_depth():
    config = {"tracker": {"api_key": "sk-123", "project": "p"}, "llm": [{"OPENAI_API_KEY": "x", "token": None}]}
    cleaned = scrub(config)
    assert cleaned == {"tracker": {"api_key": "***", "project": "p"}, "llm": [{"OPENAI_API_KEY": "***", "token": None}]}
    assert config["tracker"]["api_key"] == "sk-123"  # the original is untouched


def test_secret_values_from_the_environment_are_redacted_everywhere(monkeypatch):
    monkeypatch.setenv("CO_API_KEY", "co-canary-abcdef123")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false-but-long-enough")
    assert redact("Bearer co-canary-abcdef123 sent") == "Bearer *** sent"
    assert scrub({"url": "https://x/?key=co-canary-abcdef123", "max_tokens_per_doc": 512}) == {
        "url": "https://x/?key=***",
        "max_tokens_per_doc": 512,  # not a secret: only names *ending* in token are
    }
    assert redact("false-but-long-enough") == "false-but-long-enough"


def test_keys_are_told_by_name_by_shape_and_inside_urls(monkeypatch):
    monkeypatch.setenv("HF_AUTH", HF_AUTH)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{URI_PASSWORD}@127.0.0.1:5000")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/ssh-agent.socket")
    assert {HF_AUTH, URI_PASSWORD} <= set(secret_values())
    assert "/tmp/ssh-agent.socket" not in secret_values()  # *_AUTH_SOCK is not a secret
    assert redact(f"to http://alice:{URI_PASSWORD}@127.0.0.1:5000/x") == "to http://***@127.0.0.1:5000/x"
    assert redact(f"token {HF_AUTH}.") == "token ***."
    for key in (OPENAI_KEY, "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "Xq7mP2vL9nR4tY8wK3jH6gF1dS5aZ0cB"):
        assert looks_like_key(key), key
    for word in ("ms-marco-MiniLM-L12-v2", "0123456789abcdef" * 4, "kmeans-k4-d2-bi_encoder_finetuned", "ft-9f2c"):
        assert not looks_like_key(word), word
    assert scrub({"openai_key": "x", "hf_auth": "y", "note": f"key {OPENAI_KEY}", "max_tokens_per_doc": 512}) == {
        "openai_key": "***",
        "hf_auth": "***",
        "note": "key ***",
        "max_tokens_per_doc": 512,
    }


@pytest.mark.parametrize(
    ("override", "why"),
    [
        (f"+api_key={OPENAI_KEY}", "its name says it is a secret"),
        ("+openai_key=abc", "its name says it is a secret"),
        ("+hf_auth=abc", "its name says it is a secret"),
        (f"+note={OPENAI_KEY}", "its value looks like an API key"),
        (f"+note={HF_AUTH}", "its value looks like an API key"),  # one of the environment's secrets
        (f"trackers.mlflow.tracking_uri=http://alice:{URI_PASSWORD}@127.0.0.1:5000", "credentials inside a URL"),
        ("+note=${oc.env:HF_AUTH}", "it pulls the secret HF_AUTH into the config"),
        ("+note=${oc.env:MY_VAR,x}", "it pulls the secret MY_VAR into the config"),  # its value is key-shaped
    ],
)
def test_a_secret_on_the_command_line_is_refused_whatever_its_form(monkeypatch, override, why):
    monkeypatch.setenv("HF_AUTH", HF_AUTH)
    monkeypatch.setenv("MY_VAR", OPENAI_KEY)
    with pytest.raises(UserError, match="export the key in the environment") as caught:
        refuse_secret_overrides(["miner=cosine", override])
    assert why in str(caught.value) and HF_AUTH not in str(caught.value) and OPENAI_KEY not in str(caught.value)
    refuse_secret_overrides(["miner=cosine", "k=2,4", "+note=${oc.env:HOME}", "reranker.model=/models/MiniLM-L6-v2"])


def test_the_console_and_every_log_record_are_redacted_tracebacks_included(tmp_path):
    script = f"""
import logging, sys
from experiments.secrets import guard_output
guard_output()
logging.basicConfig(filename={str(tmp_path / "run.log")!r}, level=logging.INFO)
log = logging.getLogger("job")
log.info("tracking to %s", "http://alice:{URI_PASSWORD}@host")
try:
    raise RuntimeError("boom {HF_AUTH}")
except RuntimeError:
    log.exception("Error executing job with overrides: ['+x={HF_AUTH}']")
print("stdout {HF_AUTH}")
raise RuntimeError("uncaught {HF_AUTH}")
"""
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=cli_env(HF_AUTH=HF_AUTH), timeout=120
    )
    log = (tmp_path / "run.log").read_text()
    assert "RuntimeError: boom ***" in log and "http://***@host" in log and "['+x=***']" in log
    assert "stdout ***" in completed.stdout and "RuntimeError: uncaught ***" in completed.stderr
    for text in (log, completed.stdout, completed.stderr):
        assert HF_AUTH not in text and URI_PASSWORD not in text


@pytest.mark.slow
def test_a_canary_secret_passed_every_way_is_found_nowhere(tmp_path, tiny_model_dir):
    """Keys in the environment (one pulled in with oc.env, one in MLFLOW_TRACKING_URI to a real server), keys on
    the command line in every form (refused, nothing written), a sweep, and jobs that fail with the key in their
    traceback: no file under outputs/ or the server's store, and no captured output, holds a canary."""
    port, store = free_port(), tmp_path / "server"
    env = cli_env(
        HF_AUTH=HF_AUTH,
        OPENAI_KEY=OPENAI_KEY,
        CO_API_KEY=CANARIES[3],
        MLFLOW_TRACKING_URI=f"http://alice:{URI_PASSWORD}@127.0.0.1:{port}",
    )
    args = [*shrunk(tmp_path, tiny_model_dir), "reranker=none"]
    outputs, texts = tmp_path / "outputs", []
    for override in (
        f"+api_key={CANARIES[3]}",
        f"+openai_key={OPENAI_KEY}",
        f"+hf_auth={HF_AUTH}",
        f"+note={HF_AUTH}",
        "+note=${oc.env:HF_AUTH}",
        "+note=${oc.env:OPENAI_KEY}",
        f"reranker.base_url=https://alice:{URI_PASSWORD}@api.cohere.com",
    ):
        for sweep in ([], ["-m"]):
            refused = run_cli(*sweep, *args, override, env=env)
            assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
            assert "export the key in the environment" in refused.stderr
            assert not outputs.exists()  # refused before Hydra writes anything
            texts += [refused.stdout, refused.stderr]
    failing_embed = (
        "import os\nfrom experiments import pipeline\n"
        "def failing(embedder, retrieval, splits):\n"
        "    raise RuntimeError('boom with ' + os.environ['HF_AUTH'] + ' and ' + os.environ['MLFLOW_TRACKING_URI'])\n"
        "pipeline.embed = failing\n"
    )
    with mlflow_server(store, port):
        single = run_cli(*args, "+note=${oc.env:HOME}", env=env)  # a normal run, tracked on the server
        assert single.returncode == 0, single.stderr[-3000:]
        crashed = run_cli(*args, "k=3", env=env, patch=failing_embed)  # Hydra's "Error executing job" + traceback
        assert crashed.returncode == 1 and "Error executing job with overrides" in crashed.stderr
        sweep = run_cli("-m", *args, "k=2,3", env=env, patch=failing_embed)  # both jobs fail, tracebacks logged
        assert "#0 : " in sweep.stdout + sweep.stderr, sweep.stderr[-3000:]
        texts += [single.stdout, single.stderr, crashed.stdout, crashed.stderr, sweep.stdout, sweep.stderr]
        statuses = sorted(run.info.status for run in server_runs(f"http://127.0.0.1:{port}"))
    assert statuses == ["FAILED", "FAILED", "FAILED", "FINISHED", "FINISHED"]  # and the sweep's parent
    assert "RuntimeError: boom with *** and http://***@127.0.0.1" in crashed.stderr
    logs = "".join(path.read_text() for path in outputs.rglob("*.log"))
    assert logs.count("RuntimeError: boom with *** and http://***@127.0.0.1") >= 2  # both sweep jobs' run.log
    assert "View run" in single.stdout and f"http://***@127.0.0.1:{port}" in single.stdout
    files = [path for root in (outputs, store) for path in root.rglob("*") if path.is_file()]
    assert any(path.name == "overrides.yaml" for path in files) and any(path.suffix == ".db" for path in files)
    for path in files:
        data = path.read_bytes()
        for canary in CANARIES:
            assert canary.encode() not in data, (canary, path)
    for text in texts:
        for canary in CANARIES:
            assert canary not in text, canary


# A secret on the command line, whatever its form.


@pytest.mark.parametrize(
    "override",
    [
        'hydra.run.dir=/tmp/x/run_${oc.env:"CO_API_KEY"}',
        "hydra.run.dir=/tmp/x/run_${oc.env:'CO_API_KEY'}",
        'hydra.sweep.dir=/tmp/x/${oc.env: "CO_API_KEY" ,none}',
        "+note=${oc.env:${oc.env:WHICH_VAR}}",  # the name itself read from the environment
        "+passphrase=correct-horse",
        "+db_pw=hunter2",
        "+db_pass=hunter2",
        "+private_key_pem=-----BEGIN",
        "+dsn=alice:s3cret-pw@db.example.com:5432/app",
    ],
)
def test_a_value_that_resolves_to_a_secret_is_refused_whatever_the_quoting(monkeypatch, override):
    monkeypatch.setenv("CO_API_KEY", CO_KEY)
    monkeypatch.setenv("WHICH_VAR", "CO_API_KEY")
    with pytest.raises(UserError, match="export the key in the environment") as caught:
        refuse_secret_overrides([override])
    assert CO_KEY not in str(caught.value)


def test_ordinary_values_are_not_taken_for_secrets(monkeypatch):
    monkeypatch.setenv("CO_API_KEY", CO_KEY)
    refuse_secret_overrides(
        [
            "hydra.run.dir=outputs/${now:%Y-%m-%d}/${oc.env:USER,me}",
            "+note=${oc.env:HOME}",
            "+contact=john@example.com",
            "+repo=git@github.com:org/repo.git",
            "k=2,4",
        ]
    )


def test_a_quoted_env_run_dir_is_refused_before_any_folder_is_made(tmp_path):
    target = tmp_path / "runs"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), f'hydra.run.dir={target}/run_${{oc.env:"CO_API_KEY"}}'],
        capture_output=True,
        text=True,
        env=cli_env(CO_API_KEY=CO_KEY),
        timeout=120,
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert len(completed.stderr.strip().splitlines()) == 1 and "hydra.run.dir" in completed.stderr
    assert CO_KEY not in completed.stdout + completed.stderr
    assert not target.exists()


# Redaction in linear time.


@settings(max_examples=8, deadline=None)
@given(
    unit=st.text(alphabet="Aa0:/@.+-_", min_size=1, max_size=6),
    size=st.integers(min_value=1_000_000, max_value=2_000_000),
)
def test_redaction_takes_well_under_a_second_on_multi_megabyte_fields(unit, size):
    text = (unit * (size // len(unit) + 1))[:size]
    started = time.perf_counter()
    redact(text)
    redact_bytes(text.encode())
    redact_keys(text)
    assert time.perf_counter() - started < 1.0, f"{unit!r} x {size}"


def test_a_long_run_of_letters_is_redacted_in_linear_time_and_urls_still_are():
    started = time.perf_counter()
    assert redact("A" * 4_000_000) == "A" * 4_000_000  # 2.8 s for 40,000 with the backtracking pattern
    assert time.perf_counter() - started < 1.0
    assert redact("see 1http://u:pw@h and git+ssh://tok@host/x") == "see 1http://***@h and git+ssh://***@host/x"


# One normalised form of each key.


@pytest.mark.parametrize("suffix", [" ", "\r", "\r\n", "\t "])
def test_a_key_with_a_trailing_space_or_cr_is_sent_stripped_and_redacted(monkeypatch, suffix):
    monkeypatch.setenv("CO_API_KEY", CO_KEY + suffix)
    sent = env_key(["CO_API_KEY"])
    assert sent == CO_KEY
    assert redact(f"Authorization: Bearer {sent}") == "Authorization: Bearer ***"


# The Python API redacts as the command line does; a computed variable name is no way around the refusal.


CANARY = "CANARYkey0123456789abcdefXYZ"


class EchoingCohere(FakeCohere):
    """A Cohere that refuses every rerank and quotes the request's Authorization header in its error."""

    def route(self, request: Request) -> Reply:
        if request.path == "/v2/rerank":
            header = {key.lower(): value for key, value in request.headers.items()}.get("authorization")
            return Reply(400, {"message": f"bad request from {header}"})
        return super().route(request)


def test_api_error_redacts_the_key(tmp_path, tiny_model_dir, monkeypatch, capsys):
    import logging
    import sys as system

    import experiments
    from experiments.errors import ServiceError

    monkeypatch.setenv("CO_API_KEY", CANARY)
    server = EchoingCohere().start()
    streams, factory = (system.stdout, system.stderr), logging.getLogRecordFactory()
    try:
        with pytest.raises(ServiceError) as raised:
            experiments.run(
                [
                    *shrunk(tmp_path, tiny_model_dir),
                    "reranker=cohere",
                    f"reranker.base_url={server.url}",
                    "reranker.max_retries=0",
                    "trackers=none",
                ]
            )
    finally:
        server.stop()
    assert server.calls("POST", "/v2/rerank")  # the key was sent, and echoed back
    message = str(raised.value)
    assert "bad request from Bearer ***" in message and CANARY not in message
    error: BaseException | None = raised.value
    while error is not None:  # what a notebook shows below the error, too
        assert CANARY not in str(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    printed = capsys.readouterr()
    assert CANARY not in printed.out + printed.err
    assert (system.stdout, system.stderr) == streams and logging.getLogRecordFactory() is factory  # given back


def test_computed_env_name_cannot_leak_a_key(tmp_path, tiny_model_dir):
    runs = tmp_path / "runs"
    env = cli_env(CO_API_KEY=CANARY)
    small = [*shrunk(tmp_path, tiny_model_dir), "reranker=none", "trackers=none"]  # were it let through: seconds
    quoted, whole = f'"{runs}/r_${{oc.env:CO_${{sfx}}}}"', f"{runs}/r_${{oc.env:${{sfx}}}}"
    for suffix, run_dir in (("API_KEY", quoted), ("CO_API_KEY", whole)):
        refused = run_py(*small, f"+sfx={suffix}", f"hydra.run.dir={run_dir}", env=env)
        assert refused.returncode == 2, refused.stderr[-2000:]
        [line] = refused.stderr.splitlines()
        assert line.startswith("error: hydra.run.dir: it reads an environment variable whose name is computed")
        assert CANARY not in refused.stdout + refused.stderr
    sweep_dir = f"hydra.sweep.dir={runs}/s_${{oc.env:CO_${{sfx}}}}"
    swept = run_py("-m", *small, "+sfx=API_KEY", sweep_dir, "k=2,3", env=env)
    assert swept.returncode == 2 and "hydra.sweep.dir: it reads an environment variable" in swept.stderr
    assert not runs.exists() and not (tmp_path / "outputs").exists()
    assert not any(CANARY in path.name for path in tmp_path.rglob("*"))


def test_a_resolved_value_holding_a_key_is_refused_however_it_was_spelled(monkeypatch):
    monkeypatch.setenv("CO_API_KEY", CANARY)
    refuse_resolved_secrets({"hydra": {"run": {"dir": "/tmp/runs/r_1"}}, "k": 2})
    with pytest.raises(UserError, match=r"^hydra\.run\.dir: it resolves to a secret from the environment") as caught:
        refuse_resolved_secrets({"hydra": {"run": {"dir": f"/tmp/runs/r_{CANARY}"}}})
    assert CANARY not in str(caught.value)
