"""The team deployment of docs/deployment.md, run on this machine: a Ray cluster of a head and a worker node (two
``ray start`` processes), an ``mlflow server`` on a real PostgreSQL with ``--artifacts-destination``, and a sweep
with ``hydra/launcher=ray``. Every job's run, model and the sweep's report land on the server; killing the worker
node mid-sweep leaves a sweep whose rerun (the same command, the same ``hydra.sweep.dir``) runs only what is missing.

PostgreSQL comes from the system (Debian's ``postgresql``, which ``.ci/run`` installs): without ``pg_ctl`` the test is
skipped, unless ``EXPERIMENTS_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import psutil

pytest.importorskip("ray")
pytest.importorskip("psycopg")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: Every subprocess is bounded; the whole test takes 1.5 to 2 minutes on this 2-core machine (docs/deployment.md).
START_S = 120
SWEEP_S = 300


#: Ports for the servers come from here: above Ray's worker ports (10002-19999) and below the ports the system
#: hands out (32768 and up), so that no server started elsewhere on the machine is given one of them meanwhile.
PORTS = range(20000, 32768)


def free_port() -> int:
    for _ in range(100):
        port = random.choice(PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {PORTS}")


def postgres_bin() -> Path | None:
    """The folder of ``pg_ctl`` and ``initdb``: on the PATH, or Debian's ``/usr/lib/postgresql/<version>/bin``."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda path: int(path.parts[-3]))
    return versions[-1].parent if versions else None


