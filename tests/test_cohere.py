"""Cohere's rerank API and the legacy fine-tune, through the real SDK against a local server speaking its protocol."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from fake_services import overlap

from experiments.errors import ConfigError, ServiceError
from experiments.records import FinetuneItem, FinetuneSet
from experiments.rerankers.cached import CachedScores
from experiments.rerankers.cohere import CohereReranker
from experiments.rerankers.cohere_api import RETIRED
from experiments.rerankers.cohere_finetuned import CohereFinetunedReranker
from experiments.retrieval.lancedb_reranker import LanceDBReranker

KEY = "co-canary-5f0a9e7d21c4"
DOCUMENTS = ["Travel Meals", "Client Entertainment", "Team Meals", "Software Licenses", "Lodging"]
QUERY = "Name : Dinner\nCategory: Restaurants\nDepartment: Sales team meals"
RERANK = "/v2/rerank"
CREATE = "/v1/finetuning/finetuned-models"


@pytest.fixture(autouse=True)
def cohere_key(monkeypatch):
    monkeypatch.setenv("CO_API_KEY", KEY)
    monkeypatch.delenv("COHERE_API_KEY", raising=False)


def finetune_set(n: int = 260) -> FinetuneSet:
    items = [
        FinetuneItem(query=f"transaction {i} {DOCUMENTS[i % 5]}", relevant_passages=[DOCUMENTS[i % 5]],
                     hard_negatives=[DOCUMENTS[(i + 1) % 5], DOCUMENTS[(i + 2) % 5]])
        for i in range(n)
    ]  # fmt: skip
    return FinetuneSet(items)


def finetuner(fake, **overrides) -> CohereFinetunedReranker:
    options = {"base_url": fake.url, "poll_interval_s": 0.01, "max_wait_s": 5, "timeout_s": 5, **overrides}
    return CohereFinetunedReranker(**options)


# --- rerank ---


def test_rerank_scores_every_document_in_batches(fake_cohere):
    reranker = CohereReranker(base_url=fake_cohere.url, documents_per_request=2)
    scores = reranker.score(QUERY, DOCUMENTS)
    assert scores == pytest.approx([overlap(QUERY, document) for document in DOCUMENTS])
    calls = fake_cohere.calls("POST", RERANK)
    assert [len(call.json()["documents"]) for call in calls] == [2, 2, 1]
    assert [document for call in calls for document in call.json()["documents"]] == DOCUMENTS
    assert {call.json()["model"] for call in calls} == {"rerank-v3.5"}
    assert calls[0].headers["Authorization"] == f"Bearer {KEY}"


def test_rate_limited_twice_then_answered(fake_cohere):
    fake_cohere.rerank_errors = [429, 429]
    reranker = CohereReranker(base_url=fake_cohere.url, max_retries=3)
    assert reranker.score(QUERY, DOCUMENTS) == pytest.approx([overlap(QUERY, d) for d in DOCUMENTS])
    assert len(fake_cohere.calls("POST", RERANK)) == 3


def test_rate_limits_beyond_the_retries_are_one_line(fake_cohere):
    fake_cohere.rerank_errors = [429, 429, 429]
    with pytest.raises(ServiceError, match=r"^Cohere could not rerank with rerank-v3.5 at .*: HTTP 429"):
        CohereReranker(base_url=fake_cohere.url, max_retries=1).score(QUERY, DOCUMENTS)
    assert len(fake_cohere.calls("POST", RERANK)) == 2


@pytest.mark.parametrize(
    ("mode", "problem"),
    [("index", "out of range"), ("nan", "not a finite number"), ("short", "4 scores for 5 documents")],
)
def test_a_malformed_answer_is_rejected(fake_cohere, mode, problem):
    fake_cohere.rerank_malformed = mode
    with pytest.raises(ServiceError, match=problem):
        CohereReranker(base_url=fake_cohere.url).score(QUERY, DOCUMENTS)


def test_requests_are_announced_and_capped_before_the_first(fake_cohere, capsys):
    reranker = CohereReranker(base_url=fake_cohere.url, documents_per_request=2, max_requests=5)
    work = [(QUERY, DOCUMENTS), ("other query", DOCUMENTS[:2])]
    with pytest.raises(ConfigError, match=r"reranker.max_requests=3: this run needs 4"):
        CohereReranker(base_url=fake_cohere.url, documents_per_request=2, max_requests=3).prepare(work)
    reranker.prepare(work)
    assert "4 requests for 7 (query, document) pairs of 2 queries" in capsys.readouterr().out
    assert fake_cohere.calls("POST", RERANK) == []


def test_the_score_cache_never_pays_twice(fake_cohere, tmp_path):
    first = CachedScores(CohereReranker(base_url=fake_cohere.url), "cohere:rerank-v3.5", tmp_path)
    scores = first.score(QUERY, DOCUMENTS)
    second = CohereReranker(base_url=fake_cohere.url)
    cached = CachedScores(second, "cohere:rerank-v3.5", tmp_path)
    cached.prepare([(QUERY, DOCUMENTS)])
    assert cached.score(QUERY, DOCUMENTS) == scores
    assert second.requests_made == 0 and len(fake_cohere.calls("POST", RERANK)) == 1


def test_cohere_reranks_through_lancedb(fake_cohere, tmp_path):
    table = lancedb.connect(str(tmp_path / "lance")).create_table(
        "docs",
        pa.table({"text": DOCUMENTS, "vector": [np.eye(5, dtype=np.float32)[i].tolist() for i in range(5)]}),
    )
    vector = np.ones(5, dtype=np.float32)
    adapter = LanceDBReranker(CohereReranker(base_url=fake_cohere.url))
    rows = table.search(vector).limit(5).rerank(adapter, query_string=QUERY).to_list()
    expected = sorted(DOCUMENTS, key=lambda d: -overlap(QUERY, d))
    assert [row["_relevance_score"] for row in rows] == pytest.approx(sorted(overlap(QUERY, d) for d in expected)[::-1])
    assert rows[0]["text"] == expected[0]


def test_a_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("CO_API_KEY")
    with pytest.raises(ConfigError, match=r"^reranker=cohere needs an API key: export CO_API_KEY=<your key> \(or COHE"):
        CohereReranker()


# --- the legacy fine-tune ---


def test_finetune_uploads_validates_creates_waits_and_reranks(fake_cohere, tmp_path):
    reranker = finetuner(fake_cohere)
    fit = reranker.fit(finetune_set(), tmp_path, seed=0)
    [finetune] = fake_cohere.finetunes.values()
    assert fit.finetune_id == finetune["id"] and not fit.reused
    assert finetune["settings"]["base_model"]["base_type"] == "BASE_TYPE_RERANK"
    [dataset] = fake_cohere.datasets.values()
    assert dataset["dataset_type"] == "reranker-finetune-input" and dataset["items"] == 260
    assert finetune["settings"]["dataset_id"] == dataset["id"]
    assert finetune["name"] == f"reranker-experiments-{finetune_set().digest()[:12]}"
    reranker.score(QUERY, DOCUMENTS)
    assert fake_cohere.calls("POST", RERANK)[-1].json()["model"] == f"{fit.finetune_id}-ft"
    again = finetuner(fake_cohere).fit(finetune_set(), tmp_path, seed=0)  # a rerun of the same config
    assert again.finetune_id == fit.finetune_id and again.reused
    assert len(fake_cohere.calls("POST", CREATE)) == 1 and len(fake_cohere.calls("POST", "/v1/datasets")) == 1


def test_a_503_on_create_leaves_exactly_one_job(fake_cohere, tmp_path):
    fake_cohere.create_errors = [(503, True)]  # created at Cohere, but the answer was an error
    fit = finetuner(fake_cohere).fit(finetune_set(), tmp_path, seed=0)
    assert list(fake_cohere.finetunes) == [fit.finetune_id]
    assert len(fake_cohere.calls("POST", CREATE)) == 1  # no SDK retry, no second create


def test_a_503_that_created_nothing_is_created_once_more(fake_cohere, tmp_path):
    fake_cohere.create_errors = [(503, False)]
    fit = finetuner(fake_cohere).fit(finetune_set(), tmp_path, seed=0)
    assert list(fake_cohere.finetunes) == [fit.finetune_id]
    assert len(fake_cohere.calls("POST", CREATE)) == 2


def test_a_read_timeout_during_create_leaves_exactly_one_job(fake_cohere, tmp_path):
    fake_cohere.create_errors = [("timeout", True)]
    fake_cohere.slow_reply_s = 2.0
    fit = finetuner(fake_cohere, timeout_s=0.5).fit(finetune_set(), tmp_path, seed=0)
    assert list(fake_cohere.finetunes) == [fit.finetune_id]
    assert len(fake_cohere.calls("POST", CREATE)) == 1


def test_a_failed_dataset_stops_with_cohere_s_reason(fake_cohere, tmp_path):
    fake_cohere.dataset_status = "failed"
    with pytest.raises(ServiceError, match=r"rejected the fine-tuning set \(dataset ds-\d+\): row 3: hard_negatives"):
        finetuner(fake_cohere).fit(finetune_set(), tmp_path, seed=0)
    assert fake_cohere.calls("POST", CREATE) == []


def test_a_failed_finetune_says_how_to_train_again(fake_cohere, tmp_path):
    fake_cohere.statuses = ["STATUS_QUEUED", "STATUS_FAILED"]
    with pytest.raises(ServiceError, match=r"ended STATUS_FAILED; to train again, set reranker.job_name"):
        finetuner(fake_cohere).fit(finetune_set(), tmp_path, seed=0)


def test_retired_finetuning_is_one_sentence_of_advice(fake_cohere, tmp_path):
    fake_cohere.retired = True
    with pytest.raises(ServiceError) as raised:
        finetuner(fake_cohere).fit(finetune_set(), tmp_path, seed=0)
    assert str(raised.value) == RETIRED
    assert "reranker=bi_encoder_finetuned" in RETIRED and "\n" not in RETIRED


def test_too_small_a_set_is_refused_before_any_request(fake_cohere, tmp_path):
    with pytest.raises(ConfigError, match=r"at least 256 fine-tuning items and this set has 100"):
        finetuner(fake_cohere).fit(finetune_set(100), tmp_path, seed=0)
    assert fake_cohere.requests == []


def test_an_existing_finetune_is_evaluated_without_training(fake_cohere, tmp_path):
    finetuner(fake_cohere).fit(finetune_set(), tmp_path / "a", seed=0)
    [existing] = fake_cohere.finetunes
    reranker = finetuner(fake_cohere, finetuned_model_id=existing)
    fit = reranker.fit(finetune_set(10), tmp_path / "b", seed=0)
    assert fit.finetune_id == existing and fit.reused
    assert len(fake_cohere.calls("POST", CREATE)) == 1
    reranker.score(QUERY, DOCUMENTS)
    assert fake_cohere.calls("POST", RERANK)[-1].json()["model"] == f"{existing}-ft"


def test_a_bounded_wait_stops_and_a_rerun_resumes(fake_cohere, tmp_path):
    fake_cohere.statuses = ["STATUS_FINETUNING"]
    with pytest.raises(ServiceError, match=r"is still STATUS_FINETUNING after 0.2 s .*rerun the same command"):
        finetuner(fake_cohere, max_wait_s=0.2).fit(finetune_set(), tmp_path, seed=0)
    fake_cohere.statuses = ["STATUS_READY"]
    fit = finetuner(fake_cohere).fit(finetune_set(), tmp_path, seed=0)
    assert list(fake_cohere.finetunes) == [fit.finetune_id] and fit.reused


KILLED_RUN = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_cohere import finetune_set
from experiments.rerankers.cohere_finetuned import CohereFinetunedReranker
reranker = CohereFinetunedReranker(base_url={url!r}, poll_interval_s=0.05, max_wait_s=600)
reranker.fit(finetune_set(), Path({cache!r}), seed=0)
"""


def test_a_run_killed_while_polling_is_resumed_by_a_rerun(fake_cohere, tmp_path):
    fake_cohere.statuses = ["STATUS_FINETUNING"]
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), url=fake_cohere.url, cache=str(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(fake_cohere.calls("GET", r"/v1/finetuning/finetuned-models/.+")) < 3:
            assert process.poll() is None and time.monotonic() < deadline, "the run never started polling"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    fake_cohere.statuses = ["STATUS_READY"]
    fit = finetuner(fake_cohere).fit(finetune_set(), tmp_path, seed=0)
    assert list(fake_cohere.finetunes) == [fit.finetune_id] and fit.reused
    assert len(fake_cohere.calls("POST", CREATE)) == 1 and len(fake_cohere.calls("POST", "/v1/datasets")) == 1
