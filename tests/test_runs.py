"""Planning a notebook's runs and computing them elsewhere: planning mode of cached_run, request
files, the plan/compute command on a tiny notebook and on chapter 0 (smoke profile), through the
local executor."""

import errno
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import nbformat
import papermill
import psutil
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook
from tiny_runs import records_of, write_notebook

from pilcro_lib.data import load_dataset
from pilcro_lib.runs import checkpoint
from pilcro_lib.runs import cli as runs
from pilcro_lib.runs.executors import LocalExecutor
from pilcro_lib.runs.plans import list_requests, load_request
from pilcro_lib.runs.records import PLAN_ENV, MissingRun, cached_run, read_record, write_record_text

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def stores(tmp_path, monkeypatch):
    """An empty record store and runs folder for this test (kernels and workers inherit them)."""
    monkeypatch.setenv("PILCRO_RECORDS", str(tmp_path / "records"))
    monkeypatch.setenv("PILCRO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv(PLAN_ENV, raising=False)
    return tmp_path


def mean_of(run_dir, *, data, seed):
    torch.manual_seed(seed)
    return {"mean": data.float_images().mean().item() + torch.rand(1).item()}


# --------------------------------------------------------------------------- planning mode


def test_planning_returns_placeholders_that_raise_when_read(stores, monkeypatch):
    data = load_dataset(
        "fashion_mnist_sample", "train"
    )  # 1.5 MB of images: stored apart from the requests
    monkeypatch.setenv(PLAN_ENV, str(stores / "plan"))
    planned = [
        cached_run(mean_of, name="m", data=data, seed=s) for s in range(3)
    ]  # nothing is read: all planned
    assert not list((stores / "records").glob("**/*.json*")), "planning must train nothing"
    for read in (
        lambda r: r.metrics["mean"],
        lambda r: dict(r.metrics),
        lambda r: r.provenance["commit"],
        lambda r: {**r.metrics},
        lambda r: len(r.metrics),
    ):
        with pytest.raises(MissingRun, match=f"run m/{planned[0].key} has no record yet"):
            read(planned[0])
    files = list_requests(stores / "plan")
    assert sorted(f.key for f in files) == sorted(r.key for r in planned)
    assert {f.summary for f in files} == {f"mean_of(seed={s})" for s in range(3)}
    assert len({digest for f in files for digest in f.blobs}) == 1, (
        "the dataset's images are stored once"
    )
    assert len(list((stores / "plan" / "blobs").iterdir())) == 1


def test_a_planned_run_computes_the_record_cached_run_would_write(stores, monkeypatch):
    data = load_dataset("fashion_mnist_sample", "test", subset=100)
    monkeypatch.setenv(PLAN_ENV, str(stores / "plan"))
    planned = cached_run(mean_of, name="m", data=data, seed=1)
    monkeypatch.delenv(PLAN_ENV)
    computed = load_request(stores / "plan" / f"{planned.key}.pkl").compute()
    assert computed.key == planned.key and not computed.reused and computed.path == planned.path
    stored = read_record(computed.path)
    computed.path.unlink()
    direct = cached_run(mean_of, name="m", data=data, seed=1)  # the same run, computed here
    again = read_record(direct.path)
    for record in (stored, again):
        for varying in ("wall_time_s", "finished_utc"):
            record["provenance"].pop(varying)
    assert stored == again
    monkeypatch.setenv(PLAN_ENV, str(stores / "plan2"))
    assert cached_run(mean_of, name="m", data=data, seed=1).metrics == direct.metrics, (
        "a stored run is not planned"
    )
    assert not list((stores / "plan2").glob("*.pkl"))


# ---------------------------------------------------------- the command, through the local executor


def test_plan_then_compute_in_stages_gives_the_records_of_a_local_execution(stores, capsys):
    nb = write_notebook(stores / "tiny.ipynb")
    assert runs.main(["plan", str(nb), "-p", "choose", "True"]) == 0
    out = capsys.readouterr().out
    assert (
        "3 run(s) of tiny.ipynb have no record" in out
        and "run(seed=2, scale=1.0, pause=0.0)" in out
    )
    assert (
        runs.main(
            ["compute", str(nb), "-p", "choose", "True", "--executor", "local", "--workers", "2"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("| computed |") == 4, out  # 3 runs, then the one chosen on their scores
    assert "tiny: run(seed=1, scale=1.0, pause=0.0)" in out and "scale=2.0" in out
    assert "nothing is missing" in out, (
        "the last stage executed the notebook to its end from the records"
    )
    assert "make execute NB=" in out and 'PARAMS="choose=True"' in out
    assert (stores / "runs" / "plans" / "tiny" / "summary.md").is_file()
    computed = records_of(stores / "records")

    os.environ["PILCRO_RECORDS"] = str(
        stores / "local-records"
    )  # the same notebook, executed as usual
    papermill.execute_notebook(
        str(nb), str(stores / "local.ipynb"), parameters={"choose": True}, progress_bar=False
    )
    assert records_of(stores / "local-records") == computed


def test_a_chapter_in_the_smoke_profile_computed_through_local_renders_from_its_record(stores):
    chapter = REPO / "notebooks" / "00_getting_started.ipynb"
    with LocalExecutor() as executor:
        done = runs.compute(chapter, executor, profile="smoke", log=lambda line: None)
    assert (done.status, done.stages) == ("complete", 2), done.message
    assert [o.status for o in done.outcomes] == ["computed"]
    (record,) = (stores / "records" / "00_getting_started").glob("*.json*")
    assert (
        record.name == f"{done.outcomes[0].key}.json.gz"
    )  # and stage 2 executed the chapter to its end from the record


def test_the_stage_limit_and_a_failing_notebook_are_reported(stores):
    nb = write_notebook(stores / "tiny.ipynb")
    with LocalExecutor() as executor:
        done = runs.compute(
            nb,
            executor,
            parameters={"choose": True, "seeds": 1},
            max_stages=1,
            log=lambda line: None,
        )
        assert done.status == "stage limit" and "after 1 stages" in done.message
        failed = runs.compute(
            nb, executor, parameters={"seeds": 0, "choose": True}, log=lambda line: None
        )  # max() of nothing
    assert failed.status == "notebook failed" and "ValueError" in failed.message


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["compute", "{nb}", "--address", "auto"],
            "--address is an option of --executor ray, not of local",
        ),
        (
            ["compute", "{nb}", "--executor", "slurm", "--workers", "2"],
            "--workers is an option of --executor local",
        ),
        (["plan", "{nb}", "-p", "nope", "1"], "unknown parameter(s) 'nope'"),
        (["plan", "{nb}", "-p", "profile", "smoke"], "give the profile with --profile"),
        (
            ["compute", "{nb}", "--gpus-per-run", "-1"],
            "argument --gpus-per-run: must be a finite number >= 0, got '-1'",
        ),
        (
            ["compute", "{nb}", "--gpus-per-run", "inf"],
            "argument --gpus-per-run: must be a finite number >= 0, got 'inf'",
        ),
        (
            ["compute", "{nb}", "--gpus-per-run", "nan"],
            "argument --gpus-per-run: must be a finite number >= 0, got 'nan'",
        ),
        (
            ["compute", "{nb}", "--gpus-per-run", "one"],
            "argument --gpus-per-run: must be a finite number >= 0, got 'one'",
        ),
        (
            ["compute", "{nb}", "--max-stages", "0"],
            "argument --max-stages: must be an integer >= 1",
        ),
        (
            ["plan", "{nb}", "--plans", "{nb}"],
            (
                "argument --plans: '{nb}' cannot hold the plan folder '{nb}/tiny' "
                "(Not a directory); give a folder"
            ),
        ),
        (
            ["plan", "{nb}", "--params", "nope=1", "--params", "seeds=1"],
            "argument --params: unknown parameter(s) 'nope'",
        ),
        (
            ["plan", "{nb}", "--params", "seeds=1", "--params", "seeds=2"],
            "argument --params: parameter 'seeds=2': 'seeds' is given twice",
        ),
        (
            ["plan", "{nb}", "--params", "seeds"],
            "argument --params: parameter 'seeds' must look like name=value",
        ),
        (
            ["plan", "{nb}", "--params", "seeds=1", "-p", "seeds", "2"],
            "argument --parameter: parameter 'seeds' is given twice",
        ),
    ],
)
def test_bad_arguments_name_the_argument(argv, message, tmp_path, capsys):
    nb = write_notebook(tmp_path / "tiny.ipynb")
    with pytest.raises(SystemExit) as stop:
        runs.main([a.format(nb=nb) for a in argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert message.format(nb=nb) in err and "Traceback" not in err, err


def test_a_value_with_an_equals_sign_is_passed_on_whole(tmp_path, monkeypatch, capsys):
    """``make compute PARAMS="choose=a=b seeds=2"`` gives the notebook choose='a=b' and seeds=2."""
    nb = write_notebook(tmp_path / "tiny.ipynb")
    seen = []
    monkeypatch.setattr(
        runs,
        "plan",
        lambda notebook, **kwargs: (
            seen.append(kwargs["parameters"]) or runs.Plan(kwargs["folder"], [])
        ),
    )
    assert (
        runs.main(
            [
                "plan",
                str(nb),
                "--plans",
                str(tmp_path / "plans"),
                "--params",
                "choose=a=b",
                "seeds=2",
            ]
        )
        == 0
    )
    assert seen == [{"choose": "a=b", "seeds": 2}]
    if shutil.which("make") is None:
        return
    dry = subprocess.run(
        ["make", "-n", "compute", f"NB={nb}", "PARAMS=choose=a=b seeds=2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = [line for line in dry.splitlines() if "pilcro_lib.runs compute" in line]
    argv = shlex.split(line)
    args = runs._parser().parse_args(argv[argv.index("compute") :])
    assert runs._parameters(args.parameter, args.params) == {"choose": "a=b", "seeds": 2}


def test_a_second_plan_of_the_same_notebook_waits_for_none(tmp_path, capsys):
    nb = write_notebook(tmp_path / "tiny.ipynb")
    with runs._only_one(tmp_path / "plans" / "tiny"), pytest.raises(SystemExit) as stop:
        runs.main(["plan", str(nb), "--plans", str(tmp_path / "plans")])
    assert stop.value.code == 2
    assert (
        "argument --plans: another plan or compute of this notebook holds"
        in capsys.readouterr().err
    )


def test_the_documented_command_line_runs_as_a_module(tmp_path):
    """``python -m pilcro_lib.runs`` (what the README and the Makefile call) is a command, and
    the package holds every module it needs as tracked files (none hidden by an ignore rule)."""
    done = subprocess.run(
        [sys.executable, "-m", "pilcro_lib.runs", "compute", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: python -m pilcro_lib.runs compute" in done.stdout
    if (REPO / ".git").exists():
        files = {p.name for p in (REPO / "pilcro_lib" / "runs").glob("*.py")}
        ignored = subprocess.run(
            ["git", "check-ignore", *files],
            capture_output=True,
            text=True,
            cwd=REPO / "pilcro_lib" / "runs",
            check=False,
        ).stdout.split()
        assert {"__init__.py", "__main__.py"} <= files and not ignored, ignored


# ----------------------------------------------------------------- stopping and killing the command

NAPS = """import os
import time

from pilcro_lib.runs.records import cached_run


def nap(run_dir, *, pids, index, seconds):
    with open(os.path.join(pids, str(index)), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return {"index": index}


naps = [
    cached_run(nap, name="nap", pids=pids, index=i, seconds=float(s))
    for i, s in enumerate(seconds.split(","))
]
print([r.metrics["index"] for r in naps])
"""


def _nap_notebook(path):
    """A notebook of runs ``nap`` that each write their process id to ``pids/<index>``, then sleep
    ``seconds`` (one entry of a comma-separated list per run)."""
    params = new_code_cell("pids = ''\nseconds = '0'")
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(
        cells=[params, new_code_cell(NAPS)],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(nb, path)
    return path


def _compute_in_background(stores, seconds, *, workers, started):
    """``python -m pilcro_lib.runs compute`` of the nap notebook; (process, pids folder) once the
    runs of index ``started`` are running."""
    nb, pids = _nap_notebook(stores / "naps.ipynb"), stores / "pids"
    pids.mkdir()
    command = [
        sys.executable,
        "-m",
        "pilcro_lib.runs",
        "compute",
        str(nb),
        "--params",
        f"pids={pids}",
        f"seconds={seconds}",
        "--workers",
        str(workers),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = (
        time.monotonic() + 300
    )  # a loaded machine takes a while to start the kernel and the workers
    while (
        not all((pids / str(i)).exists() for i in started)
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    time.sleep(0.5)  # the runs are sleeping now
    assert all((pids / str(i)).exists() for i in started) and proc.poll() is None, proc.communicate(
        timeout=60
    )
    return proc, pids


def _pid(pids, index):
    return int((pids / str(index)).read_text())


def test_a_killed_worker_fails_its_run_alone_and_the_queued_runs_still_run(stores):
    proc, pids = _compute_in_background(stores, "60,0", workers=1, started=[0])
    os.kill(_pid(pids, 0), signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "| failed | " in out and "worker process died (signal 9: SIGKILL)" in out, out
    assert out.count("| computed |") == 1 and "1 run(s) failed" in out, out
    assert "Traceback" not in err, err
    assert [p.parent.name for p in (stores / "records").glob("*/*.json.gz")] == ["nap"]


def test_sigterm_stops_the_workers_and_keeps_the_finished_runs(stores):
    proc, pids = _compute_in_background(stores, "0,60,60", workers=3, started=[0, 1, 2])
    deadline = time.monotonic() + 60
    while not list((stores / "records").glob("*/*.json.gz")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # run 0 is done: its worker wrote its record and sent its outcome
    workers = [psutil.Process(_pid(pids, i)) for i in (1, 2)]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE], (
        "a worker is left"
    )
    assert out.count("| computed |") == 1 and "interrupted: finished runs are kept" in out, out
    time.sleep(2)
    assert len(list((stores / "records").glob("*/*.json.gz"))) == 1, (
        "only the finished run has a record"
    )


# --------------------------------------------------------------------------- atomic writes


def test_the_temporary_files_of_killed_writes_are_removed_by_the_next_write(tmp_path):
    """A process killed between writing its temporary file and renaming it leaves
    ``.<name>.<host>.<pid>.<id>.tmp``; the next write into the folder removes it, and leaves the
    temporary files of living processes and of other machines alone."""
    killed = (
        "import os, sys; from pathlib import Path; from pilcro_lib.runs import checkpoint; "
        "os.replace = lambda *a: os._exit(9); checkpoint.write_atomic(Path(sys.argv[1]), b'x')"
    )
    writer = subprocess.Popen([sys.executable, "-c", killed, str(tmp_path / "a.json.gz")])
    assert writer.wait(timeout=120) == 9
    (left,) = tmp_path.glob(".*.tmp")
    assert left.name.startswith(
        f".a.json.gz.{checkpoint._HOST}.{writer.pid}."
    ) and checkpoint._TEMP.match(left.name)
    living = tmp_path / f".b.json.gz.{checkpoint._HOST}.{os.getpid()}.0123abcd.tmp"
    elsewhere = tmp_path / ".b.json.gz.another-host.1.0123abcd.tmp"
    for tmp in (living, elsewhere):
        tmp.write_bytes(b"partial")
    checkpoint.write_atomic(tmp_path / "b.json.gz", b"y")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [living.name, elsewhere.name, "b.json.gz"]
    )


@pytest.mark.parametrize("where", ["open", "replace"])
def test_a_failed_write_names_the_file_and_keeps_the_errno(tmp_path, monkeypatch, where):
    """A full disk (or a read-only store) while a record is written: the OSError names the file and
    what to do, with the errno of the failure; no temporary file is left."""
    full = OSError(errno.ENOSPC, "No space left on device")
    if where == "open":
        monkeypatch.setattr(checkpoint, "open", mock.Mock(side_effect=full), raising=False)
    else:
        monkeypatch.setattr(checkpoint.os, "replace", mock.Mock(side_effect=full))
    path = tmp_path / "records" / "run" / "key.json.gz"
    with pytest.raises(
        OSError, match=f"could not write {path}: No space left on device; free space"
    ) as failed:
        write_record_text(path, "{}")
    assert failed.value.errno == errno.ENOSPC and "PILCRO_RECORDS/PILCRO_RUNS" in str(failed.value)
    assert not list(path.parent.iterdir())
