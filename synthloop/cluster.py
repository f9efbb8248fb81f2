"""Where a sweep's loops run: this process, a local Dask cluster, or an existing one.

Dask (through prefect-dask's DaskTaskRunner) is the engine: a scheduler process and worker
processes, started here by `--workers N` (a LocalCluster on 127.0.0.1) or already running
(`--cluster tcp://HOST:8786`, or SYNTHLOOP_CLUSTER), the way `dask scheduler` / `dask worker`,
dask-jobqueue (Slurm) or dask-kubernetes start them. Before any loop starts, `connect` checks
what a cluster needs and says in one line what is missing: a scheduler that answers, at least
one worker, and every worker seeing the project folder at the same path (outputs, the DVC cache
and the MLflow store live there). Only paths and small dicts travel to the workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError
from .resources import available_cpus

log = logging.getLogger("synthloop")

ENV_ADDRESS = "SYNTHLOOP_CLUSTER"
ENV_CPUS = "SYNTHLOOP_CPUS"  # a worker's share of the machine: compute.threads 'auto' uses at most this
CONNECT_S = 10  # an address that does not answer in this long is unreachable
WORKERS_S = float(os.environ.get("SYNTHLOOP_CLUSTER_WAIT_S", "30"))  # no worker after this long: one line
MARKER = ".synthloop-cluster-check"


@dataclass(frozen=True)
class Engine:
    """How to reach the cluster: `address` of a running scheduler, or `workers` to start here."""

    workers: int = 0
    address: str = ""

    @property
    def local(self) -> bool:
        return not self.address

    def describe(self) -> str:
        return self.address or f"a local Dask cluster of {self.workers} worker processes"


def engine_of(workers: int, address: str | None) -> Engine | None:
    """The engine the flags ask for; None runs loops one after another in this process."""
    address = address or os.environ.get(ENV_ADDRESS, "")
    if workers < 0:
        raise ConfigError(f"--workers {workers}: give a number of worker processes >= 1")
    if address and workers > 1:
        raise ConfigError(f"give --workers (a cluster started here) or --cluster / {ENV_ADDRESS}, not both")
    if address:
        return Engine(address=address if "://" in address else f"tcp://{address}")
    return Engine(workers=workers) if workers > 1 else None


def worker_cpus(workers: int) -> int:
    return max(1, available_cpus() // workers)


def _extra() -> None:
    """One line when the [cluster] extra (prefect-dask, distributed) is not installed."""
    try:
        import distributed  # noqa: F401
        import prefect_dask  # noqa: F401
    except ImportError:
        raise ConfigError("a cluster needs the [cluster] extra: pip install -e '.[cluster]'") from None


def local_cluster(workers: int) -> dict:
    """LocalCluster settings: N worker processes on 127.0.0.1, one task and cores / N threads each."""
    cpus = worker_cpus(workers)
    return {
        "n_workers": workers,
        "threads_per_worker": 1,  # one task (a loop, a shard) at a time per worker process
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",  # no fixed port to collide on
        "env": {ENV_CPUS: str(cpus), "OMP_NUM_THREADS": str(cpus)},
    }


def task_runner(engine: Engine):
    """prefect-dask's task runner for the engine (imported here: the extra is optional)."""
    _extra()
    from prefect_dask import DaskTaskRunner

    if not engine.local:
        return DaskTaskRunner(address=engine.address)
    return DaskTaskRunner(cluster_kwargs=local_cluster(engine.workers))


def _sees(root: str, token: str) -> str:
    """On a worker: '' when it sees the project folder (the marker holds the token), else why not."""
    marker = Path(root) / MARKER
    try:
        found = marker.read_text(encoding="utf-8").strip()
    except OSError as exc:
        return f"cannot read {marker} ({exc.strerror or exc})"
    return "" if found == token else f"{marker} holds another project's token (a different folder at this path)"


