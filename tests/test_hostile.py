"""A hostile tester's findings, each with the real fault: secrets smuggled through quoted interpolations, redaction
on multi-megabyte fields, keys with a trailing space or CR, a slow tracker at SIGTERM, a full disk while recording."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli import ROOT

from experiments.errors import UserError
from experiments.secrets import env_key, redact, redact_bytes, redact_keys, refuse_secret_overrides

CO_KEY = "co-hostileCanary5e1d9a7b3c"


def cli_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return {**env, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src"), **extra}


# 1. A secret on the command line, whatever its form.


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


# 2. Redaction in linear time.


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


# 4. One normalised form of each key.


@pytest.mark.parametrize("suffix", [" ", "\r", "\r\n", "\t "])
def test_a_key_with_a_trailing_space_or_cr_is_sent_stripped_and_redacted(monkeypatch, suffix):
    monkeypatch.setenv("CO_API_KEY", CO_KEY + suffix)
    sent = env_key(["CO_API_KEY"])
    assert sent == CO_KEY
    assert redact(f"Authorization: Bearer {sent}") == "Authorization: Bearer ***"
