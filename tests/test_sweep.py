"""The notebook sweep: grid parsing, skip/resume, failures, interruption and the summary."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pilcro_lib.runs import sweep
from pilcro_lib.runs.sweep import (
    PointResult,
    grid_points,
    parse_grid,
    point_slug,
    run_sweep,
    summary_rows,
)

KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _tiny_notebook(path, *, parameters=True):
    """A notebook with a parameters cell (x, label), a cell whose behaviour depends on x and a
    metrics cell.

    x == 3 raises; x == 5 ends its kernel (os._exit); x == 6 kills the point's process (the
    kernel's parent); x > 1 sleeps for $SWEEP_TEST_SLEEP seconds (default 0), so a sweep can be
    interrupted. With $SWEEP_TEST_PIDS set, the kernel writes its PID to a file named x there.
    """
    params = new_code_cell("x = 1\nlabel = 'a'")
    if parameters:
        params.metadata["tags"] = ["parameters"]
    nb = new_notebook(
        metadata={"kernelspec": KERNEL},
        cells=[
            params,
            new_code_cell(
                "import os, signal, time\n"
                "if os.environ.get('SWEEP_TEST_PIDS'):\n"
                "    with open(os.path.join(os.environ['SWEEP_TEST_PIDS'], str(x)), 'w') as f:\n"
                "        f.write(str(os.getpid()))\n"
                "if x == 3:\n    raise ValueError(f'x={x} is unlucky')\n"
                "if x == 5:\n    os._exit(3)\n"
                "if x == 6:\n    os.kill(os.getppid(), signal.SIGKILL)\n"
                "if x > 1:\n    time.sleep(float(os.environ.get('SWEEP_TEST_SLEEP', 0)))"
            ),
            new_code_cell(
                "from pilcro_lib.results import record_metrics\n"
                "record_metrics({'square': x * x, 'label': label})"
            ),
        ],
    )
    nbformat.write(nb, path)
    return path


def _quiet(*_):
    pass


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ grid parsing


def test_parse_grid_and_points_are_the_cartesian_product():
    grid = parse_grid(["lr=1e-3,3e-3", "seed=0,1,2", "profile=smoke"])
    assert grid == {"lr": [1e-3, 3e-3], "seed": [0, 1, 2], "profile": ["smoke"]}
    points = grid_points(grid)
    assert len(points) == 6
    assert points[0] == {"lr": 1e-3, "seed": 0, "profile": "smoke"}
    assert points[-1] == {"lr": 3e-3, "seed": 2, "profile": "smoke"}
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 6


@pytest.mark.parametrize(
    "specs, message",
    [
        ([], "at least one"),
        (["lr"], "no '=' found"),
        (["=1,2"], "not a valid parameter name"),
        (["1x=2"], "not a valid parameter name"),
        (["lr=1,,2"], "empty value"),
        (["lr="], "empty value"),
        (["lr=1,1"], "repeated"),
        (["lr=1", "lr=2"], "given twice"),
    ],
)
def test_parse_grid_rejects_bad_syntax(specs, message):
    with pytest.raises(ValueError, match=message):
        parse_grid(specs)


def test_point_slug_is_sorted_safe_and_unique():
    assert point_slug({"seed": 1, "lr": 0.001}) == "lr=0.001__seed=1"
    assert point_slug({"opt": "adam", "flag": True, "w": None}) == "flag=True__opt=adam__w=None"
    a, b = point_slug({"name": "a/b"}), point_slug({"name": "a-b"})
    assert "/" not in a and a != b and a.startswith("name=a-b__")


@pytest.mark.parametrize(
    "text, value", [("1", 1), ("0.5", 0.5), ("True", True), ("None", None), ("1e-3", 0.001)]
)
def test_point_slug_tells_a_string_from_the_value_it_reads_as(text, value):
    """The string '1' and the int 1 are different points: they must not share a notebook."""
    assert point_slug({"x": text}) != point_slug({"x": value})
    assert point_slug({"x": text}).startswith(f"x={text}__")  # still readable, with a hash
    assert point_slug({"x": float("nan")}) != "x=nan"


def test_summary_rows_prefix_metrics_that_clash_with_columns():
    results = [
        PointResult({"x": 1}, "ran", "x=1.ipynb", 1.5, {"x": 2, "status": "s", "acc": 0.5}),
        PointResult(
            {"x": 2}, "failed", "x=2.failed.ipynb", 0.5, error="E: bad", failed_cell="cell 2"
        ),
    ]
    columns, rows = summary_rows(results)
    assert columns == [
        "x",
        "status",
        "wall_time_s",
        "metric_x",
        "metric_status",
        "acc",
        "error",
        "failed_cell",
        "notebook",
    ]
    assert rows[0]["metric_x"] == 2 and rows[0]["status"] == "ran" and "acc" not in rows[1]
    # a metric that repeats its point's parameter (a notebook recording its profile) is left out
    echo = [
        PointResult({"profile": "smoke"}, "ran", "p.ipynb", 1.0, {"profile": "smoke", "acc": 0.5})
    ]
    assert summary_rows(echo)[0] == [
        "profile",
        "status",
        "wall_time_s",
        "acc",
        "error",
        "failed_cell",
        "notebook",
    ]


# ------------------------------------------------------------------ argument checks


def test_run_sweep_validates_its_arguments(tmp_path):
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    with pytest.raises(FileNotFoundError, match="not an existing .ipynb"):
        run_sweep(tmp_path / "missing.ipynb", {"x": [1]}, out=tmp_path)
    with pytest.raises(ValueError, match="workers must be"):
        run_sweep(nb, {"x": [1]}, workers=0, out=tmp_path)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) 'y'.*'x', 'label'"):
        run_sweep(nb, {"y": [1]}, out=tmp_path)
    with pytest.raises(ValueError, match="profile='huge' is not allowed"):
        run_sweep(nb, {"x": [1]}, profile="huge", out=tmp_path)
    with pytest.raises(
        ValueError, match="unknown parameter"
    ):  # the notebook has no `profile` parameter
        run_sweep(nb, {"x": [1]}, profile="smoke", out=tmp_path)
    with pytest.raises(ValueError, match="out '.*tiny.ipynb' cannot hold the sweep's folder"):
        run_sweep(nb, {"x": [1]}, out=nb)
    with pytest.raises(ValueError, match="at least one value"):
        run_sweep(nb, {"x": []}, out=tmp_path)
    with pytest.raises(ValueError, match="cwd '.*no-such' is not an existing folder"):
        run_sweep(nb, {"x": [1]}, out=tmp_path, cwd=tmp_path / "no-such")
    untagged = _tiny_notebook(tmp_path / "untagged.ipynb", parameters=False)
    with pytest.raises(ValueError, match="no code cell tagged 'parameters'"):
        run_sweep(untagged, {"x": [1]}, out=tmp_path)


@pytest.mark.parametrize(
    "argv, argument, message",
    [
        (["missing.ipynb", "--grid", "x=1"], "notebook", "not an existing .ipynb file"),
        (["notes.txt", "--grid", "x=1"], "notebook", "not an existing .ipynb file"),
        (["tiny.ipynb", "--grid", "x=1", "--workers", "0"], "--workers", "integer >= 1, got 0"),
        (["tiny.ipynb", "--grid", "x=1", "--workers", "-1"], "--workers", "integer >= 1, got -1"),
        (
            ["tiny.ipynb", "--grid", "x=1", "--workers", "abc"],
            "--workers",
            "invalid int value: 'abc'",
        ),
        (["tiny.ipynb", "--grid", "x"], "--grid", "no '=' found"),
        (["tiny.ipynb", "--grid", "x="], "--grid", "empty value"),
        (["tiny.ipynb", "--grid", "x=1,,2"], "--grid", "empty value"),
        (
            ["tiny.ipynb", "--grid", "y=1"],
            "--grid",
            "unknown parameter(s) 'y' for tiny.ipynb; its parameters are 'x', 'label'",
        ),
        (
            ["tiny.ipynb", "--grid", "x=1", "--profile", "huge"],
            "--profile",
            "invalid choice: 'huge'",
        ),
        (
            ["tiny.ipynb", "--grid", "x=1", "--profile", "smoke"],
            "--profile",
            "unknown parameter(s) 'profile'",
        ),
        (
            ["tiny.ipynb", "--grid", "x=1", "--out", "notes.txt"],
            "--out",
            "out 'notes.txt' cannot hold",
        ),
        (["tiny.ipynb", "--grid", "y=1", "--grid", "x=1"], "--grid", "unknown parameter(s) 'y'"),
        (
            ["tiny.ipynb", "--grid", "x=1", "--grid", "x=2"],
            "--grid",
            "grid entry 'x=2': 'x' is given twice",
        ),
        (
            ["tiny.ipynb", "--grid", "x=1", "--cwd", "no/such"],
            "--cwd",
            "cwd 'no/such' is not an existing folder",
        ),
    ],
)
def test_command_line_errors_name_the_argument(
    tmp_path, monkeypatch, capsys, argv, argument, message
):
    monkeypatch.chdir(tmp_path)
    _tiny_notebook(tmp_path / "tiny.ipynb")
    (tmp_path / "notes.txt").write_text("not a notebook\n")
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert f"error: argument {argument}: " in err and message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists(), "nothing is created before the arguments are checked"


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"x": 1}', "it holds a JSON dict, not a list"),
        ("[1]", "entry 1 is not an object with a point and a status"),
        ('[{"point": {"x": 1}}]', "is not an object with a point and a status"),
        ('[{"point": 5, "status": "ran"}]', "field 'point' is 5"),
        ('[{"point": {"x": 1}, "status": "ran", "metrics": [1]}]', "field 'metrics' is [1]"),
        (
            '[{"point": {"x": 1}, "status": "done"}]',
            "status 'done' is not one of 'ran', 'done before'",
        ),
        ('[{"point": {"x": 1}, "status": "ran", "colour": "red"}]', "unknown field 'colour'"),
        ("[{", "Expecting property name"),
    ],
)
def test_a_summary_json_of_another_shape_is_refused_naming_it(tmp_path, capsys, content, message):
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    summary = tmp_path / "sweeps" / "tiny" / "summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text(content)
    with pytest.raises(ValueError, match=f"{summary} is not a sweep summary") as refused:
        sweep.read_summary(summary.parent)
    assert message in str(refused.value) and "delete it" in str(refused.value)
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([str(nb), "--grid", "x=1", "--out", str(tmp_path / "sweeps")])
    err = capsys.readouterr().err
    assert (
        exit_info.value.code == 2
        and f"error: argument --out: {summary} is not a sweep summary" in err
    ), err
    assert sorted(p.name for p in summary.parent.iterdir()) == ["summary.json"], "nothing ran"


def test_a_second_sweep_on_the_same_folder_is_refused(tmp_path, capsys):
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    folder = tmp_path / "tiny"
    folder.mkdir()
    with sweep._only_sweep_on(folder):  # as a running sweep holds it
        with pytest.raises(RuntimeError, match="another sweep is running on"):
            run_sweep(nb, {"x": [1]}, out=tmp_path)
        with pytest.raises(SystemExit):
            sweep.main([str(nb), "--grid", "x=1", "--out", str(tmp_path)])
        assert "another sweep is running" in capsys.readouterr().err
    assert not list(folder.glob("*.ipynb")), "nothing ran while the folder was held"


# ----------------------------------------------------------------- real sweeps (a trivial notebook)


def test_sweep_records_failures_writes_the_summary_and_resumes(tmp_path):
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    out = tmp_path / "sweeps"
    results = run_sweep(nb, parse_grid(["x=1,2,3", "label=b"]), workers=2, out=out, log=_quiet)
    assert [r.status for r in results] == [
        "ran",
        "ran",
        "failed",
    ]  # x=3 failed, the others still ran
    folder = out / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".lock",
        "label=b__x=1.ipynb",
        "label=b__x=2.ipynb",
        "label=b__x=3.failed.ipynb",
        "summary.csv",
        "summary.json",
        "summary.md",
    ]

    rows = _read_csv(folder / "summary.csv")
    # metric columns in the order the notebook recorded them; its `label` only repeats the parameter
    assert list(rows[0]) == [
        "x",
        "label",
        "status",
        "wall_time_s",
        "square",
        "error",
        "failed_cell",
        "notebook",
    ]
    assert [(r["x"], r["status"], r["square"], r["label"]) for r in rows] == [
        ("1", "ran", "1", "b"),
        ("2", "ran", "4", "b"),
        ("3", "failed", "", "b"),
    ]
    assert float(rows[0]["wall_time_s"]) > 0
    assert rows[2]["error"] == "ValueError: x=3 is unlucky"
    assert "In [" in rows[2]["failed_cell"] and "import os, signal, time" in rows[2]["failed_cell"]
    assert rows[2]["notebook"] == "label=b__x=3.failed.ipynb"
    md = (folder / "summary.md").read_text()
    assert "3 points; 2 ran, 1 failed" in md and "| 3 | b | failed |" in md

    # Delete one finished point: a rerun runs only that one and skips the completed other.
    kept = folder / "label=b__x=2.ipynb"
    kept_mtime = kept.stat().st_mtime_ns
    (folder / "label=b__x=1.ipynb").unlink()
    again = run_sweep(nb, parse_grid(["x=1,2", "label=b"]), workers=2, out=out, log=_quiet)
    assert [r.status for r in again] == ["ran", "done before"]
    assert kept.stat().st_mtime_ns == kept_mtime
    assert again[1].metrics == {"square": 4, "label": "b"} and again[1].wall_time_s > 0


def test_an_unfinished_or_other_run_is_not_taken_for_done(tmp_path):
    (tmp_path / "out" / "tiny").mkdir(parents=True)
    for x, meta in (
        (1, {"exception": True, "parameters": {"x": 1}}),
        (2, {"exception": None, "parameters": {"x": 5}}),
    ):
        stale = new_notebook(metadata={"kernelspec": KERNEL, "papermill": meta})
        nbformat.write(stale, tmp_path / "out" / "tiny" / f"x={x}.ipynb")
    (tmp_path / "out" / "tiny" / "x=3.ipynb").write_text("{ truncated")
    assert all(
        sweep._completed(tmp_path / "out" / "tiny" / f"x={x}.ipynb", {"x": x}) is None
        for x in (1, 2, 3)
    )


def test_a_point_whose_process_dies_fails_alone(tmp_path):
    """x=5 ends its kernel, x=6 kills its point's process: those two fail, the others still run."""
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    results = run_sweep(nb, {"x": [1, 5, 6, 2]}, workers=2, out=tmp_path / "sweeps", log=_quiet)
    assert [r.status for r in results] == ["ran", "failed", "failed", "ran"]
    assert [r.metrics.get("square") for r in results] == [1, None, None, 4]
    assert "DeadKernelError" in results[1].error
    assert results[2].error == "the point's process died (killed by SIGKILL)"
    assert (
        results[2].notebook == "x=6.failed.ipynb"
        and (tmp_path / "sweeps" / "tiny" / "x=6.failed.ipynb").is_file()
    )