def _api_answers(url: str) -> str:
    """On a worker: '' when the Prefect API at `url` answers, else why not."""
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/health", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return ""


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """The Prefect API every worker reports to: PREFECT_API_URL when set, else a temporary server
    on 127.0.0.1 for this command (without one, each worker process would start its own, and the
    loops would not show in one place)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = PREFECT_API_URL.value()
    if url:
        yield url
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url  # local workers inherit it
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):  # remote ones get it with each task
            yield server.api_url
    finally:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)  # send what is queued while the server still answers
        EventsWorker.drain_all(timeout=10)
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def connect(engine: Engine, root: Path) -> None:
    """Check an existing cluster before any loop: it answers, has workers, and they see `root`."""
    if engine.local:
        return
    _extra()
    from distributed import Client

    addr = engine.address
    try:
        client = Client(addr, timeout=f"{CONNECT_S}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"cluster {addr}: no scheduler answers ({type(exc).__name__}); start one with "
            f"`dask scheduler --host 127.0.0.1` or fix --cluster / {ENV_ADDRESS}"
        ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKERS_S)
        except TimeoutError:
            raise ConfigError(
                f"cluster {addr}: no workers after {WORKERS_S} s; start some with `dask worker {addr}`"
            ) from None
        token = secrets.token_hex(8)
        marker = root.resolve() / MARKER
        marker.write_text(token, encoding="utf-8")
        try:
            answers = client.run(_sees, str(root.resolve()), token)
        finally:
            marker.unlink(missing_ok=True)
        blind = {w: why for w, why in answers.items() if why}
        if blind:
            worker, why = next(iter(blind.items()))
            raise ConfigError(
                f"cluster {addr}: worker {worker} cannot see the project folder {root.resolve()}: {why}; "
                "every worker needs it at the same path (a shared filesystem; see README 'Running on a cluster')"
            )
        from prefect.settings import PREFECT_API_URL

        api = PREFECT_API_URL.value()
        if api:
            deaf = {w: why for w, why in client.run(_api_answers, api).items() if why}
            if deaf:
                worker, why = next(iter(deaf.items()))
                raise ConfigError(
                    f"cluster {addr}: worker {worker} cannot reach the Prefect API {api} ({why}); "
                    "set PREFECT_API_URL to a server every worker can reach"
                )
        log.info("cluster %s: %d workers, all see %s", addr, len(answers), root.resolve())


POOL = None  # the Dask client `synthloop run --workers N` spreads a loop's shards over


def pool():
    """The Dask client `synthloop run --workers N` spreads a loop's shards over, else None.

    A sweep's loops on a cluster do not spread theirs: the loops are the unit there, and a loop
    waiting on a worker must either hold its slot (shards then wait for a free worker: with every
    worker holding a waiting loop, forever) or hand it back, and then Dask starts the next loop in
    it (measured: all 21 anchor loops at once on 2 workers)."""
    return POOL


def spread(fn, calls: list[tuple]) -> list:
    """fn(*args) for every args in `calls` on the pool's workers, at once; their results in order."""
    client = pool()
    futures = [client.submit(fn, *args, pure=False) for args in calls]
    try:
        return client.gather(futures)
    finally:
        client.cancel(futures)


@contextlib.contextmanager
def local_pool(workers: int) -> Iterator[None]:
    """A local Dask cluster for one loop's shards (`synthloop run --workers N`)."""
    global POOL
    _extra()
    from distributed import Client, LocalCluster

    with LocalCluster(**local_cluster(workers)) as c, Client(c, set_as_default=False) as client:
        POOL = client
        try:
            yield
        finally:
            POOL = None


def worker_tags() -> dict[str, str]:
    """Which process ran a loop: host and pid, and the Dask worker's address when on one."""
    tags = {"synthloop.worker.host": socket.gethostname(), "synthloop.worker.pid": str(os.getpid())}
    try:
        from distributed import get_worker

        tags["synthloop.worker.address"] = get_worker().address
    except (ImportError, ValueError):
        pass
    return tags
