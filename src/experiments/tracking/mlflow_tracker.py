"""MLflow tracking: a local SQLite store under ``outputs/`` by default, or ``MLFLOW_TRACKING_URI``.

Toward a tracking server, each request is bounded (``bound_http``: seconds, not MLflow's minutes of retries). A run
is opened RUNNING when it starts (``open_live``, from a ``LiveFeed``'s thread) and receives its training loss and
validation scores as they happen; ``log_run`` / ``log_failure`` then record the whole run into that same run and end
it (or into a new one when the live run could not be opened). Every run is tagged with the process that records it
(``experiments.processes``), so a run left RUNNING by a process that was killed with ``kill -9`` is found and marked
KILLED the next time a tracker connects.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import run_folder
from experiments.metrics import DEFAULT_METRIC, metric_key
from experiments.processes import gone, this_process
from experiments.records import DatasetSplits, FinetuneSet
from experiments.records.run import Summary
from experiments.records.sweep import SweepRecord
from experiments.run_folder import read
from experiments.secrets import redact
from experiments.tracking.base import FailedRun, TrackedRun, headline_metrics, tracked_params, validation_key
from experiments.tracking.live import TRAIN_LOSS, LiveStart, Point
from experiments.tracking.local_store import create_store, unusable_store
from experiments.tracking.mlflow_view import describe_experiment, headline_charts
from experiments.tracking.trackers import is_disk_full

if TYPE_CHECKING:
    from experiments.serving.package import CategoriserPackage

log = logging.getLogger(__name__)
# MLflow logs every SQL error with its traceback before raising it; the run reports it in one line itself.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

# MLflow caps a param value at 6,000 characters.
MAX_PARAM_LENGTH = 6000

#: Toward a tracking server: each request waits at most 10 s and is retried twice (0 s, then 2 s apart), instead of
#: MLflow's 120 s and 7 retries with backoff (about 4 minutes against a server that is down).
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


def bound_http() -> None:
    """Bound MLflow's HTTP timeouts and retries, unless the user set them in the environment."""
    for name, value in HTTP_BOUNDS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # each retry's line: the failure says it