def test_a_narrower_rerun_keeps_the_earlier_rows(tmp_path):
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    out = tmp_path / "sweeps"
    run_sweep(nb, {"x": [1, 3]}, out=out, log=_quiet)
    assert [r.status for r in run_sweep(nb, {"x": [1]}, out=out, log=_quiet)] == ["done before"]
    rows = _read_csv(out / "tiny" / "summary.csv")
    assert [(r["x"], r["status"], r["square"], r["error"]) for r in rows] == [
        ("1", "done before", "1", ""),
        ("3", "failed", "", "ValueError: x=3 is unlucky"),
    ]
    assert "2 points; 1 done before, 1 failed" in (out / "tiny" / "summary.md").read_text()


def test_merge_results_replaces_the_same_points_and_appends_new_ones():
    earlier = [
        PointResult({"x": 1}, "ran"),
        PointResult({"x": "1"}, "failed"),
        PointResult({"x": 2}, "not run"),
    ]
    current = [PointResult({"x": 3}, "ran"), PointResult({"x": 2}, "ran")]
    merged = sweep.merge_results(earlier, current)
    assert [(r.point["x"], r.status) for r in merged] == [
        (1, "ran"),
        ("1", "failed"),
        (2, "ran"),
        (3, "ran"),
    ]


def test_a_point_runs_again_when_the_notebook_code_changed(tmp_path):
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    out = tmp_path / "sweeps"
    run_sweep(nb, {"x": [2]}, out=out, log=_quiet)
    notebook = nbformat.read(nb, as_version=4)
    notebook.cells.append(new_markdown_cell("Prose does not change what runs."))
    nbformat.write(notebook, nb)
    assert [r.status for r in run_sweep(nb, {"x": [2]}, out=out, log=_quiet)] == ["done before"]

    notebook.cells[2].source = notebook.cells[2].source.replace("x * x", "x * x + 1")
    nbformat.write(notebook, nb)
    lines = []
    results = run_sweep(nb, {"x": [2]}, out=out, log=lines.append)
    assert [(r.status, r.metrics["square"]) for r in results] == [("ran", 5)]
    assert "1 to run (1 again because the notebook's code changed since they ran)" in lines[0]


