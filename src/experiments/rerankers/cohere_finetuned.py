"""The seed notebook's own path, for accounts that still have it: ``reranker=cohere_finetuned``.

Recipe: check the set (Cohere needs at least 256 items) → upload it as a ``reranker-finetune-input`` dataset →
wait until it is ``validated`` → create the fine-tuned model (``BASE_TYPE_RERANK``) → wait, bounded, until it is
``STATUS_READY`` → rerank with ``<id>-ft``. The remote id is the run's fine-tune id (and the score cache key).

Never paying twice: every step is recorded in an *intent* file in the model store
(``<models_dir>/cohere/<job name>-<endpoint hash>.json``) before the paid call; the create call is sent without SDK
retries; after an ambiguous failure (timeout, 5xx, 409, 429) the fine-tunes are listed by the job's name before
anything is created again. The job name carries the fine-tuning set's digest, so a rerun of the same config finds
its intent and resumes polling the job it already started.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from experiments.errors import ConfigError, ServiceError
from experiments.files import write_atomic
from experiments.records import FinetuneSet, sha256_json
from experiments.rerankers.base import FitContext, FitResult
from experiments.rerankers.cohere import MAX_DOCUMENTS_PER_REQUEST, CohereReranker
from experiments.rerankers.cohere_api import (
    DEFAULT_BASE_URL,
    RETIRED,
    failure,
    is_ambiguous,
    is_retired,
    is_sdk_error,
    message_of,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Cohere's minimum number of items in a rerank fine-tuning set.
MIN_ITEMS = 256
READY = "STATUS_READY"
ENDED = ("STATUS_FAILED", "STATUS_DELETED")
#: Retries for calls that change nothing (GET): safe to repeat.
READ_RETRIES = 3


class CohereFinetunedReranker(CohereReranker):
    """Fine-tune a Cohere reranker on the mined set (legacy accounts only), then rerank with it.

    Args:
        job_name: prefix of the fine-tune's name at Cohere; the name is ``<job_name>-<12 hex of the set digest>``.
        finetuned_model_id: evaluate this existing fine-tune (it must be ready) instead of training one.
        poll_interval_s: seconds between status checks.
        max_wait_s: how long one run waits for the fine-tune; past it the run stops and a rerun of the same
            command resumes waiting for the same job.
        dataset_wait_s: how long to wait for Cohere to validate the uploaded set.
        create_attempts: how many times creation is tried (each after looking the name up).
        Others: as ``CohereReranker`` (the fine-tune is reranked through the same endpoint).
    """

    option = "cohere_finetuned"

    def __init__(
        self,
        job_name: str = "reranker-experiments",
        finetuned_model_id: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 60.0,
        poll_interval_s: float = 30.0,
        max_wait_s: float = 3600.0,
        dataset_wait_s: float = 600.0,
        create_attempts: int = 3,
        max_retries: int = 3,
        max_requests: int = 1000,
        documents_per_request: int = MAX_DOCUMENTS_PER_REQUEST,
        max_tokens_per_doc: int | None = None,
    ) -> None:
        super().__init__(
            model="", base_url=base_url, timeout_s=timeout_s, max_retries=max_retries, max_requests=max_requests,
            documents_per_request=documents_per_request, max_tokens_per_doc=max_tokens_per_doc,
        )  # fmt: skip
        if create_attempts < 1 or poll_interval_s < 0 or not max_wait_s > 0 or not dataset_wait_s > 0:
            raise ConfigError(f"{self.name}: create_attempts must be >= 1 and the waits positive.")
        self.job_name = job_name
        self.finetuned_model_id = finetuned_model_id
        self.poll_interval_s = poll_interval_s
        self.max_wait_s = max_wait_s
        self.dataset_wait_s = dataset_wait_s
        self.create_attempts = create_attempts
        self.model = f"{finetuned_model_id}-ft" if finetuned_model_id else ""

    def score_key(self) -> str | None:
        return None  # keyed by the fine-tune id (FitResult.finetune_id), like every trained reranker

    def fit(
        self, finetune_set: FinetuneSet, cache_dir: Path, seed: int, context: FitContext | None = None
    ) -> FitResult:
        """Train at Cohere (or resume, or adopt ``finetuned_model_id``) and get ready to rerank with the result."""
        started = time.perf_counter()
        if self.finetuned_model_id:
            self._wait_ready(self.finetuned_model_id)
            return self._ready(self.finetuned_model_id, Path(cache_dir), reused=True, started=None, extra={})
        if len(finetune_set) < MIN_ITEMS:
            raise ConfigError(
                f"reranker={self.option}: Cohere needs at least {MIN_ITEMS} fine-tuning items and this set has "
                f"{len(finetune_set)}; raise duplication= or k=, or use more train data."
            )
        digest = finetune_set.digest()
        job = f"{self.job_name}-{digest[:12]}"
        intent = Intent(Path(cache_dir) / "cohere" / f"{job}-{sha256_json(self.base_url)[:8]}.json")
        record = intent.load()
        resumed = "finetuned_model_id" in record
        if resumed:
            print(f"Cohere fine-tune {record['finetuned_model_id']} ({job}) was started before: resuming", flush=True)
        else:
            record.update(name=job, finetune_set_digest=digest, base_url=self.base_url)
            if "dataset_id" not in record:
                record["dataset_id"] = self._upload(job, finetune_set)
                intent.save(record)
            self._wait_validated(record["dataset_id"])
            look_first = record.get("creating", False)  # a run stopped during an earlier create
            intent.save({**record, "creating": True})  # the intent, recorded before paying
            record["finetuned_model_id"] = self._create_once(job, record["dataset_id"], look_first)
            intent.save(record)
        self._wait_ready(record["finetuned_model_id"])
        extra = {"service": "cohere", "job_name": job, "dataset_id": record["dataset_id"]}
        return self._ready(record["finetuned_model_id"], intent.path, resumed, started, extra, len(finetune_set))

    def _ready(
        self,
        finetuned_id: str,
        record_path: Path,
        reused: bool,
        started: float | None,
        extra: dict[str, float | int | str],
        items: int = 0,
    ) -> FitResult:
        self.model = f"{finetuned_id}-ft"
        seconds = 0.0 if started is None else round(time.perf_counter() - started, 3)
        return FitResult(finetune_id=finetuned_id, model_path=record_path, reused=reused, train_seconds=seconds,
                         train_pairs=items, extra=extra)  # fmt: skip

    def _call(self, action: str, request: Callable[[], T]) -> T:
        """One SDK call, its errors turned into one line (Cohere's fine-tuning retirement into advice)."""
        try:
            return request()
        except Exception as error:
            if is_sdk_error(error):
                raise _translated(action, error) from None
            raise

    def _upload(self, job: str, finetune_set: FinetuneSet) -> str:
        data = (f"{job}.jsonl", finetune_set.to_jsonl().encode("utf-8"), "application/jsonl")
        response = self._call(
            "upload the fine-tuning set",
            lambda: self.client().datasets.create(
                name=job, type="reranker-finetune-input", data=data, request_options={"max_retries": 0}
            ),
        )
        if not getattr(response, "id", None):
            raise ServiceError("Cohere accepted the fine-tuning set but returned no dataset id; rerun to upload again.")
        print(f"Cohere: uploaded the fine-tuning set ({len(finetune_set)} items) as dataset {response.id}", flush=True)
        return str(response.id)

    def _wait_validated(self, dataset_id: str) -> None:
        def check() -> str | None:
            response = self._call(
                "check the uploaded set",
                lambda: self.client().datasets.get(dataset_id, request_options={"max_retries": READ_RETRIES}),
            )
            dataset = response.dataset
            if dataset.validation_status == "failed":
                raise ServiceError(
                    f"Cohere rejected the fine-tuning set (dataset {dataset_id}): {dataset.validation_error}"
                )
            return None if dataset.validation_status == "validated" else str(dataset.validation_status)

        self._poll(check, self.dataset_wait_s, f"Cohere dataset {dataset_id}", "reranker.dataset_wait_s")

    def _wait_ready(self, finetuned_id: str) -> None:
        def check() -> str | None:
            response = self._call(
                f"check fine-tune {finetuned_id}",
                lambda: self.client().finetuning.get_finetuned_model(
                    finetuned_id, request_options={"max_retries": READ_RETRIES}
                ),
            )
            model = response.finetuned_model
            status = str(getattr(model, "status", None))
            if status in ENDED:
                raise ServiceError(
                    f"Cohere fine-tune {finetuned_id} ended {status}; to train again, set reranker.job_name to a "
                    "new name (the old job keeps its name)."
                )
            return None if status == READY else status

        self._poll(check, self.max_wait_s, f"Cohere fine-tune {finetuned_id}", "reranker.max_wait_s")

    def _poll(self, check: Callable[[], str | None], limit_s: float, what: str, knob: str) -> None:
        """Call ``check`` until it returns None (done), at most ``limit_s`` seconds."""
        deadline = time.monotonic() + limit_s
        while True:
            pending = check()
            if pending is None:
                return
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"{what} is still {pending} after {limit_s:g} s ({knob}); it keeps going at Cohere: rerun the "
                    "same command to resume waiting for it."
                )
            log.info("%s is %s; checking again in %g s", what, pending, self.poll_interval_s)
            time.sleep(self.poll_interval_s)

    def _create_once(self, job: str, dataset_id: str, look_first: bool) -> str:
        """Create the fine-tune exactly once: no SDK retries, and a look-up by name after any ambiguous failure."""
        from cohere.finetuning import BaseModel, FinetunedModel, Settings

        request = FinetunedModel(
            name=job, settings=Settings(base_model=BaseModel(base_type="BASE_TYPE_RERANK"), dataset_id=dataset_id)
        )
        last = ""
        for attempt in range(self.create_attempts):
            if look_first or attempt:
                existing = self._find(job)
                if existing:
                    print(f"Cohere fine-tune {existing} ({job}) already exists: using it", flush=True)
                    return existing
            try:
                response = self.client().finetuning.create_finetuned_model(
                    request=request, request_options={"max_retries": 0}
                )
            except Exception as error:
                if not is_sdk_error(error):
                    raise
                if not is_ambiguous(error):
                    raise _translated("create the fine-tune", error) from None
                last = message_of(error)
                log.warning("creating Cohere fine-tune %s: %s; looking it up before trying again", job, last)
                time.sleep(min(self.poll_interval_s, 5.0))
                continue
            finetuned = response.finetuned_model
            if finetuned is None or not finetuned.id:
                raise ServiceError(f"Cohere did not return the id of fine-tune {job}; rerun to look it up by name.")
            print(f"Cohere fine-tune {finetuned.id} ({job}) created", flush=True)
            return str(finetuned.id)
        existing = self._find(job)
        if existing:
            return existing
        raise ServiceError(
            f"Cohere did not confirm fine-tune {job} after {self.create_attempts} attempts ({last}); rerun the same "
            "command: it looks the job up by name before creating it again."
        )

    def _list_page(self, token: str | None) -> Any:
        return self.client().finetuning.list_finetuned_models(
            page_size=100, page_token=token, request_options={"max_retries": READ_RETRIES}
        )

    def _find(self, job: str) -> str | None:
        """The id of the fine-tune named ``job``, if Cohere has one."""
        token: str | None = None
        while True:
            page = self._call("list fine-tunes", partial(self._list_page, token))
            for model in page.finetuned_models or []:
                if model.name == job and model.id:
                    return str(model.id)
            token = page.next_page_token
            if not token:
                return None


def _translated(action: str, error: BaseException) -> ServiceError:
    """Cohere's fine-tuning retirement becomes advice; any other SDK error one line naming ``action``."""
    return ServiceError(RETIRED) if is_retired(error) else failure(action, error)


class Intent:
    """A small JSON record of a remote job's progress, replaced atomically at each step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            record: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return {}
        return record

    def save(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(record, indent=2, sort_keys=True) + "\n", unique=True)