class MLflowTracker:
    """Logs one run to MLflow.

    Args:
        experiment: MLflow experiment name.
        tracking_uri: where runs go when ``MLFLOW_TRACKING_URI`` is not set; the default config points at an
            absolute ``sqlite:///.../outputs/mlflow.db`` so parallel jobs agree on one store.
        artifact_location: artifact root for a newly created experiment in a local store (absolute, so the
            working directory does not matter); toward a tracking server (``http(s)://``) the server decides.
        parent_run_id: nest this run under a parent (a sweep's run), when given.
        strict: fail the run when MLflow fails (otherwise: one line, and the run folder and other trackers keep it).
        timeout_s: how long recording one run may take before it counts as failed.
        primary_metric: the metric the UI sorts and charts by (``optimized_metric``), e.g. ``mrr@1``.
        register_winner: registered-model name under which a sweep registers its winner's categoriser and points
            the alias ``champion`` at it (only when the winner was chosen on the validation split); null: never.
    """

    def __init__(
        self,
        experiment: str = "reranker-finetuning",
        tracking_uri: str | None = None,
        artifact_location: str | None = None,
        parent_run_id: str | None = None,
        strict: bool = False,
        timeout_s: float = 300.0,
        primary_metric: str = DEFAULT_METRIC,
        register_winner: str | None = None,
    ) -> None:
        self.experiment = experiment
        self.primary_metric = primary_metric
        self.register_winner = register_winner
        self.strict = strict
        self.timeout_s = timeout_s
        self.tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri
        self.artifact_location = artifact_location
        self.parent_run_id = parent_run_id
        self.run_id: str | None = None
        #: The run ``open_live`` opened (set by the live feed's thread once the server answered).
        self.live_run_id: str | None = None
        # Set when the final record starts: a live run opened after that (a slow answer) is a duplicate, deleted.
        self._live_taken = False
        self._live_lock = threading.Lock()
        self._live_settled = threading.Event()  # no live run being opened
        self._live_settled.set()
        self._opening: tuple[str, str] | None = None  # (experiment id, run uid) of the run being created
        self._sweep_run_id = ""

    def __getstate__(self) -> dict[str, Any]:
        """What a copy in another process gets (a joblib launcher pickles the sweep's callbacks): no lock, no event."""
        return {key: value for key, value in self.__dict__.items() if key not in ("_live_lock", "_live_settled")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._live_lock = threading.Lock()
        self._live_settled = threading.Event()
        self._live_settled.set()

    def _artifact_root(self) -> str | None:
        """Where a new experiment keeps its artifacts: ``artifact_location`` for a local store; toward a tracking
        server, wherever the server says (its ``--artifacts-destination``), never a folder on this client's disk
        that the server and the other clients cannot see."""
        uri = str(self.tracking_uri or "")
        return None if uri.startswith(("http://", "https://", "databricks")) else self.artifact_location

    def _connect(self) -> None:
        import mlflow

        bound_http()
        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
        uri = mlflow.get_tracking_uri()
        create_store(uri)  # a local store is created whole or not at all
        try:
            found = mlflow.get_experiment_by_name(self.experiment)
        except Exception as error:
            explained = unusable_store(uri, error)
            if explained is None:
                raise
            raise explained from None
        if found is None:
            # A parallel job may create it first: then the experiment exists, which is all we need.
            with contextlib.suppress(mlflow.exceptions.MlflowException):
                mlflow.create_experiment(self.experiment, artifact_location=self._artifact_root())
        experiment = mlflow.set_experiment(self.experiment)
        describe_experiment(mlflow.MlflowClient(), experiment.experiment_id, self.primary_metric)
        self._end_killed_runs(experiment.experiment_id)

    def _end_killed_runs(self, experiment_id: str) -> None:
        """Mark KILLED the runs this host left RUNNING whose process is gone (``kill -9``, a crash, power loss)."""
        import mlflow

        client = mlflow.MlflowClient()
        host = this_process()["experiments.host"].replace("'", "")
        running = client.search_runs(
            [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`experiments.host` = '{host}'"
        )
        for run in running:
            if gone(run.data.tags):
                client.set_terminated(run.info.run_id, status="KILLED")
                pid = run.data.tags.get("experiments.pid")
                print(f"note: MLflow run {run.info.run_id} was left RUNNING by process {pid}, now gone: marked KILLED")

    def start_sweep(self, name: str, sweep_dir: Path) -> str:
        """Open the parent run of a sweep and return its id (jobs nest under it).

        The parent stays RUNNING, tagged with this process, until ``end_sweep``: a sweep killed before then (SIGTERM,
        ``kill -9``) leaves it RUNNING with its process gone, and the next run on this host marks it KILLED (as for
        single runs). A rerun of the same sweep folder (tag ``sweep_dir``) reopens that parent, keeping its name,
        instead of opening a second one, so the jobs it reuses and the ones it redoes stay under one parent.
        """
        import mlflow

        self._connect()  # also marks KILLED a parent left RUNNING by a killed sweep
        client = mlflow.MlflowClient()
        experiment = mlflow.set_experiment(self.experiment)  # made by _connect
        run_name = redact(name)
        tags = {"sweep": "parent", "sweep_dir": redact(str(sweep_dir.resolve())), **this_process()}
        previous = _previous_parent(client, experiment.experiment_id, tags["sweep_dir"])
        if previous is not None:
            for key, value in tags.items():
                client.set_tag(previous, key, value)
            client.update_run(previous, status="RUNNING")
            self._sweep_run_id = previous
            return previous
        # Created, not started: children attach by id; an active run would nest them twice.
        run = client.create_run(experiment.experiment_id, run_name=run_name, tags=tags)
        self._sweep_run_id = run.info.run_id
        return run.info.run_id

    def end_sweep(self, record: SweepRecord | None, sweep_dir: Path) -> None:
        """Give the sweep's parent run the winner's metrics and config and the report, then mark it finished."""
        import mlflow

        client = mlflow.MlflowClient()
        try:
            if record is not None:
                log_sweep_report(client, self._sweep_run_id, record, sweep_dir)
                if self.register_winner:
                    self._register(record)
        finally:  # a report or a registration that fails is the tracker's warning, never a parent left RUNNING
            client.set_terminated(self._sweep_run_id, status="FINISHED")

    def _register(self, report: SweepRecord) -> None:
        """Register the winner's categoriser as ``register_winner@champion``: its rule (validation only, ties said,
        one version per run) is ``experiments.tracking.registry.register_winner``'s."""
        from experiments.tracking.registry import register_winner

        print(register_winner(report, str(self.register_winner)))

    def log_run(self, run: TrackedRun) -> None:
        """Params, inputs, metrics and the metric table, tags, and the run folder's files, as one MLflow run.

        The run is recorded after it finished, but carries its own start and end times (``started_at``,
        ``ended_at``), so MLflow's Duration is the run's, not the recording's.
        """
        self.start(run_name=run.name, tags=run.tags, started_at=run.started_at)
        try:
            self.log_params(run.params)
            self.log_inputs(run.splits, run.finetune_set)
            self.log_results(run.metrics, run.summary)
            self.log_loss_history(run.loss_history)
            # The run folder's path finds this run again (``python -m experiments.register <run folder>``).
            self.set_tags({**run.tags, "run_folder": redact(str(run.run_folder.resolve()))})
            self.log_artifacts(run.artifacts)
            if run.categoriser is not None:
                self.log_model(run.categoriser)
        except BaseException:
            self.end(status="FAILED")
            raise
        self.end(status="FINISHED", ended_at=run.ended_at)

    def log_failure(self, run: FailedRun) -> None:
        """A FAILED (or, for a run stopped by SIGTERM or Ctrl-C, KILLED) run with the params and the reason."""
        try:
            self.start(run_name=run.name, tags={**run.tags, "error": run.error[:500]}, started_at=run.started_at)
            self.log_params(run.params)
        finally:
            self.end(status=run.status)

    def abort(self) -> None:
        """The process is being stopped while recording: mark the run it opened KILLED."""
        import mlflow

        client = mlflow.MlflowClient()
        run_ids = [self.run_id] if self.run_id else []
        if not run_ids and self._opening and self._opening[1]:
            # Stopped inside create_run: the run may be stored while its id has not come back yet.
            experiment_id, run_uid = self._opening
            found = client.search_runs([experiment_id], f"tags.`experiments.run_uid` = '{run_uid}'")
            run_ids = [run.info.run_id for run in found]
        for run_id in run_ids:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_terminated(run_id, status="KILLED")

    def discard(self, run_uid: str) -> None:
        """Delete what an earlier, interrupted attempt recorded of the run ``run_uid`` (before sending it again)."""
        import mlflow

        self._connect()
        client = mlflow.MlflowClient()
        experiment_id = mlflow.get_experiment_by_name(self.experiment).experiment_id  # type: ignore[union-attr]
        for run in client.search_runs([experiment_id], f"tags.`experiments.run_uid` = '{run_uid}'"):
            client.delete_run(run.info.run_id)

    def open_live(self, start: LiveStart) -> None:
        """Open the run RUNNING as it starts, with its name, tags (MLflow's context tags among them: user, source,
        git commit) and params; ``log_run`` later records the rest into it and ends it."""
        self._live_settled.clear()
        try:
            self._open_live(start)
        finally:
            self._live_settled.set()

    def _open_live(self, start: LiveStart) -> None:
        import mlflow
        from mlflow.entities import Param

        self._connect()
        experiment = mlflow.get_experiment_by_name(self.experiment)
        assert experiment is not None  # _connect created it
        client = mlflow.MlflowClient()
        created = client.create_run(
            experiment.experiment_id,
            start_time=int(start.started_at * 1000),
            tags={**start.tags, **this_process(), **self._nesting()},
            run_name=start.name,
        )
        with self._live_lock:
            late = self._live_taken
            if not late:
                self.live_run_id = created.info.run_id
        if late:  # the final record went ahead without it, into a run of its own
            client.delete_run(created.info.run_id)
            return
        params = [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in start.params.items()]
        for first in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(created.info.run_id, params=params[first : first + 100])

    def log_live(self, points: Sequence[Point]) -> None:
        """Add metric points to the live run (from the live feed's thread)."""
        import mlflow
        from mlflow.entities import Metric

        if self.live_run_id is None:
            return
        metrics = [Metric(point.key, point.value, point.timestamp_ms, point.step) for point in points]
        for first in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            mlflow.MlflowClient().log_batch(self.live_run_id, metrics=metrics[first : first + 1000])

    def end_live(self, status: str) -> None:
        """End the live run with ``status`` (the process is being stopped before the run was recorded)."""
        import mlflow

        if self.live_run_id is not None:
            mlflow.MlflowClient().set_terminated(self.live_run_id, status=status)

    def _nesting(self) -> dict[str, str]:
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        return {MLFLOW_PARENT_RUN_ID: self.parent_run_id} if self.parent_run_id else {}

    def start(self, run_name: str, tags: Mapping[str, str], started_at: float | None = None) -> None:
        """Open the run, started at ``started_at`` (seconds since the epoch; None: now), nested under the parent.

        The run opened live when the run started (``live_run_id``) is reused, waited for while its opening is under
        way (within ``timeout_s``, which bounds the whole record anyway); one whose opening comes back later still is
        deleted when it does (``open_live``), so the run is never doubled."""
        import mlflow
        from mlflow.entities import RunTag

        # First, before this thread touches the store: MLflow's first use of a store is not safe in two threads.
        self._live_settled.wait(self.timeout_s)
        self._connect()
        experiment = mlflow.get_experiment_by_name(self.experiment)
        assert experiment is not None  # _connect created it
        self._opening = (experiment.experiment_id, tags.get("experiments.run_uid", ""))
        client = mlflow.MlflowClient()
        with self._live_lock:
            live, self._live_taken = self.live_run_id, True
        if live is not None:  # opened when the run started: the record goes into it
            self.run_id = live
            client.log_batch(live, tags=[RunTag(key, value) for key, value in tags.items()])
        else:
            # create_run takes the start time, which mlflow.start_run does not; start_run makes it the active run.
            created = client.create_run(
                experiment.experiment_id,
                start_time=None if started_at is None else int(started_at * 1000),
                tags={**tags, **this_process(), **self._nesting()},
                run_name=run_name,
            )
            self.run_id = created.info.run_id
        mlflow.start_run(run_id=self.run_id)
        log.info("MLflow run %s in %s", self.run_id, mlflow.get_tracking_uri())

    def log_params(self, params: Mapping[str, object]) -> None:
        import mlflow

        mlflow.log_params({key: str(value)[:MAX_PARAM_LENGTH] for key, value in params.items()})

    def log_inputs(self, dataset: DatasetSplits, finetune_set: FinetuneSet | None) -> None:
        import mlflow
        import pandas as pd
        from mlflow.data.pandas_dataset import from_pandas

        digest = dataset.digest()[:32]
        for context, examples in (("train", dataset.train), ("eval", dataset.eval)):
            frame = pd.DataFrame({"input": [e.input for e in examples], "expected": [e.expected for e in examples]})
            # A file's path is its source; a generated set has none (MLflow then records the code location).
            source = dataset.source.get(f"{context}_path")
            located = {"source": str(source)} if source else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "source can be interpreted in multiple ways"
                data = from_pandas(frame, name=dataset_label(dataset, context), digest=digest, **located)
            mlflow.log_input(data, context=context)
        if finetune_set is not None:
            frame = pd.DataFrame([item.model_dump() for item in finetune_set.items])
            mlflow.log_input(
                from_pandas(frame, name="finetune-set", digest=finetune_set.digest()[:32]),
                context="training",
            )

    def log_results(self, metrics: Mapping[str, float], summary: Summary) -> None:
        import mlflow
        import pandas as pd

        # The primary metric and the objective first: MLflow's compare view charts the first metric a run logged by
        # default.
        primary = metric_key(self.primary_metric)
        first = (primary, validation_key(self.primary_metric))
        ordered = {key: metrics[key] for key in first if key in metrics} | dict(metrics)
        mlflow.log_metrics(ordered | headline_charts(metrics, self.primary_metric))
        mlflow.log_table(data=pd.DataFrame(summary.table_rows()), artifact_file="metric_table.json")

    def log_loss_history(self, history: Sequence[tuple[int, float]]) -> None:
        """The fine-tune's training loss as the metric history ``train_loss`` (one point per logged step); the
        steps the live run already has are not sent twice."""
        import mlflow
        from mlflow.entities import Metric

        if not history or self.run_id is None:
            return
        client = mlflow.MlflowClient()
        sent = {point.step for point in client.get_metric_history(self.run_id, TRAIN_LOSS)}
        now = int(time.time() * 1000)
        points = [Metric(TRAIN_LOSS, float(loss), now, int(step)) for step, loss in history if int(step) not in sent]
        for start in range(0, len(points), 1000):  # MLflow takes at most 1000 metrics per batch
            client.log_batch(self.run_id, metrics=points[start : start + 1000])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        import mlflow

        mlflow.set_tags(dict(tags))

    def log_artifacts(self, directory: Path) -> None:
        import mlflow

        mlflow.log_artifacts(str(directory))

    def log_model(self, categoriser: CategoriserPackage) -> None:
        """Log the categoriser as this run's pyfunc model ``categoriser`` (``runs:/<run id>/categoriser``)."""
        from experiments.serving.mlflow_model import log_categoriser

        try:
            info = log_categoriser(categoriser)
        except Exception as error:
            if not is_disk_full(error):
                raise
            where = self._drop_unfinished_models()
            raise OSError(errno.ENOSPC, "No space left on device while logging the model", where) from error
        log.info("model: %s (python -m experiments.suggest %s ...)", info.model_uri, self.run_id)

    def _drop_unfinished_models(self) -> str | None:
        """Remove the files of this run's models that did not finish logging (a full disk); their folder, if any.

        Only models whose source is this run are touched, and only in a local artifact store: a half-written model
        is never left for ``suggest`` or a registry to find."""
        import mlflow
        from mlflow.entities import LoggedModelStatus
        from mlflow.utils.file_utils import local_file_uri_to_path

        try:
            models = mlflow.search_logged_models(filter_string=f"source_run_id = '{self.run_id}'", output_format="list")
        except Exception:  # the store cannot be read either: the error names the store
            return None
        where = None
        for model in models:
            location = str(model.artifact_location or "")
            if model.status == LoggedModelStatus.READY or not location.startswith(("file:", "/")):
                continue
            folder = Path(local_file_uri_to_path(location))
            where = str(folder)
            shutil.rmtree(folder.parent if folder.name == "artifacts" else folder, ignore_errors=True)
        return where

    def end(self, status: str, ended_at: float | None = None) -> None:
        """End the active run as ``FINISHED``, ``FAILED`` or ``KILLED``, at ``ended_at`` (None: now)."""
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run(status=status)
        if ended_at is not None and self.run_id is not None:
            # end_run stamps the recording's end; the run's own end is earlier.
            mlflow.MlflowClient().set_terminated(self.run_id, status=status, end_time=int(ended_at * 1000))


def dataset_label(dataset: DatasetSplits, context: str) -> str:
    """The name MLflow shows for one split: source, size and split (``synthetic 720 · train 504``,
    ``jsonl train.jsonl · eval 30``), so runs on different data tell apart at a glance."""
    source = dataset.source.get(f"{context}_path")
    origin = f"{dataset.name} {Path(str(source)).name}" if source else dataset.name
    total = len(dataset.train) + len(dataset.eval)
    size = len(dataset.train if context == "train" else dataset.eval)
    return f"{origin} {total} · {context} {size}"


def _previous_parent(client: Any, experiment_id: str, sweep_dir: str) -> str | None:
    """The id of the earlier parent of the sweep in ``sweep_dir`` (ended: finished, failed or killed), if any."""
    if "'" in sweep_dir or "\\" in sweep_dir:  # cannot be quoted in a search filter: a new parent, not a guess
        return None
    runs = client.search_runs(
        [experiment_id],
        filter_string=(f"tags.sweep = 'parent' and tags.sweep_dir = '{sweep_dir}' and attributes.status != 'RUNNING'"),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def log_sweep_report(client: Any, parent_id: str, report: SweepRecord, sweep_dir: Path) -> None:
    """The winner's headline metrics and config as the parent's metrics and params, the report as its artifacts."""
    from mlflow.entities import Metric, Param, RunTag

    winner = Path(report.winner_folder)
    now = int(time.time() * 1000)
    metrics: list[Metric] = []
    # Cut as every param is (MLflow would cut it itself), so a rerun compares what is stored with what is sent.
    params = [
        Param("winner", report.winner[:MAX_PARAM_LENGTH]),
        Param("selection_split", report.selection_split),
    ]
    if run_folder.completed(winner):
        # The same RunRecord -> metrics road as the winner's own run (run_metrics), less its per-run extras.
        headline = headline_metrics(read(winner))
        charts = headline_charts(headline, report.metric or DEFAULT_METRIC)
        metrics = [Metric(key, float(value), now, 0) for key, value in (headline | charts).items()]
    config = run_folder.read_config(winner)
    if config is not None:
        winning = tracked_params(config.values, report.winner_choices)
        params += [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in winning.items()]
    # MLflow params never change, and a rerun of the sweep (redoing failed jobs) may crown another winner: the
    # parent keeps its first winner's params, and the tag ``winner`` and the metrics follow the latest report.
    logged = client.get_run(parent_id).data.params
    kept = sorted(param.key for param in params if logged.get(param.key, param.value) != param.value)
    fresh = [param for param in params if param.key not in logged]
    tags = [RunTag("winner", report.winner), RunTag("selection_split", report.selection_split)]
    client.log_batch(parent_id, metrics=metrics, params=fresh, tags=tags)
    if kept:
        print(
            f"note: the sweep's parent run keeps its first winner's params ({', '.join(kept)}: MLflow params cannot "
            f"change); its tag 'winner' and its metrics are the new winner's, {report.winner}"
        )
    for name in ("report.md", "report.html", run_folder.REPORT_FILE, *(Path(path).name for path in report.plots)):
        if (sweep_dir / name).is_file():
            client.log_artifact(parent_id, str(sweep_dir / name), artifact_path="report")
