"""`synthloop ui`: a Prefect server, an MLflow UI and the deployments, on 127.0.0.1, stopped together.

Three child processes, each in its own session (process group), so Ctrl-C in
the terminal reaches only this supervisor, which then stops them in order: the
deployment server first (SIGINT: Prefect pauses its deployments and stops its
flow runs), then the MLflow UI and the Prefect server (SIGTERM), escalating to
SIGKILL for a group that outlives its grace period. Each child writes to
.synthloop/logs/NAME.log. Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from .config import ConfigError

HOST = "127.0.0.1"
DEPLOYMENTS = ("loop/default", "sweep/default")


class UiError(RuntimeError):
    """A child failed to start or died: one line, pointing at its log."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, sig: int, grace: float) -> str:
        """Signal the child's process group; SIGKILL what is left after `grace` seconds."""
        with_kill = ""
        if self.group_alive():
            os.killpg(self.proc.pid, sig)
            self.wait_gone(grace)
            if self.group_alive():
                os.killpg(self.proc.pid, signal.SIGKILL)
                with_kill = f", SIGKILL after {grace:.0f}s"
                self.wait_gone(10)  # killed members linger until their new parent reaps them
            self.proc.wait(timeout=10)
        return f"{self.name} (pid {self.proc.pid}{with_kill})"

    def wait_gone(self, seconds: float) -> None:
        """Poll (reaping the child) until it and its whole process group are gone, or `seconds` pass."""
        deadline = time.monotonic() + seconds
        while (self.alive() or self.group_alive()) and time.monotonic() < deadline:
            time.sleep(0.1)


def check_port(port: int, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
        try:
            s.bind((HOST, port))
        except OSError:
            raise ConfigError(f"port {port} on {HOST} is in use; pass {flag}") from None


def _bin(name: str) -> str:
    """A console script of this environment (prefect, mlflow), beside the running python."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def _code_path() -> str:
    """PYTHONPATH that imports this very `flows` package (with -P, not a `flows/` in the current folder)."""
    here = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join([here, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


class Supervisor:
    def __init__(self, root: Path):
        self.root, self.children = root, []
        self.logs = root / ".synthloop" / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
        log = self.logs / f"{name.split()[0].lower()}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                args,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def wait_until(self, child: Child, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.alive():
                raise UiError(f"{child.name} exited with code {child.proc.returncode} while starting; see {child.log}")
            try:
                if ready():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise UiError(f"{child.name}: {what} not ready after {timeout:.0f} s; see {child.log}")

    def stop(self, child: Child) -> str:
        """The deployment server gets SIGINT (Prefect's graceful stop), the others SIGTERM."""
        self.children.remove(child)
        return child.stop(signal.SIGINT if child.name.startswith("deployments") else signal.SIGTERM, grace=20)

    def stop_all(self) -> list[str]:
        """Stop in reverse start order: the deployment server first, so no run starts while the rest stop."""
        return [self.stop(child) for child in reversed(list(self.children))]


def _ok(url: str) -> bool:
    return httpx.get(url, timeout=5).status_code == 200


def _deployments_ready(api: str) -> bool:
    return all(_ok(f"{api}/deployments/name/{d}") for d in DEPLOYMENTS)


def _paused(api: str) -> list[str]:
    try:
        return [d for d in DEPLOYMENTS if httpx.get(f"{api}/deployments/name/{d}", timeout=5).json().get("paused")]
    except (httpx.HTTPError, ValueError):
        return []


def run_ui(
    root: Path,
    params_file: Path,
    prefect_port: int = 4200,
    mlflow_port: int = 5000,
    echo=print,
    loop_concurrency: int | None = None,
) -> None:
    """Start everything, print the URLs, and block until SIGINT/SIGTERM; then stop everything.

    `loop_concurrency`: the loop/default deployment's concurrency limit (None: none of its own)."""
    from .config import load_params

    root = root.resolve()
    load_params(params_file)  # the form's defaults: fail before starting anything
    if loop_concurrency is not None and loop_concurrency < 1:
        raise ConfigError(f"--loop-concurrency must be at least 1 (got {loop_concurrency})")
    check_port(prefect_port, "--prefect-port")
    check_port(mlflow_port, "--mlflow-port")
    if prefect_port == mlflow_port:
        raise ConfigError(f"--prefect-port and --mlflow-port are both {prefect_port}; pick two ports")
    prefect_url, mlflow_url = f"http://{HOST}:{prefect_port}", f"http://{HOST}:{mlflow_port}"
    api = f"{prefect_url}/api"
    store = f"sqlite:///{root / '.mlflow' / 'mlflow.db'}"
    (root / ".mlflow").mkdir(exist_ok=True)

    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    sup, worker = Supervisor(root), None
    try:
        echo("starting the Prefect server, the MLflow UI and the deployments (logs: .synthloop/logs/) ...")
        server = sup.start(
            "Prefect server",
            [_bin("prefect"), "server", "start", "--host", HOST, "--port", str(prefect_port)],
            {
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_API_URL": api,
                # a run refused a concurrency slot retries after 5 s, not 30
                "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
            },
        )
        mlflow = sup.start(
            "MLflow UI",
            [
                _bin("mlflow"),
                "ui",
                "--backend-store-uri",
                store,
                "--host",
                HOST,
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )  # no job runner: 2 processes, not 10
        sup.wait_until(server, lambda: _ok(f"{api}/health"), "API", 180)
        worker = sup.start(
            "deployments loop/default, sweep/default",
            [
                sys.executable,
                "-P",
                "-c",
                "from flows.deployments import main; main()",
                "--root",
                str(root),
                "--params",
                str(params_file.resolve()),
                *(["--loop-concurrency", str(loop_concurrency)] if loop_concurrency else []),
            ],
            {"PREFECT_API_URL": api, "SYNTHLOOP_MLFLOW_UI": mlflow_url, "PYTHONPATH": _code_path()},
        )
        sup.wait_until(worker, lambda: _deployments_ready(api), "deployments", 180)
        sup.wait_until(mlflow, lambda: _ok(f"{mlflow_url}/health"), "UI", 180)
        echo(f"Prefect UI:  {prefect_url}   (deployments: {', '.join(DEPLOYMENTS)})")
        if loop_concurrency:
            echo(f"limit:       at most {loop_concurrency} loop/default run(s) at once; the others wait in the queue")
        echo(f"MLflow UI:   {mlflow_url}   (store {store})")
        echo(f"runs:        {root / '.synthloop' / 'runs'}/<flow-run-id>/")
        echo("ready; press Ctrl-C to stop everything")
        while all(c.alive() for c in sup.children):
            time.sleep(1)
        dead = next(c for c in sup.children if not c.alive())
        raise UiError(f"{dead.name} exited with code {dead.proc.returncode}; see {dead.log}")
    except KeyboardInterrupt:
        echo(f"\n{signal.Signals(stop['signal'] or signal.SIGINT).name}: stopping")
    finally:
        for s in old:  # a second Ctrl-C must not cut the stopping short and leave orphans
            signal.signal(s, signal.SIG_IGN)
        stopped, paused = [], []
        if worker is not None and worker in sup.children:
            stopped.append(sup.stop(worker))
            paused = _paused(api)  # the server is still up: ask it what the stopped runner paused
        stopped += sup.stop_all()
        if stopped:
            echo("stopped: " + "; ".join(stopped))
        for s, handler in old.items():
            signal.signal(s, handler)
    if paused:
        echo(f"deployments {', '.join(paused)} are paused until the next `synthloop ui` (it resumes them)")
