"""`synthloop ui` as a subprocess on free ports, for the UI tests (browser and API)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UiProcess:
    """Starts `synthloop ui` in `project`; stop() sends SIGINT (Ctrl-C) and returns its output."""

    def __init__(self, project: Path, params: str = "params.yaml"):
        self.project, self.params = project, params
        self.prefect_port, self.mlflow_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.prefect_port}"
        self.api = f"{self.url}/api"
        self.mlflow_url = f"http://127.0.0.1:{self.mlflow_port}"
        self.store = f"sqlite:///{project / '.mlflow' / 'mlflow.db'}"
        self.out_path = project / "ui.out"
        self.proc: subprocess.Popen | None = None
        self._settings = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "PYTHONPATH": str(REPO),
            "PREFECT_HOME": str(self.project / ".prefect"),
        }

    def start(self, timeout: float = 300) -> UiProcess:
        with self.out_path.open("w") as out:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "synthloop"),
                    "ui",
                    "--prefect-port",
                    str(self.prefect_port),
                    "--mlflow-port",
                    str(self.mlflow_port),
                    "--params",
                    self.params,
                ],
                cwd=self.project,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while "ready;" not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"synthloop ui did not start:\n{self.output()}\n{self.logs()}")
            time.sleep(1)
        self._talk_to_server()
        return self

    def _talk_to_server(self) -> None:
        """Point this test process's Prefect client at the server (settings, not just the env:
        Prefect reads the env once, when it is first imported)."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        self._settings = temporary_settings(updates={PREFECT_API_URL: self.api})
        self._settings.__enter__()

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def logs(self) -> str:
        folder = self.project / ".synthloop" / "logs"
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(folder.glob("*.log")))

    def stop(self) -> str:
        if self._settings is not None:
            self._settings.__exit__(None, None, None)
            self._settings = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.output()

    def __enter__(self) -> UiProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_final(flow_run_id, timeout: float = 600):
    """Poll the Prefect API until the flow run reaches a final state; return the run."""
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return run
            assert time.monotonic() < deadline, f"flow run {flow_run_id} still {run.state.name} after {timeout} s"
            time.sleep(1)


def artifacts(flow_run_id) -> dict[str, object]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def mlflow_loop_run(store: str, flow_run_id):
    """The MLflow loop run that carries this Prefect flow-run id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        exps, f"tags.`prefect.flow_run_id` = '{flow_run_id}' and tags.`synthloop.generation` = 'loop'"
    )
    assert len(runs) == 1, runs
    return client, runs[0]


LOOP_LIMIT = 2  # the shared `synthloop ui` runs at most this many loop/default runs at once


class SharedUi(UiProcess):
    """The one `synthloop ui` of a test session (`--loop-concurrency` through its environment variable)."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "SYNTHLOOP_LOOP_CONCURRENCY": str(LOOP_LIMIT)}


def form_parameters(params, **changes: dict) -> dict:
    """Every form section of `params` (what a flow run of loop/default takes), with section updates."""
    from synthloop.forms import to_form

    values = {k: v.model_dump() for k, v in to_form(params).items()}
    for section, update in changes.items():
        values[section].update(update)
    return values


def assert_stopped_cleanly(ui: UiProcess) -> None:
    """Ctrl-C stops everything `synthloop ui` started, within a minute, and says what it paused."""
    import re

    start = time.monotonic()
    out = ui.stop()
    assert ui.proc.returncode == 0, out
    assert time.monotonic() - start < 60
    stopped = re.search(r"stopped: (.*)", out).group(1)
    pids = [int(p) for p in re.findall(r"pid (\d+)", stopped)]
    assert len(pids) == 3 and "Prefect server" in stopped and "MLflow UI" in stopped and "deployments" in stopped
    for pid in pids:  # each child ran in its own process group: nothing of it is left
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process group {pid} outlived `synthloop ui`")
    assert "are paused until the next `synthloop ui`" in out
