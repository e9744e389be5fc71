"""Where planned runs are computed: one interface over a process pool, Ray and Slurm.

An :class:`Executor` takes the request files of planned runs (:mod:`pilcro_lib.runs.plans`) and
yields one :class:`Outcome` per run as runs end; each run is computed by :func:`compute_file`
through :meth:`pilcro_lib.runs.records.RunRequest.compute`, the code path of ``cached_run`` itself,
so its record is the one a notebook would have written. Executors are context managers
(``with make_executor("local") as ex: for outcome in ex.run(files): ...``); leaving the loop
early (Ctrl-C, an error, ``close()``) cancels the runs still queued or running, and runs that
finished keep their records.

An :class:`Outcome`'s status is ``computed`` (the worker trained the run), ``read`` (its record
was already stored when the worker got to it: another process computed it) or ``failed``.

- ``local`` (:class:`LocalExecutor`): processes on this machine, a fresh one per run; with
  ``gpus_per_run`` > 0, each run gets its own GPUs through ``CUDA_VISIBLE_DEVICES``. A run whose
  process dies (killed, out of memory) fails alone, with the reason; the queued runs still run.
  On Linux the runs' processes die with the process that started them, even a killed one
  (:func:`die_with_parent`). The default.
- ``ray`` (:class:`RayExecutor`): Ray core tasks with ``num_gpus=gpus_per_run``; ``ray.init()``
  starts a cluster on this machine (stopped again on exit), ``address=...`` joins a running one.
  Requests travel through Ray's object store (each dataset once), records come back to this
  process, so the cluster needs no shared file system. Needs ``pip install 'pilcro-lib[ray]'``.
- ``slurm`` (:class:`SlurmExecutor`): a submitit job array (partition, time limit, GPUs per job,
  array parallelism); the plan folder must be on a file system the nodes share. Needs
  ``pip install 'pilcro-lib[slurm]'``. ``cluster="local"`` runs the same jobs as processes
  on this machine through submitit's local executor (for tests).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import sys
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "Outcome",
    "RayExecutor",
    "SlurmExecutor",
    "compute_file",
    "compute_payload",
    "die_with_parent",
    "make_executor",
    "threads_per_run",
    "visible_gpus",
]

EXECUTORS = ("local", "ray", "slurm")
STATUSES = ("computed", "read", "failed")
SLURM_CLUSTERS = ("slurm", "local")
_WAIT_S = 1.0  # waits return this often, so that Ctrl-C is seen at once
_GRACE_S = (
    10.0  # how long a run's process may take to end once stopped (or once it sent its outcome)
)
_PR_SET_PDEATHSIG = 1  # prctl(2)


@dataclass
class Outcome:
    """How one planned run ended: ``status`` is one of :data:`STATUSES` (``read``: its record was
    already stored, computed by another process).

    ``record`` is the stored record's JSON text (a computed run), ``devices`` the
    ``CUDA_VISIBLE_DEVICES`` its process saw, ``started``/``ended`` its wall-clock times (epoch s).
    """

    key: str
    name: str
    status: str
    wall_time_s: float | None = None
    worker: str = ""
    devices: str = ""
    started: float | None = None
    ended: float | None = None
    error: str = ""
    record: str = ""


def _worker() -> tuple[str, str]:
    return f"{socket.gethostname()}:{os.getpid()}", os.environ.get("CUDA_VISIBLE_DEVICES", "")


def compute_payload(key: str, name: str, payload: bytes, blob: Callable[[str], Any]) -> Outcome:
    """Compute the run serialised in ``payload`` (see :func:`pilcro_lib.runs.plans.loads_request`);
    never raises for a failing run: its error is in the :class:`Outcome`."""
    from pilcro_lib.runs.plans import loads_request
    from pilcro_lib.runs.records import read_record_text

    worker, devices = _worker()
    started = time.time()
    try:
        record = loads_request(payload, blob).compute()
        text = read_record_text(record.path)
        status = "read" if record.reused else "computed"
    except Exception as error:  # the run failed: reported, the others go on
        last = traceback.extract_tb(error.__traceback__)[-1:]
        where = f" ({Path(last[0].filename).name}:{last[0].lineno})" if last else ""
        return Outcome(
            key,
            name,
            "failed",
            round(time.time() - started, 2),
            worker,
            devices,
            started,
            time.time(),
            f"{type(error).__name__}: {error}{where}",
        )
    return Outcome(
        key,
        name,
        status,
        round(time.time() - started, 2),
        worker,
        devices,
        started,
        time.time(),
        record=text,
    )


def compute_file(path: str, devices: str | None = None, threads: int | None = None) -> Outcome:
    """Compute the run planned in the request file at ``path`` (blobs from its folder).

    ``devices``: the ``CUDA_VISIBLE_DEVICES`` to give the run (None keeps the process's own);
    set before anything touches CUDA. ``threads``: torch's intra-op threads for the run (None
    keeps torch's default, one per core).
    """
    import torch

    from pilcro_lib.runs.plans import BLOBS, read_request_file

    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
    if threads is not None:
        torch.set_num_threads(threads)
    file = read_request_file(path)

    def blob(digest: str) -> Any:
        return torch.load(file.path.parent / BLOBS / f"{digest}.pt", weights_only=True)

    return compute_payload(file.key, file.name, file.payload, blob)


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else those torch counts."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _check_gpus_per_run(gpus_per_run: Any) -> float:
    if (
        isinstance(gpus_per_run, bool)
        or not isinstance(gpus_per_run, (int, float))
        or not math.isfinite(gpus_per_run)
        or gpus_per_run < 0
    ):
        raise ValueError(f"gpus_per_run must be a finite number >= 0, got {gpus_per_run!r}")
    return gpus_per_run


def _check_workers(workers: Any) -> None:
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")


class Executor(ABC):
    """Computes request files in parallel; see the module docstring."""

    name = ""

    def __init__(self, gpus_per_run: float = 0) -> None:
        self.gpus_per_run = _check_gpus_per_run(gpus_per_run)

    def __enter__(self) -> "Executor":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    @abstractmethod
    def run(self, files: Sequence[Path]) -> Iterator[Outcome]:
        """Compute the runs planned in ``files``; yield each one's :class:`Outcome` as it ends.

        Closing the iterator early (or an exception in the loop over it) cancels the rest.
        """


class LocalExecutor(Executor):
    """Processes on this machine (spawned, a fresh one per run).

    ``workers``: runs at a time (default: one per ``gpus_per_run`` GPUs when asking for GPUs,
    else 1). With ``gpus_per_run`` > 0 it must be a whole number and each running run gets
    its own GPUs of :func:`visible_gpus`; on the CPU, several workers each get an equal share of
    the cores as torch threads (:func:`threads_per_run`), so that they do not oversubscribe them.
    A run whose process dies fails alone (its outcome gives the signal or exit status).
    """

    name = "local"

    def __init__(self, gpus_per_run: float = 0, *, workers: int | None = None) -> None:
        super().__init__(gpus_per_run)
        _check_workers(workers)
        self.slots: list[str | None] = [None] * (workers or 1)
        self.threads = (
            threads_per_run(len(self.slots)) if len(self.slots) > 1 and not gpus_per_run else None
        )
        if gpus_per_run:
            self.slots = _gpu_slots(gpus_per_run, workers)

    def run(self, files: Sequence[Path]) -> Iterator[Outcome]:
        from pilcro_lib.runs.plans import read_request_file

        heads = {path: read_request_file(path) for path in files}
        waiting = deque(files)
        free = deque(self.slots)
        running: dict[Connection, tuple[Path, str | None, BaseProcess]] = {}
        try:
            while waiting or running:
                while waiting and free:
                    file, slot = waiting.popleft(), free.popleft()
                    receiver, process = _start_run(file, slot, self.threads)
                    running[receiver] = file, slot, process
                for receiver in wait(list(running), timeout=_WAIT_S):
                    file, slot, process = running.pop(receiver)
                    free.append(slot)
                    yield _result(receiver, process, heads[file])
        finally:
            _end([process for _, _, process in running.values()])


def _start_run(
    file: Path, devices: str | None, threads: int | None
) -> tuple[Connection, BaseProcess]:
    """Start a process that computes the run planned in ``file``; the end its :class:`Outcome`
    arrives on."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_run_process,
        name=f"run {Path(file).stem}",
        args=(sender, os.getpid(), str(file), devices, threads),
    )
    process.start()
    sender.close()  # the run's process holds the only writer: its end shows here as EOF
    return receiver, process


