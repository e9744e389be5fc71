"""The executors compute a notebook's planned runs into the records a local execution writes: a Ray
cluster on this machine with two logical GPUs and submitit's local executor (the Slurm path without
Slurm); the local process pool is checked so in test_runs.py. Cancelling stops a run; a Ray cluster
leaves no process behind."""

import _thread
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import papermill
import psutil
import pytest
from tiny_runs import records_of, write_notebook

from pilcro_lib.runs import cli as runs
from pilcro_lib.runs.executors import (
    LocalExecutor,
    SlurmExecutor,
    compute_file,
    make_executor,
    threads_per_run,
)
from pilcro_lib.runs.plans import list_requests
from pilcro_lib.runs.records import PLAN_ENV, cached_run

cloudpickle.register_pickle_by_value(
    sys.modules[__name__]
)  # this module's run functions travel by value


def _engine(name):
    """The module ``name`` (ray, submitit), or a skip where it is not installed; CI installs both,
    so there a missing one fails."""
    if os.environ.get("CI"):
        return importlib.import_module(name)
    return pytest.importorskip(name)


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """The tiny notebook's 4 runs planned, and the records a local execution of it writes."""
    folder = tmp_path_factory.mktemp("planned")
    nb = write_notebook(folder / "tiny.ipynb")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PILCRO_RECORDS", str(folder / "local-records"))
        env.setenv("PILCRO_RUNS", str(folder / "runs"))
        env.setenv("OMP_NUM_THREADS", "1")
        env.delenv(PLAN_ENV, raising=False)
        parameters = {"seeds": 4, "pause": 0.5}
        papermill.execute_notebook(
            str(nb), str(folder / "local.ipynb"), parameters=parameters, progress_bar=False
        )
        env.setenv("PILCRO_RECORDS", str(folder / "empty"))
        plan = runs.plan(nb, parameters=parameters, folder=folder / "plan")
    assert len(plan.requests) == 4 and plan.error.startswith("MissingRun")
    return plan, records_of(folder / "local-records")


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("PILCRO_RECORDS", str(tmp_path / "records"))
    monkeypatch.setenv("PILCRO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path / "records"


def sleeper(run_dir, *, pid_file, seconds):
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return {"slept": seconds}


def _long_run(tmp_path, monkeypatch):
    """A planned run that writes its process id to a file, then sleeps for two minutes."""
    pid_file = tmp_path / "pid"
    monkeypatch.setenv(PLAN_ENV, str(tmp_path / "long-plan"))
    cached_run(sleeper, pid_file=str(pid_file), seconds=120)
    monkeypatch.delenv(PLAN_ENV)
    return list_requests(tmp_path / "long-plan"), pid_file


@pytest.fixture
def ctrl_c():
    """Ctrl-C raises KeyboardInterrupt during the test, also in a process that a non-interactive
    shell started in the background (it ignores SIGINT, and interrupt_main then does nothing)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupt_once_started(pid_file):
    """Ctrl-C in this thread as soon as ``pid_file`` names the run's process; that process."""
    found = {}

    def watch():
        # a loaded machine can take minutes to start a worker; the run then sleeps for two more
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            text = pid_file.read_text() if pid_file.exists() else ""
            if text:
                found["pid"] = int(text)
                break
            time.sleep(0.2)
        # also when the run never started: the test then fails on found["pid"]
        _thread.interrupt_main()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, found


def _assert_stops(pid):
    try:
        psutil.Process(pid).wait(timeout=20)
    except psutil.NoSuchProcess:
        pass
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def threads_seen(run_dir, *, index):
    import torch

    return {"index": index, "threads": torch.get_num_threads()}


def test_parallel_local_runs_share_the_cores(store, tmp_path, monkeypatch):
    monkeypatch.setenv(PLAN_ENV, str(tmp_path / "plan"))
    for index in range(2):
        cached_run(threads_seen, index=index)
    monkeypatch.delenv(PLAN_ENV)
    with LocalExecutor(workers=2) as executor:
        outcomes = list(executor.run([r.path for r in list_requests(tmp_path / "plan")]))
    assert [o.status for o in outcomes] == ["computed"] * 2, [o.error for o in outcomes]
    cores = len(os.sched_getaffinity(0))
    assert {json.loads(o.record)["metrics"]["threads"] for o in outcomes} == {max(1, cores // 2)}
    assert threads_per_run(3) == max(1, cores // 3) and LocalExecutor(workers=1).threads is None
    with pytest.raises(ValueError, match="workers"):
        threads_per_run(0)


def test_cancelling_a_local_run_stops_its_process(store, tmp_path, monkeypatch, ctrl_c):
    requests, pid_file = _long_run(tmp_path, monkeypatch)
    thread, found = _interrupt_once_started(pid_file)
    with pytest.raises(KeyboardInterrupt), LocalExecutor() as executor:
        runs.compute_planned(requests, executor)
    thread.join()
    _assert_stops(found["pid"])
    assert not list(store.glob("*/*.json*"))


def test_killing_the_command_kills_its_runs_processes(store, tmp_path, monkeypatch):
    """SIGKILL of the process that computes runs (it cannot catch it) takes its runs' processes with
    it."""
    if not sys.platform.startswith("linux"):
        pytest.skip("a child's death with its parent (prctl PR_SET_PDEATHSIG) is Linux only")
    requests, pid_file = _long_run(tmp_path, monkeypatch)
    script = (
        "import sys; from pilcro_lib.runs.executors import LocalExecutor\n"
        "with LocalExecutor() as executor:\n    list(executor.run(sys.argv[1:]))"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, *[str(r.path) for r in requests]])
    deadline = time.monotonic() + 300
    while (
        not (pid_file.exists() and pid_file.read_text())
        and parent.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    parent.kill()
    parent.wait()
    _assert_stops(int(pid_file.read_text()))


def test_a_run_whose_record_another_process_stored_is_read_not_computed(
    store, tmp_path, monkeypatch
):
    monkeypatch.setenv(PLAN_ENV, str(tmp_path / "plan"))
    cached_run(threads_seen, index=7)
    monkeypatch.delenv(PLAN_ENV)
    (request,) = list_requests(tmp_path / "plan")
    cached_run(threads_seen, index=7)  # another process computed it meanwhile
    outcome = compute_file(str(request.path))
    assert (outcome.status, outcome.error) == ("read", "")
    assert "| read (computed elsewhere) |" in runs.summary_table([outcome], {request.key: request})
    assert runs.compute_planned([request], _Replay([outcome])) == [outcome]


class _Replay:
    """An executor that yields outcomes it was given."""

    name = "replay"

    def __init__(self, outcomes):
        self.outcomes = outcomes

    def run(self, files):
        yield from self.outcomes


def test_ray_gives_each_run_its_own_gpu_cancels_and_leaves_no_process(
    planned, store, tmp_path, monkeypatch, ctrl_c
):
    ray = _engine("ray")
    plan, expected = planned
    before = {
        p.pid for p in psutil.Process().children(recursive=True)
    }  # e.g. multiprocessing's resource tracker
    seen: list[psutil.Process] = []
    executor = make_executor(
        "ray", 1, num_cpus=2, num_gpus=2, object_store_memory=80 * 1024**2, log_to_driver=False
    )
    with executor:
        assert ray.cluster_resources()["GPU"] == 2
        outcomes = runs.compute_planned(plan.requests, executor)
        seen += [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        requests, pid_file = _long_run(tmp_path, monkeypatch)
        thread, found = _interrupt_once_started(pid_file)
        with pytest.raises(KeyboardInterrupt):
            runs.compute_planned(requests, executor)
        thread.join()
        _assert_stops(found["pid"])
    assert not ray.is_initialized()
    assert [o.status for o in outcomes] == ["computed"] * 4
    assert {o.devices for o in outcomes} == {"0", "1"}, "each run sees one GPU of its own"
    for a in outcomes:
        for b in outcomes:
            if a is not b and a.started < b.ended and b.started < a.ended:
                assert a.devices != b.devices, "two runs at once shared a GPU"
    assert records_of(store) == expected
    assert seen, "the cluster's processes were not found"
    gone, alive = psutil.wait_procs(seen, timeout=30)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], (
        "Ray processes are left after shutdown"
    )


def test_submitit_local_jobs_match_a_local_execution(planned, store, tmp_path):
    _engine("submitit")
    plan, expected = planned
    with SlurmExecutor(
        folder=tmp_path / "slurm", cluster="local", time_min=5, poll_s=0.5
    ) as executor:
        outcomes = runs.compute_planned(plan.requests, executor)
    assert [o.status for o in outcomes] == ["computed"] * 4, [o.error for o in outcomes]
    assert records_of(store) == expected


def test_missing_engines_and_bad_options_say_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'pilcro-lib\[ray\]'"):
        make_executor("ray")
    with pytest.raises(
        ValueError, match="executor='dask' is not allowed; choose one of 'local', 'ray', 'slurm'"
    ):
        make_executor("dask")
    with pytest.raises(ValueError, match="cluster='debug' is not allowed"):
        make_executor("slurm", cluster="debug")
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ValueError, match="sbatch, which is not on this machine's PATH"):
        make_executor("slurm")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ValueError, match="needs more GPUs than this machine's 0"):
        LocalExecutor(gpus_per_run=1)
    for bad in (float("inf"), float("nan"), -1, True, "1"):
        with pytest.raises(
            ValueError, match=f"gpus_per_run must be a finite number >= 0, got {bad!r}"
        ):
            make_executor("local", bad)