def as_postgres_user(command: Sequence[str]) -> list[str]:
    """PostgreSQL refuses to run as root: there, run it as Debian's ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


def run(command: Sequence[str]) -> None:
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=START_S, check=False)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def kill_group(process_group: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process_group, signal.SIGKILL)


def kill_node(process_group: int) -> None:
    """Kill a Ray node at once: its daemons (the process group of its ``ray start``) and the workers its raylet
    started, each of which Ray puts in a process group of its own."""
    import psutil

    daemons = [process for process in psutil.process_iter() if _group(process) == process_group]
    workers = [child for daemon in daemons for child in _children(daemon)]
    for process in [*daemons, *workers]:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _group(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except OSError:
        return None


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own (initdb into a temporary folder, a free port), with a database ``mlflow``."""
    binaries = postgres_bin()
    if binaries is None:
        message = "PostgreSQL is not installed (apt-get install -y postgresql)"
        if os.environ.get("EXPERIMENTS_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    # Under /tmp, not pytest's tmp_path: the postgres user must reach it, and its socket path must stay short.
    folder = Path(tempfile.mkdtemp(prefix="pg"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    port = free_port()
    data = folder / "data"
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data)]
    try:
        run(as_postgres_user([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]))
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(as_postgres_user([*pg_ctl, "-l", str(folder / "log"), "-o", options, "-w", "-t", "60", "start"]))
        run([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"])
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(as_postgres_user([*pg_ctl, "-m", "immediate", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


class MlflowServer:
    """``mlflow server`` on the PostgreSQL store, artifacts proxied into ``artifacts``; started, not yet waited for
    (it boots while the Ray nodes start)."""

    def __init__(self, store: str, artifacts: Path, log: Path) -> None:
        self.artifacts, self.log = artifacts, log
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [
            str(BIN / "mlflow"), "server", "--backend-store-uri", store, "--artifacts-destination", artifacts.as_uri(),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ]  # fmt: skip
        with log.open("w") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_S
        while True:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"mlflow server did not answer /health:\n{self.log.read_text()[-3000:]}"
            time.sleep(1)

    def stop(self) -> None:
        kill_group(self.process.pid)  # the server and the workers and job runners it started
        self.process.wait(timeout=30)


@pytest.fixture
def mlflow_server(postgres: str, tmp_path: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(postgres, tmp_path / "server-artifacts", tmp_path / "mlflow-server.log")
    try:
        yield server
    finally:
        server.stop()


class RayCluster:
    """Ray nodes started with ``ray start`` as in docs/deployment.md, each in a process group of its own, so that
    one node can be killed (and all of them stopped) without touching any other Ray on this machine."""

    def __init__(self, temp_dir: Path, env: dict[str, str]) -> None:
        self.temp_dir, self.env = temp_dir, env
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.groups: list[int] = []

    def start_node(self, *arguments: str) -> int:
        """Run ``ray start`` with ``arguments``; returns the node's process group. A start that fails is tried once
        more: on a loaded machine the GCS has been seen to miss ``ray start``'s 30 s deadline ("Failed to get node
        info: Deadline Exceeded") just after a node was killed."""
        output = ""
        for _ in range(2):
            command = [
                str(BIN / "ray"), "start", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                f"--dashboard-agent-listen-port={free_port()}", *arguments,
            ]  # fmt: skip
            starter = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=self.env,
                start_new_session=True,
            )
            self.groups.append(starter.pid)  # the node's daemons keep the starter's process group
            output, _ = starter.communicate(timeout=START_S)
            if starter.returncode == 0:
                return starter.pid
            kill_node(starter.pid)
        raise AssertionError(output[-3000:])

    def start_head(self) -> None:
        # No CPUs on the head: every job runs on a worker node (as on a cluster whose head only coordinates).
        self.start_node(
            "--head", f"--port={self.port}", "--num-cpus=0", "--include-dashboard=false",
            f"--ray-client-server-port={free_port()}", f"--temp-dir={self.temp_dir}",
        )  # fmt: skip

    def start_worker(self) -> int:
        return self.start_node(f"--address={self.address}", "--num-cpus=1")

    def stop(self) -> None:
        for group in self.groups:
            kill_node(group)


@pytest.fixture
def ray_cluster() -> Iterator[RayCluster]:
    # A short folder of its own: Ray's socket paths must stay under 108 bytes, and a cluster in the default
    # /tmp/ray would be the one a bare ray.init() in another test joins.
    temp_dir = Path(tempfile.mkdtemp(prefix="ray"))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "RAY_", "EXPERIMENTS_"))}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # Token authentication, as docs/deployment.md advises, with a token of the cluster's own: with RAY_AUTH_MODE
    # unset, Ray 2.60 turns it on for a head that finds ~/.ray/auth_token (which a bare ray.init() writes) but not
    # for a worker node, which then cannot join ("InvalidAuthToken", seen after another test's local instance).
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    cluster = RayCluster(temp_dir, env)
    try:
        cluster.start_head()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


def sweep_command(tmp_path: Path, model: Path, address: str, sweep_dir: Path) -> list[str]:
    from experiments.datasets.synthetic import SyntheticTransactions

    data = tmp_path / "data"
    SyntheticTransactions(seed=0).write_jsonl(data)
    return [
        sys.executable, str(ROOT / "run.py"), "-m",
        f"paths.outputs_dir={tmp_path / 'outputs'}",
        "dataset=jsonl",
        f"dataset.train_path={data / 'train.jsonl'}",
        f"dataset.eval_path={data / 'eval.jsonl'}",
        f"dataset.categories_path={data / 'categories.json'}",
        f"embedder.model={model}",
        "reranker=none",
        "evaluation.bootstrap_resamples=100",
        "progress=false",
        "k=2,3,4",
        "hydra/launcher=ray",
        f"hydra.launcher.ray.init.address={address}",
        # A job lost with its node ends the sweep at once, rather than waiting for a node with a free CPU.
        "+hydra.launcher.ray.remote.max_retries=0",
        f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip


def ended_jobs(sweep_dir: Path) -> list[str]:
    """The jobs this invocation has ended so far (``<sweep dir>/.progress``: a start time, then one line a job)."""
    progress = sweep_dir / ".progress"
    return progress.read_text().splitlines()[1:] if progress.is_file() else []


@pytest.mark.slow
def test_a_sweep_on_a_two_node_ray_cluster_records_on_a_postgres_mlflow_server_and_resumes_after_a_lost_node(
    tmp_path, tiny_model_dir, mlflow_server, ray_cluster
):
    import mlflow
    from mlflow.tracking import MlflowClient

    started = time.monotonic()
    url, server_artifacts = mlflow_server.url, mlflow_server.artifacts
    sweep_dir = tmp_path / "outputs" / "sweep"
    command = sweep_command(tmp_path, tiny_model_dir, ray_cluster.address, sweep_dir)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "RAY_"))}
    env |= {"MLFLOW_TRACKING_URI": url, "HF_HUB_OFFLINE": "1"}
    env |= {key: value for key, value in ray_cluster.env.items() if key.startswith("RAY_AUTH_")}

    # First attempt: the worker node is killed as soon as one job has ended, and a replacement node joins.
    worker = ray_cluster.start_worker()
    mlflow_server.wait_ready()
    print(f"cluster and server up in {time.monotonic() - started:.0f} s")
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        try:
            deadline = time.monotonic() + SWEEP_S
            while not ended_jobs(sweep_dir) and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert ended_jobs(sweep_dir) == ["done"], (tmp_path / "first.log").read_text()[-4000:]
            kill_node(worker)
            # Ray dispatches in no fixed order: the job waiting for a CPU may come before the lost one in the
            # launcher's list, so the sweep sees the loss only once that job has run on the new node.
            ray_cluster.start_worker()
            print(f"worker killed and replaced at {time.monotonic() - started:.0f} s")
            first.wait(timeout=SWEEP_S)
        finally:
            if first.poll() is None:
                first.kill()
    first_log = (tmp_path / "first.log").read_text()
    assert first.returncode != 0 and "NodeDiedError" in first_log, first_log[-4000:]
    done_first = {path.parent for path in sweep_dir.glob("*/metrics.json")}
    assert 1 <= len(done_first) < 3, first_log[-4000:]
    mtimes = {folder: (folder / "metrics.json").stat().st_mtime for folder in done_first}

    # The same command again: the jobs completed are reused, only the missing ones run.
    print(f"first attempt ended at {time.monotonic() - started:.0f} s with {len(done_first)} of 3 jobs completed")
    second = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=SWEEP_S)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    console = second.stdout + second.stderr
    # Ray echoes a worker's lines (some twice): compare the sets of jobs, not the count of lines.
    reused = {Path(folder) for folder in re.findall(r"reused: (\S+) already holds", console)}
    assert reused == done_first, console[-4000:]
    assert len(set(re.findall(r"(k=\d),reranker=none: done", console))) == 3 - len(done_first), console[-4000:]
    assert "sweep: 3 of 3 jobs completed" in second.stdout
    assert {folder: (folder / "metrics.json").stat().st_mtime for folder in done_first} == mtimes
    assert len(list(sweep_dir.glob("*/metrics.json"))) == 3
    print(f"rerun ended at {time.monotonic() - started:.0f} s")

    # Everything is on the server: nothing was recorded beside the outputs.
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
    assert not (tmp_path / "outputs" / "mlartifacts").exists()
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    runs = mlflow.search_runs(experiment_names=["reranker-finetuning"], output_format="list")
    [parent] = [run for run in runs if run.data.tags.get("sweep") == "parent"]
    assert parent.info.status == "FINISHED"
    experiment = parent.info.experiment_id
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    finished = sorted(run.info.run_name for run in children if run.info.status == "FINISHED")
    assert finished == ["kmeans-k2-d2-none", "kmeans-k3-d2-none", "kmeans-k4-d2-none"], [
        (run.info.run_name, run.info.status) for run in runs
    ]
    assert not [run for run in runs if run.info.status == "RUNNING"]
    for run in children:
        if run.info.status != "FINISHED":
            continue
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
        names = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
        assert {"metrics.json", "per_query.jsonl"} <= names, names
        [model] = mlflow.search_logged_models(
            experiment_ids=[experiment], filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list"
        )
        assert (server_artifacts / experiment / "models" / model.model_id / "artifacts" / "MLmodel").is_file()
    report = {artifact.path for artifact in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/report.html"} <= report, report
    assert (server_artifacts / experiment / parent.info.run_id / "artifacts" / "report" / "report.md").is_file()
    assert json.loads((sweep_dir / "report.json").read_text())["winner"]