def _run_process(
    sender: Connection, parent: int, path: str, devices: str | None, threads: int | None
) -> None:
    """A run's own process: compute it and send its :class:`Outcome`. Ctrl-C is left to the
    parent, which stops this process; it dies with the parent (:func:`die_with_parent`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)
    sender.send(compute_file(path, devices, threads))


def die_with_parent(parent: int) -> None:
    """In a child process of ``parent`` (its pid), on Linux: be SIGKILLed when the parent ends,
    even by SIGKILL (``prctl(PR_SET_PDEATHSIG)``); exit now if it already ended. Elsewhere:
    nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    if (
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        and os.getppid() != parent
    ):
        os._exit(1)


def threads_per_run(workers: int) -> int:
    """Torch threads for each of ``workers`` CPU runs at a time: this process's usable cores
    divided evenly, at least 1."""
    if workers is None:
        raise ValueError("workers must be an integer >= 1, got None")
    _check_workers(workers)
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return max(1, cores // workers)


def _gpu_slots(gpus_per_run: float, workers: int | None) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` values of runs that may run at once, ``gpus_per_run`` GPUs each."""
    if gpus_per_run != int(gpus_per_run):
        raise ValueError(
            f"gpus_per_run must be a whole number for the local executor, got {gpus_per_run!r}"
        )
    gpus, n = visible_gpus(), int(gpus_per_run)
    slots: list[str | None] = [",".join(gpus[i : i + n]) for i in range(0, len(gpus) - n + 1, n)]
    if not slots or (workers or 0) > len(slots):
        raise ValueError(
            f"gpus_per_run={gpus_per_run!r} with workers={workers!r} needs more GPUs than this "
            f"machine's {len(gpus)} ({', '.join(gpus) or 'none'}); use gpus_per_run 0 for the CPU"
        )
    return slots[:workers] if workers else slots


def _result(receiver: Connection, process: BaseProcess, file: Any) -> Outcome:
    """The outcome a run's process sent; a failed one naming how it died if it sent none (``file``:
    its request header)."""
    try:
        outcome = receiver.recv()
    except (EOFError, OSError):
        outcome = None
    receiver.close()
    process.join(_GRACE_S)
    _end([process])  # one that hangs on its way out
    if outcome is not None:
        return outcome
    code = process.exitcode
    how = (
        f"signal {-code}: {signal.Signals(-code).name}"
        if code and code < 0
        else f"exit status {code}"
    )
    return Outcome(file.key, file.name, "failed", error=f"worker process died ({how})")


def _end(processes: list[BaseProcess]) -> None:
    """Stop runs' processes now and wait for them: SIGTERM, then SIGKILL after :data:`_GRACE_S`
    seconds (cancelled runs resume from their checkpoints)."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + _GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def _require(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"the {extra} executor needs {module}: pip install 'pilcro-lib[{extra}]'"
        ) from None


class RayExecutor(Executor):
    """Ray core tasks, one per run, each with ``num_gpus=gpus_per_run`` and
    ``num_cpus=cpus_per_run``.

    ``address``: a running cluster's address (``"auto"``, ``"ray://host:10001"``), else a cluster
    is started on this machine for the executor's lifetime. ``init``: more arguments for
    ``ray.init`` (e.g. ``num_cpus``, ``num_gpus`` of a local cluster).
    """

    name = "ray"

    def __init__(
        self,
        gpus_per_run: float = 0,
        *,
        address: str | None = None,
        cpus_per_run: float = 1,
        **init: Any,
    ) -> None:
        super().__init__(gpus_per_run)
        if (
            isinstance(cpus_per_run, bool)
            or not isinstance(cpus_per_run, (int, float))
            or cpus_per_run <= 0
        ):
            raise ValueError(f"cpus_per_run must be a number > 0, got {cpus_per_run!r}")
        self.ray = _require("ray", "ray")
        self.address, self.cpus_per_run, self.init = address, cpus_per_run, init
        self.started = False

    def __enter__(self) -> "RayExecutor":
        if not self.ray.is_initialized():
            self.ray.init(address=self.address, include_dashboard=False, **self.init)
            self.started = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False

    def run(self, files: Sequence[Path]) -> Iterator[Outcome]:
        from pilcro_lib.runs.plans import BLOBS, read_request_file

        ray = self.ray
        task = ray.remote(num_gpus=self.gpus_per_run, num_cpus=self.cpus_per_run, max_retries=0)(
            _ray_compute
        )
        blobs: dict[str, Any] = {}
        pending = {}
        try:
            for path in files:
                file = read_request_file(path)
                for digest in file.blobs:
                    if digest not in blobs:
                        blobs[digest] = ray.put(
                            (file.path.parent / BLOBS / f"{digest}.pt").read_bytes()
                        )
                refs = {digest: blobs[digest] for digest in file.blobs}
                pending[task.remote(file.key, file.name, file.payload, refs)] = file
            while pending:
                for ref in ray.wait(list(pending), num_returns=1, timeout=_WAIT_S)[0]:
                    file = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as error:
                        yield Outcome(
                            file.key, file.name, "failed", error=f"{type(error).__name__}: {error}"
                        )
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def _ray_compute(key: str, name: str, payload: bytes, refs: dict[str, Any]) -> Outcome:
    """A Ray task: compute one run, reading its blobs from the object store."""
    import io

    import ray
    import torch

    return compute_payload(
        key,
        name,
        payload,
        lambda digest: torch.load(io.BytesIO(ray.get(refs[digest])), weights_only=True),
    )


class SlurmExecutor(Executor):
    """A submitit job array on Slurm, one job per run.

    ``folder``: submitit's logs and job files (on a shared file system, like the plan folder).
    ``partition``, ``time_min`` (each job's time limit, minutes), ``parallelism`` (jobs of the
    array running at a time), ``cpus_per_run``. ``cluster``: ``"slurm"``, or ``"local"`` to run
    the same jobs as processes on this machine (submitit's local executor).
    ``poll_s``: how often the jobs' states are read.
    """

    name = "slurm"

    def __init__(
        self,
        gpus_per_run: float = 0,
        *,
        folder: str | Path = "runs/slurm",
        partition: str | None = None,
        time_min: int = 24 * 60,
        parallelism: int | None = None,
        cpus_per_run: int = 4,
        cluster: str = "slurm",
        poll_s: float = 5.0,
    ) -> None:
        super().__init__(gpus_per_run)
        if gpus_per_run != int(gpus_per_run):
            raise ValueError(
                f"gpus_per_run must be a whole number for Slurm jobs, got {gpus_per_run!r}"
            )
        if cluster not in SLURM_CLUSTERS:
            raise ValueError(
                f"cluster={cluster!r} is not allowed; choose one of "
                f"{', '.join(map(repr, SLURM_CLUSTERS))}"
            )
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError(
                "the slurm executor submits with Slurm's sbatch, which is not on this machine's "
                "PATH; run the command on a Slurm login node"
            )
        for argument, value in (("time_min", time_min), ("cpus_per_run", cpus_per_run)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{argument} must be an integer >= 1, got {value!r}")
        _check_workers(parallelism)
        submitit = _require("submitit", "slurm")
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        parameters: dict[str, Any] = {
            "timeout_min": time_min,
            "gpus_per_node": int(gpus_per_run),
            "cpus_per_task": cpus_per_run,
            "name": "pilcro-run",
        }
        if partition is not None:
            parameters["slurm_partition"] = partition
        if parallelism is not None:
            parameters["slurm_array_parallelism"] = parallelism
        self.executor.update_parameters(**parameters)
        self.poll_s = poll_s

    def run(self, files: Sequence[Path]) -> Iterator[Outcome]:
        from pilcro_lib.runs.plans import read_request_file

        heads = [read_request_file(path) for path in files]
        jobs = self.executor.map_array(compute_file, [str(path) for path in files])
        pending = dict(zip(jobs, heads))
        try:
            while pending:
                finished = [job for job in pending if job.done()]
                for job in finished:
                    file = pending.pop(job)
                    try:
                        yield job.result()
                    except Exception as error:  # the job failed or was killed by Slurm
                        yield Outcome(
                            file.key, file.name, "failed", error=f"{type(error).__name__}: {error}"
                        )
                if pending and not finished:
                    time.sleep(self.poll_s)
        finally:
            for job in pending:
                job.cancel(check=False)


def make_executor(name: str, gpus_per_run: float = 0, **options: Any) -> Executor:
    """The executor called ``name`` (one of :data:`EXECUTORS`) with its ``options``."""
    classes = {"local": LocalExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}
    if name not in classes:
        raise ValueError(
            f"executor={name!r} is not allowed; choose one of {', '.join(map(repr, EXECUTORS))}"
        )
    return classes[name](gpus_per_run, **options)
