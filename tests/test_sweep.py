"""The notebook sweep: grid parsing, metrics, skip/resume, failures, interruption and the summary."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from pilcro_lib import sweep
from pilcro_lib.sweep import (MARKER, PointResult, grid_points, parse_grid, parse_value, point_slug,
                              read_metrics, record_metrics, run_sweep, summary_rows)

KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _tiny_notebook(path, *, parameters=True):
    """A notebook with a parameters cell (x, label), a cell that fails for x == 3 and a metrics cell.

    Points with x > 1 sleep for $SWEEP_TEST_SLEEP seconds (default 0), so a sweep can be interrupted.
    """
    params = new_code_cell("x = 1\nlabel = 'a'")
    if parameters:
        params.metadata["tags"] = ["parameters"]
    nb = new_notebook(metadata={"kernelspec": KERNEL}, cells=[
        params,
        new_code_cell("import os, time\n"
                      "if x == 3:\n    raise ValueError(f'x={x} is unlucky')\n"
                      "if x > 1:\n    time.sleep(float(os.environ.get('SWEEP_TEST_SLEEP', 0)))"),
        new_code_cell("from pilcro_lib.sweep import record_metrics\n"
                      "record_metrics({'square': x * x, 'label': label})"),
    ])
    nbformat.write(nb, path)
    return path


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ grid parsing


@pytest.mark.parametrize("text, expected", [
    ("3", 3), ("-2", -2), ("1e-3", 1e-3), ("0.5", 0.5), (".5", 0.5), ("2.", 2.0),
    ("True", True), ("false", False), ("None", None), ("null", None),
    ("adam", "adam"), ("nan", "nan"), ("1e", "1e"), ("fashion_mnist", "fashion_mnist"),
])
def test_parse_value(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_parse_grid_and_points_are_the_cartesian_product():
    grid = parse_grid(["lr=1e-3,3e-3", "seed=0,1,2", "profile=smoke"])
    assert grid == {"lr": [1e-3, 3e-3], "seed": [0, 1, 2], "profile": ["smoke"]}
    points = grid_points(grid)
    assert len(points) == 6
    assert points[0] == {"lr": 1e-3, "seed": 0, "profile": "smoke"}
    assert points[-1] == {"lr": 3e-3, "seed": 2, "profile": "smoke"}
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 6


@pytest.mark.parametrize("specs, message", [
    ([], "at least one"),
    (["lr"], "no '=' found"),
    (["=1,2"], "not a valid parameter name"),
    (["1x=2"], "not a valid parameter name"),
    (["lr=1,,2"], "empty value"),
    (["lr="], "empty value"),
    (["lr=1,1"], "repeated"),
    (["lr=1", "lr=2"], "given twice"),
])
def test_parse_grid_rejects_bad_syntax(specs, message):
    with pytest.raises(ValueError, match=message):
        parse_grid(specs)


def test_point_slug_is_sorted_safe_and_unique():
    assert point_slug({"seed": 1, "lr": 0.001}) == "lr=0.001__seed=1"
    a, b = point_slug({"name": "a/b"}), point_slug({"name": "a-b"})
    assert "/" not in a and a != b and a.startswith("name=a-b__")


# ------------------------------------------------------------------ metrics


def test_record_metrics_prints_one_marked_json_line_that_read_metrics_reads(capsys):
    np = pytest.importorskip("numpy")
    clean = record_metrics({"acc": np.float32(0.5), "n": 3, "name": "x", "none": None})
    line = capsys.readouterr().out
    assert line == f'{MARKER} {{"acc": 0.5, "n": 3, "name": "x", "none": null}}\n'
    assert clean == {"acc": 0.5, "n": 3, "name": "x", "none": None}
    nb = new_notebook(cells=[
        new_code_cell("", outputs=[new_output("stream", name="stdout", text="epoch 1\n" + line)]),
        new_code_cell("", outputs=[new_output("stream", name="stdout", text=f'{MARKER} {{"acc": 0.75}}\n')]),
    ])
    assert read_metrics(nb) == {"acc": 0.75, "n": 3, "name": "x", "none": None}


@pytest.mark.parametrize("metrics, error", [
    ([("a", 1)], "metrics must be a dict"), ({1: 2}, "non-empty string"), ({"a": [1, 2]}, r"metrics\['a'\]"),
])
def test_record_metrics_rejects_bad_input(metrics, error):
    with pytest.raises(TypeError, match=error):
        record_metrics(metrics)


def test_summary_rows_prefix_metrics_that_clash_with_columns():
    results = [PointResult({"x": 1}, "ran", "x=1.ipynb", 1.5, {"x": 2, "status": "s", "acc": 0.5}),
               PointResult({"x": 2}, "failed", "x=2.failed.ipynb", 0.5, error="E: bad", failed_cell="cell 2")]
    columns, rows = summary_rows(results)
    assert columns == ["x", "status", "wall_time_s", "metric_x", "metric_status", "acc",
                       "error", "failed_cell", "notebook"]
    assert rows[0]["metric_x"] == 2 and rows[0]["status"] == "ran" and "acc" not in rows[1]
    # a metric that repeats its point's parameter (a notebook recording its profile) is left out
    echo = [PointResult({"profile": "smoke"}, "ran", "p.ipynb", 1.0, {"profile": "smoke", "acc": 0.5})]
    assert summary_rows(echo)[0] == ["profile", "status", "wall_time_s", "acc", "error", "failed_cell", "notebook"]


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
    with pytest.raises(ValueError, match="unknown parameter"):  # the notebook has no `profile` parameter
        run_sweep(nb, {"x": [1]}, profile="smoke", out=tmp_path)
    with pytest.raises(ValueError, match="at least one value"):
        run_sweep(nb, {"x": []}, out=tmp_path)
    untagged = _tiny_notebook(tmp_path / "untagged.ipynb", parameters=False)
    with pytest.raises(ValueError, match="no code cell tagged 'parameters'"):
        run_sweep(untagged, {"x": [1]}, out=tmp_path)


@pytest.mark.parametrize("argv, message", [
    (["--grid", "x"], "no '=' found"),
    (["--grid", "x=1", "--workers", "0"], "--workers must be >= 1"),
    (["--grid", "x=1", "--profile", "huge"], "invalid choice"),
])
def test_command_line_errors_are_clear(tmp_path, capsys, argv, message):
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    with pytest.raises(SystemExit) as exit_info:
        sweep.main([str(nb), *argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


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


# ------------------------------------------------------------------ real sweeps (a trivial notebook)


def test_sweep_records_failures_writes_the_summary_and_resumes(tmp_path):
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    out = tmp_path / "sweeps"
    results = run_sweep(nb, parse_grid(["x=1,2,3", "label=b"]), workers=2, out=out, log=lambda *_: None)
    assert [r.status for r in results] == ["ran", "ran", "failed"]  # x=3 failed, the others still ran
    folder = out / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".lock", "label=b__x=1.ipynb", "label=b__x=2.ipynb", "label=b__x=3.failed.ipynb", "summary.csv", "summary.md"]

    rows = _read_csv(folder / "summary.csv")
    # metric columns in the order the notebook recorded them; its `label` only repeats the parameter
    assert list(rows[0]) == ["x", "label", "status", "wall_time_s", "square",
                             "error", "failed_cell", "notebook"]
    assert [(r["x"], r["status"], r["square"], r["label"]) for r in rows] == [
        ("1", "ran", "1", "b"), ("2", "ran", "4", "b"), ("3", "failed", "", "b")]
    assert float(rows[0]["wall_time_s"]) > 0
    assert rows[2]["error"] == "ValueError: x=3 is unlucky"
    assert "In [" in rows[2]["failed_cell"] and "import os, time" in rows[2]["failed_cell"]
    assert rows[2]["notebook"] == "label=b__x=3.failed.ipynb"
    md = (folder / "summary.md").read_text()
    assert "3 points; 2 ran, 1 failed" in md and "| 3 | b | failed |" in md

    # Delete one finished point: a rerun runs only that one and skips the completed other.
    kept = folder / "label=b__x=2.ipynb"
    kept_mtime = kept.stat().st_mtime_ns
    (folder / "label=b__x=1.ipynb").unlink()
    again = run_sweep(nb, parse_grid(["x=1,2", "label=b"]), workers=2, out=out, log=lambda *_: None)
    assert [r.status for r in again] == ["ran", "done before"]
    assert kept.stat().st_mtime_ns == kept_mtime
    assert again[1].metrics == {"square": 4, "label": "b"} and again[1].wall_time_s > 0


def test_an_unfinished_or_other_run_is_not_taken_for_done(tmp_path):
    (tmp_path / "out" / "tiny").mkdir(parents=True)
    for x, meta in ((1, {"exception": True, "parameters": {"x": 1}}), (2, {"exception": None, "parameters": {"x": 5}})):
        stale = new_notebook(metadata={"kernelspec": KERNEL, "papermill": meta})
        nbformat.write(stale, tmp_path / "out" / "tiny" / f"x={x}.ipynb")
    (tmp_path / "out" / "tiny" / "x=3.ipynb").write_text("{ truncated")
    assert all(sweep._completed(tmp_path / "out" / "tiny" / f"x={x}.ipynb", {"x": x}) is None for x in (1, 2, 3))


def _sweep_until_x2_runs(tmp_path, *, sleep):
    """Start a sweep of x=1,2,4 (one worker; x > 1 sleeps ``sleep`` s) in a process of its own
    session and return (notebook, out, process) once x=1 is done and x=2 is running."""
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    out = tmp_path / "sweeps"
    command = [sys.executable, "-m", "pilcro_lib.sweep", str(nb), "--grid", "x=1,2,4", "--out", str(out)]
    proc = subprocess.Popen(command, env=dict(os.environ, SWEEP_TEST_SLEEP=str(sleep)), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = out / "tiny" / "x=1.ipynb"
    deadline = time.monotonic() + 40
    while not first.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert first.exists(), "the first point did not finish"
    time.sleep(1.0)  # x=2 is now sleeping inside its kernel
    return nb, out, proc


def test_ctrl_c_keeps_finished_points_and_a_rerun_resumes(tmp_path):
    nb, out, proc = _sweep_until_x2_runs(tmp_path, sleep=60)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, stdout
    assert sorted(p.name for p in (out / "tiny").glob("*.ipynb")) == ["x=1.ipynb"]
    assert [r["status"] for r in _read_csv(out / "tiny" / "summary.csv")] == ["ran", "not run", "not run"]

    results = run_sweep(nb, {"x": [1, 2, 4]}, workers=2, out=out, log=lambda *_: None)
    assert [r.status for r in results] == ["done before", "ran", "ran"]
    assert [r.metrics["square"] for r in results] == [1, 4, 16]


def test_sigint_to_the_sweep_process_alone_lets_the_running_point_finish(tmp_path):
    """``kill -INT`` (or ``timeout -s INT``) reaches the sweep but not its workers: the point being
    run finishes and is kept, the points not started are skipped, and the sweep exits."""
    _, out, proc = _sweep_until_x2_runs(tmp_path, sleep=4)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout
    assert [r["status"] for r in _read_csv(out / "tiny" / "summary.csv")] == ["ran", "ran", "not run"]
    assert sorted(p.name for p in (out / "tiny").glob("*.ipynb")) == ["x=1.ipynb", "x=2.ipynb"]
