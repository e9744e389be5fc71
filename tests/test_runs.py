"""Planning a notebook's runs and computing them elsewhere: planning mode of cached_run, request files,
the plan/compute command on a tiny notebook and on chapter 0 (smoke profile), through the local executor."""

import os
import subprocess
import sys
from pathlib import Path

import papermill
import pytest
import torch

from pilcro_lib.runs import cli as runs
from pilcro_lib.data import load_dataset
from pilcro_lib.runs.executors import LocalExecutor
from pilcro_lib.runs.plans import list_requests, load_request
from pilcro_lib.runs.records import PLAN_ENV, MissingRun, cached_run, read_record
from tiny_runs import records_of, write_notebook

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
    data = load_dataset("fashion_mnist_sample", "train")  # 1.5 MB of images: stored apart from the requests
    monkeypatch.setenv(PLAN_ENV, str(stores / "plan"))
    planned = [cached_run(mean_of, name="m", data=data, seed=s) for s in range(3)]  # nothing is read: all planned
    assert not list((stores / "records").glob("**/*.json*")), "planning must train nothing"
    for read in (lambda r: r.metrics["mean"], lambda r: dict(r.metrics), lambda r: r.provenance["commit"],
                 lambda r: {**r.metrics}, lambda r: len(r.metrics)):
        with pytest.raises(MissingRun, match=f"run m/{planned[0].key} has no record yet"):
            read(planned[0])
    files = list_requests(stores / "plan")
    assert sorted(f.key for f in files) == sorted(r.key for r in planned)
    assert {f.summary for f in files} == {f"mean_of(seed={s})" for s in range(3)}
    assert len({digest for f in files for digest in f.blobs}) == 1, "the dataset's images are stored once"
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
    assert cached_run(mean_of, name="m", data=data, seed=1).metrics == direct.metrics, "a stored run is not planned"
    assert not list((stores / "plan2").glob("*.pkl"))


# --------------------------------------------------------------------------- the command, through the local executor


def test_plan_then_compute_in_stages_gives_the_records_of_a_local_execution(stores, capsys):
    nb = write_notebook(stores / "tiny.ipynb")
    assert runs.main(["plan", str(nb), "-p", "choose", "True"]) == 0
    out = capsys.readouterr().out
    assert "3 run(s) of tiny.ipynb have no record" in out and "run(seed=2, scale=1.0, pause=0.0)" in out
    assert runs.main(["compute", str(nb), "-p", "choose", "True", "--executor", "local", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("| computed |") == 4, out  # 3 runs, then the one chosen on their scores
    assert "tiny: run(seed=1, scale=1.0, pause=0.0)" in out and "scale=2.0" in out
    assert "nothing is missing" in out, "the last stage executed the notebook to its end from the records"
    assert 'make execute NB=' in out and 'PARAMS="choose=True"' in out
    assert (stores / "runs" / "plans" / "tiny" / "summary.md").is_file()
    computed = records_of(stores / "records")

    os.environ["PILCRO_RECORDS"] = str(stores / "local-records")  # the same notebook, executed as usual
    papermill.execute_notebook(str(nb), str(stores / "local.ipynb"), parameters={"choose": True}, progress_bar=False)
    assert records_of(stores / "local-records") == computed



def test_a_chapter_in_the_smoke_profile_computed_through_local_renders_from_its_record(stores):
    chapter = REPO / "notebooks" / "00_getting_started.ipynb"
    with LocalExecutor() as executor:
        done = runs.compute(chapter, executor, profile="smoke", log=lambda line: None)
    assert (done.status, done.stages) == ("complete", 2), done.message
    assert [o.status for o in done.outcomes] == ["computed"]
    (record,) = (stores / "records" / "00_getting_started").glob("*.json*")
    assert record.name == f"{done.outcomes[0].key}.json.gz"  # and stage 2 executed the chapter to its end from the record


def test_the_stage_limit_and_a_failing_notebook_are_reported(stores):
    nb = write_notebook(stores / "tiny.ipynb")
    with LocalExecutor() as executor:
        done = runs.compute(nb, executor, parameters={"choose": True, "seeds": 1}, max_stages=1, log=lambda line: None)
        assert done.status == "stage limit" and "after 1 stages" in done.message
        failed = runs.compute(nb, executor, parameters={"seeds": 0, "choose": True}, log=lambda line: None)  # max() of nothing
    assert failed.status == "notebook failed" and "ValueError" in failed.message


@pytest.mark.parametrize("argv, message", [
    (["compute", "{nb}", "--address", "auto"], "--address is an option of --executor ray, not of local"),
    (["compute", "{nb}", "--executor", "slurm", "--workers", "2"], "--workers is an option of --executor local"),
    (["plan", "{nb}", "-p", "nope", "1"], "unknown parameter(s) 'nope'"),
    (["plan", "{nb}", "-p", "profile", "smoke"], "give the profile with --profile"),
    (["compute", "{nb}", "--gpus-per-run", "-1"], "gpus_per_run must be a number >= 0"),
    (["compute", "{nb}", "--max-stages", "0"], "argument --max-stages: must be an integer >= 1"),
])
def test_bad_arguments_name_the_argument(argv, message, tmp_path, capsys):
    nb = write_notebook(tmp_path / "tiny.ipynb")
    with pytest.raises(SystemExit) as stop:
        runs.main([a.format(nb=nb) for a in argv])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_a_second_plan_of_the_same_notebook_waits_for_none(tmp_path, capsys):
    nb = write_notebook(tmp_path / "tiny.ipynb")
    with runs._only_one(tmp_path / "plans" / "tiny"), pytest.raises(SystemExit) as stop:
        runs.main(["plan", str(nb), "--plans", str(tmp_path / "plans")])
    assert stop.value.code == 2
    assert "argument --plans: another plan or compute of this notebook holds" in capsys.readouterr().err


def test_the_documented_command_line_runs_as_a_module(tmp_path):
    """``python -m pilcro_lib.runs`` (what the README and the Makefile call) is a command, and
    the package holds every module it needs as tracked files (none hidden by an ignore rule)."""
    done = subprocess.run([sys.executable, "-m", "pilcro_lib.runs", "compute", "--help"],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m pilcro_lib.runs compute" in done.stdout
    if (REPO / ".git").exists():
        files = {p.name for p in (REPO / "pilcro_lib" / "runs").glob("*.py")}
        ignored = subprocess.run(["git", "check-ignore", *files], capture_output=True, text=True,
                                 cwd=REPO / "pilcro_lib" / "runs", check=False).stdout.split()
        assert {"__init__.py", "__main__.py"} <= files and not ignored, ignored