def _sweep_in_background(tmp_path, grid, *, sleep, workers=1, started=()):
    """Start ``python -m pilcro_lib.runs.sweep`` of ``grid`` (a ``x=...`` entry; points x > 1 sleep
    ``sleep`` s) in a process of its own session; return (notebook, out, process, pids) once the
    kernels of the points x in ``started`` run. ``pids/<x>`` holds the PID of point x's kernel."""
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    out, pids = tmp_path / "sweeps", tmp_path / "pids"
    pids.mkdir()
    command = [
        sys.executable,
        "-m",
        "pilcro_lib.runs.sweep",
        str(nb),
        "--grid",
        grid,
        "--workers",
        str(workers),
        "--out",
        str(out),
    ]
    env = dict(os.environ, SWEEP_TEST_SLEEP=str(sleep), SWEEP_TEST_PIDS=str(pids))
    proc = subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 60
    while (
        not all((pids / str(x)).exists() for x in started)
        and time.monotonic() < deadline
        and proc.poll() is None
    ):
        time.sleep(0.2)
    assert all((pids / str(x)).exists() for x in started), "the points did not start"
    time.sleep(0.5)  # the kernels are now sleeping
    return nb, out, proc, pids


def test_ctrl_c_keeps_finished_points_and_a_rerun_resumes(tmp_path):
    nb, out, proc, _ = _sweep_in_background(tmp_path, "x=1,2,4", sleep=60, started=[2])
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, stdout
    assert sorted(p.name for p in (out / "tiny").glob("*.ipynb")) == ["x=1.ipynb"]
    assert [r["status"] for r in _read_csv(out / "tiny" / "summary.csv")] == [
        "ran",
        "not run",
        "not run",
    ]

    results = run_sweep(nb, {"x": [1, 2, 4]}, workers=2, out=out, log=_quiet)
    assert [r.status for r in results] == ["done before", "ran", "ran"]
    assert [r.metrics["square"] for r in results] == [1, 4, 16]


def test_sigint_to_the_sweep_process_alone_lets_the_running_point_finish(tmp_path):
    """``kill -INT`` (or ``timeout -s INT``) reaches the sweep but not its points' processes: the
    point being run finishes and is kept, the points not started are skipped, and the sweep
    exits."""
    _, out, proc, _ = _sweep_in_background(tmp_path, "x=1,2,4", sleep=4, started=[2])
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout
    assert [r["status"] for r in _read_csv(out / "tiny" / "summary.csv")] == [
        "ran",
        "ran",
        "not run",
    ]
    assert sorted(p.name for p in (out / "tiny").glob("*.ipynb")) == ["x=1.ipynb", "x=2.ipynb"]


@pytest.mark.parametrize(
    "signum, whole_group, status",
    [
        (signal.SIGTERM, False, 143),  # kill PID
        (signal.SIGTERM, True, 143),  # a job scheduler or container stopping the process group
        (signal.SIGINT, True, 130),  # Ctrl-C in a terminal
    ],
)
def test_a_stopped_sweep_leaves_no_process_behind(tmp_path, signum, whole_group, status):
    psutil = pytest.importorskip("psutil")
    _, out, proc, pids = _sweep_in_background(
        tmp_path, "x=2,4,7", sleep=60, workers=2, started=[2, 4]
    )
    started = psutil.Process(proc.pid).children(
        recursive=True
    )  # the points' processes and their kernels
    assert {int((pids / x).read_text()) for x in ("2", "4")} <= {p.pid for p in started}
    (os.killpg if whole_group else os.kill)(proc.pid, signum)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == status, stdout
    assert not _still_running(psutil, started, timeout=5)
    assert [r["status"] for r in _read_csv(out / "tiny" / "summary.csv")] == ["not run"] * 3
    assert not list((out / "tiny").rglob("*.ipynb"))


def test_a_killed_sweep_takes_its_points_with_it(tmp_path):
    """SIGKILL of the sweep (it cannot catch it) also ends its points' processes and their kernels,
    so that no point goes on outside the folder's lock."""
    psutil = pytest.importorskip("psutil")
    if not sys.platform.startswith("linux"):
        pytest.skip("a child's death with its parent (prctl PR_SET_PDEATHSIG) is Linux only")
    _, _, proc, pids = _sweep_in_background(tmp_path, "x=2,4", sleep=60, workers=2, started=[2, 4])
    started = psutil.Process(proc.pid).children(recursive=True)
    assert {int((pids / x).read_text()) for x in ("2", "4")} <= {p.pid for p in started}
    proc.kill()
    proc.communicate(timeout=30)
    assert not _still_running(psutil, started, timeout=20)


def _still_running(psutil, processes, *, timeout):
    """Those of ``processes`` still running after up to ``timeout`` s (an unreaped zombie has
    ended)."""
    deadline = time.monotonic() + timeout
    while True:
        running = []
        for process in processes:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    running.append(process)
            except psutil.NoSuchProcess:
                pass
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.2)
