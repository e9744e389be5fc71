"""Run a notebook once per point of a parameter grid, in parallel, and tabulate the results.

Command line::

    python -m pilcro_lib.sweep notebooks/00_getting_started.ipynb \\
        --grid lr=1e-3,3e-3 seed=0,1 --workers 2 --out runs/sweeps --profile smoke

runs the notebook through papermill once per point of the cartesian product of the grid
(here 4 points), each in a worker process, with the point's values injected as papermill
parameters. Values are parsed as ``int``, ``float``, ``True``/``False``, ``None`` or else kept
as strings; a value cannot contain a comma. Every grid key must be a parameter of the
notebook's cell tagged ``parameters``. ``--profile P`` sets the notebook's ``profile``
parameter (and ``PILCRO_PROFILE`` in the kernel's environment) for every point; it is part of
each point, so runs of different profiles do not overwrite each other.

Outputs, for a notebook ``NAME.ipynb``, under ``OUT/NAME/``:

- ``<point-slug>.ipynb``: the executed notebook of a point that completed, e.g.
  ``lr=0.001__profile=smoke__seed=0.ipynb``. A point is executed into ``.partial/`` and
  renamed into place only when it completed, so an interrupted point is never taken for done.
- ``<point-slug>.failed.ipynb``: the executed notebook of a point whose run raised, up to the
  failing cell.
- ``.lock``: held by the running sweep; a second sweep on the same folder stops at once with an
  error instead of racing the first.
- ``summary.csv`` and ``summary.md``: one row per point with its parameters, ``status``
  (``ran``, ``done before`` = completed in an earlier sweep and skipped, ``failed``,
  ``not run`` = the sweep was interrupted first), ``wall_time_s`` (papermill's execution
  time), the point's final metrics, and for failures the error and the cell that raised.

Re-running the same command skips every point that already completed and runs the rest, so
a sweep stopped with Ctrl-C (finished points stay intact) resumes where it stopped. Delete
``OUT/NAME/`` to start over.

Final metrics. A notebook reports its headline numbers by calling :func:`record_metrics`, e.g.
as the last line of a cell::

    from pilcro_lib.sweep import record_metrics
    record_metrics({"test_accuracy": 0.91, "test_loss": 0.25})

which prints one line ``PILCRO_METRICS {"test_accuracy": 0.91, "test_loss": 0.25}`` (the
marker, a space, then the dict as JSON) into the cell's output. The sweep reads these lines
back from the executed notebook's stream outputs; if several are printed, later keys update
earlier ones. Values must be numbers, strings, booleans or ``None`` (NumPy and torch scalars
are converted).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import json
import math
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = "PILCRO_METRICS"
PROFILES = ("smoke", "book", "paper")  # the same as pilcro_lib.utils.PROFILES, without importing torch
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_FIXED_COLUMNS = ("status", "wall_time_s", "error", "failed_cell", "notebook")


# --------------------------------------------------------------------------- metrics


def record_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Print ``metrics`` as one ``PILCRO_METRICS {json}`` line, for a sweep to read back.

    ``metrics`` maps names (``str``) to numbers, strings, booleans or ``None``; NumPy and torch
    scalars are converted with ``.item()``. The order of the names is kept. Returns the converted dict.
    """
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of name -> value, got {type(metrics).__name__}")
    clean: dict[str, Any] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"metrics: every name must be a non-empty string, got {name!r}")
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise TypeError(
                f"metrics[{name!r}] must be a number, string, bool or None, got {type(value).__name__}")
        clean[name] = value
    print(f"{MARKER} {json.dumps(clean)}", flush=True)
    return clean


def read_metrics(notebook: Any) -> dict[str, Any]:
    """The metrics a notebook (an ``nbformat`` node or its JSON dict) printed with :func:`record_metrics`."""
    metrics: dict[str, Any] = {}
    for line in stream_lines(notebook):
        if line.startswith(MARKER + " "):
            metrics.update(json.loads(line[len(MARKER) + 1:]))
    return metrics


def stream_lines(notebook: Any) -> Iterator[str]:
    """Every line the code cells of a stored notebook printed (stdout and stderr), in order."""
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") == "stream":
                text = output.get("text", "")
                yield from ("".join(text) if isinstance(text, list) else text).splitlines()


# --------------------------------------------------------------------------- grid


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"True"`` -> True, ``"None"`` -> None, else the string."""
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    return text


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """Parse ``["key=v1,v2", "key2=v3"]`` into ``{"key": [v1, v2], "key2": [v3]}`` (values parsed)."""
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise ValueError("grid: give at least one key=v1,v2,... entry")
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"grid entry {spec!r} must look like key=v1,v2,... (no '=' found)")
        if not _KEY.match(key):
            raise ValueError(f"grid entry {spec!r}: {key!r} is not a valid parameter name")
        if key in grid:
            raise ValueError(f"grid entry {spec!r}: parameter {key!r} is given twice")
        items = [v.strip() for v in values.split(",")]
        if not values.strip() or any(not v for v in items):
            raise ValueError(f"grid entry {spec!r}: empty value (write key=v1,v2 with no empty items)")
        parsed = [parse_value(v) for v in items]
        if len({json.dumps(v) for v in parsed}) != len(parsed):
            raise ValueError(f"grid entry {spec!r}: a value is repeated")
        grid[key] = parsed
    return grid


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``grid`` as a list of ``{key: value}`` dicts, first key slowest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def point_slug(point: Mapping[str, Any]) -> str:
    """A file-name-safe, unique name for a point: ``key=value`` pairs sorted by key, joined by ``__``.

    Characters outside ``[A-Za-z0-9._+-]`` in a value become ``-``; if that changed anything, a
    short hash of the exact point is appended so that two points never share a name.
    """
    raw = "__".join(f"{k}={_format(point[k])}" for k in sorted(point))
    safe = "__".join(f"{k}={_SLUG_UNSAFE.sub('-', _format(point[k]))}" for k in sorted(point))
    if safe != raw:
        safe += "__" + hashlib.sha1(json.dumps(dict(point), sort_keys=True).encode()).hexdigest()[:8]
    return safe


def _format(value: Any) -> str:
    return repr(value) if isinstance(value, float) and not math.isfinite(value) else str(value)


# --------------------------------------------------------------------------- one point


@dataclass
class PointResult:
    """What happened to one grid point."""

    point: dict[str, Any]
    status: str  # ran | done before | failed | not run
    notebook: str = ""
    wall_time_s: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    failed_cell: str = ""


def _completed(path: Path, point: Mapping[str, Any]) -> Any | None:
    """The executed notebook at ``path`` if it exists, completed and ran with ``point``, else None."""
    import nbformat

    if not path.is_file():
        return None
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception:  # unreadable: not done
        return None
    meta = notebook.metadata.get("papermill", {})
    ran_with = json.loads(json.dumps(meta.get("parameters", {})))
    if meta.get("exception") or ran_with != json.loads(json.dumps(dict(point))):
        return None
    return notebook


def _duration(notebook: Any) -> float | None:
    duration = notebook.metadata.get("papermill", {}).get("duration")
    return round(float(duration), 2) if duration is not None else None


# A worker's state: Ctrl-C interrupts the point it runs and makes it skip the points it is given after.
_WORKER: dict[str, Any] = {"running": False, "interrupted": False, "stop": None}


def _on_sigint(signum: int, frame: Any) -> None:
    _WORKER["interrupted"] = True
    if _WORKER["running"]:
        raise KeyboardInterrupt


def _init_worker(stop: Any) -> None:
    _WORKER["stop"] = stop
    signal.signal(signal.SIGINT, _on_sigint)


def _run_point(notebook: str, point: dict[str, Any], folder: str, cwd: str | None) -> PointResult:
    """Execute ``notebook`` with ``point`` into ``folder`` (runs in a worker process)."""
    stop = _WORKER["stop"]
    if _WORKER["interrupted"] or (stop is not None and stop.is_set()):
        return PointResult(point=point, status="not run", error="interrupted")
    _WORKER["running"] = True
    try:
        return _execute_point(notebook, point, folder, cwd)
    finally:
        _WORKER["running"] = False


def _execute_point(notebook: str, point: dict[str, Any], folder: str, cwd: str | None) -> PointResult:
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    folder_path = Path(folder)
    slug = point_slug(point)
    final = folder_path / f"{slug}.ipynb"
    failed = folder_path / f"{slug}.failed.ipynb"
    partial = folder_path / ".partial" / f"{slug}.ipynb"
    partial.parent.mkdir(parents=True, exist_ok=True)
    if "profile" in point:
        os.environ["PILCRO_PROFILE"] = str(point["profile"])
    start = time.perf_counter()
    result = PointResult(point=point, status="ran", notebook=final.name)
    try:
        papermill.execute_notebook(notebook, str(partial), parameters=point, cwd=cwd,
                                   progress_bar=False, log_output=False)
    except PapermillExecutionError as error:
        first_line = next((line for line in error.source.splitlines() if line.strip()), "")
        result.status, result.notebook = "failed", failed.name
        result.error = f"{error.ename}: {error.evalue}"
        result.failed_cell = f"cell {error.cell_index} (In [{error.exec_count}]): {first_line[:80]}"
    except KeyboardInterrupt:
        partial.unlink(missing_ok=True)
        return PointResult(point=point, status="not run", error="interrupted")
    except Exception as error:  # the kernel did not start, the notebook could not be written, ...
        result.status, result.notebook = "failed", failed.name
        result.error = f"{type(error).__name__}: {error}"
    result.wall_time_s = round(time.perf_counter() - start, 2)
    if partial.is_file():
        executed = nbformat.read(partial, as_version=4)
        result.wall_time_s = _duration(executed) or result.wall_time_s
        result.metrics = read_metrics(executed)
        if result.status == "ran":
            failed.unlink(missing_ok=True)
        os.replace(partial, final if result.status == "ran" else failed)
    elif result.status == "ran":
        result.status, result.notebook, result.error = "failed", "", "papermill wrote no notebook"
    return result


# --------------------------------------------------------------------------- summary


def summary_rows(results: Iterable[PointResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the tidy summary table (one row per point).

    Columns: the parameters, ``status``, ``wall_time_s``, the metrics (named ``metric_<name>``
    only where a name clashes with another column; left out where a metric only repeats its
    point's parameter of the same name, e.g. ``profile``), ``error``, ``failed_cell``, ``notebook``.
    """
    results = list(results)
    params = list(dict.fromkeys(k for r in results for k in r.point))
    echoes = {k for r in results for k in r.metrics  # a metric that only repeats its point's parameter
              if k in params and all(q.metrics.get(k, q.point.get(k)) == q.point.get(k) for q in results)}
    metric_names = [k for k in dict.fromkeys(k for r in results for k in r.metrics) if k not in echoes]
    taken = set(params) | set(_FIXED_COLUMNS)
    metric_columns = {m: f"metric_{m}" if m in taken else m for m in metric_names}
    columns = params + ["status", "wall_time_s"] + list(metric_columns.values()) + list(_FIXED_COLUMNS[2:])
    rows = []
    for r in results:
        row = {**r.point, "status": r.status, "wall_time_s": r.wall_time_s, "error": r.error,
               "failed_cell": r.failed_cell, "notebook": r.notebook}
        row.update({metric_columns[m]: v for m, v in r.metrics.items() if m not in echoes})
        rows.append(row)
    return columns, rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_summary(results: Sequence[PointResult], folder: Path) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` into ``folder`` (each atomically); return their paths."""
    columns, rows = summary_rows(results)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: ("" if row.get(c) is None else row.get(c)) for c in columns} for row in rows)
    counts = {s: sum(r.status == s for r in results) for s in ("ran", "done before", "failed", "not run")}
    lines = [
        f"# Sweep summary: {len(results)} points; " + ", ".join(f"{n} {s}" for s, n in counts.items() if n),
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        cells = [_cell(row.get(c)).replace("|", "\\|").replace("\n", " ") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    paths = folder / "summary.csv", folder / "summary.md"
    for path, content in zip(paths, (text.getvalue(), "\n".join(lines) + "\n")):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(content)
        os.replace(tmp, path)
    return paths


# --------------------------------------------------------------------------- the sweep


def run_sweep(notebook: str | Path, grid: Mapping[str, Sequence[Any]], *, workers: int = 1,
              out: str | Path = "runs/sweeps", profile: str | None = None,
              cwd: str | Path | None = None, log=print) -> list[PointResult]:
    """Run ``notebook`` at every point of ``grid``; return one :class:`PointResult` per point.

    Points already completed under ``out`` are skipped; failures are recorded, not raised.
    ``cwd``: the kernel's working directory (default: the notebook's folder). On Ctrl-C
    (SIGINT), points not yet started are skipped, the summary is written and
    ``KeyboardInterrupt`` is raised again. A point being run is interrupted if its worker got the
    signal too (Ctrl-C in a terminal signals the whole process group), else it finishes first.
    """
    import papermill

    notebook = Path(notebook)
    if not notebook.is_file() or notebook.suffix != ".ipynb":
        raise FileNotFoundError(f"notebook {str(notebook)!r} is not an existing .ipynb file")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise ValueError("grid must give at least one value for each of at least one parameter")
    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise ValueError(f"{notebook} has no code cell tagged 'parameters', so nothing can be swept")
    grid = dict(grid)
    if profile is not None:
        if profile not in PROFILES:
            raise ValueError(f"profile={profile!r} is not allowed; choose one of {', '.join(map(repr, PROFILES))}")
        if "profile" in grid:
            raise ValueError("give the profile either with --profile or in the grid, not both")
        grid["profile"] = [profile]
    unknown = [k for k in grid if k not in declared]
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))} for {notebook.name}; "
                         f"its parameters are {', '.join(map(repr, declared))}")
    folder = Path(out) / notebook.stem
    folder.mkdir(parents=True, exist_ok=True)
    cwd = str(Path(cwd) if cwd is not None else notebook.resolve().parent)
    with _only_sweep_on(folder):
        return _sweep(notebook, grid_points(grid), folder, workers, cwd, log)


@contextmanager
def _only_sweep_on(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/.lock``, so that two sweeps never share a folder."""
    import fcntl

    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"out: another sweep is running on {folder}; wait for it to finish "
                               "or give another --out") from None
        yield


def _sweep(notebook: Path, points: list[dict[str, Any]], folder: Path, workers: int, cwd: str, log) -> list[PointResult]:
    """:func:`run_sweep` once its arguments are checked and it holds ``folder``."""
    results: list[PointResult] = []
    todo: list[int] = []
    for index, point in enumerate(points):
        path = folder / f"{point_slug(point)}.ipynb"
        done = _completed(path, point)
        if done is not None:
            results.append(PointResult(point, "done before", path.name, _duration(done), read_metrics(done)))
        else:
            results.append(PointResult(point, "not run"))
            todo.append(index)
    log(f"{notebook.name}: {len(points)} points, {len(points) - len(todo)} done before, "
        f"{len(todo)} to run with {min(workers, max(len(todo), 1))} worker(s) -> {folder}")
    write_summary(results, folder)
    if not todo:
        return results

    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    interrupted = threading.Event()
    with _sigint_sets(interrupted):  # Ctrl-C is handled between waits, never inside the pool's machinery
        pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context,
                                   initializer=_init_worker, initargs=(stop,))
        futures = {pool.submit(_run_point, str(notebook.resolve()), points[i], str(folder.resolve()), cwd): i
                   for i in todo}
        pending = set(futures)
        while pending and not interrupted.is_set():
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                index = futures[future]
                results[index] = r = _outcome(future, points[index])
                log(f"  [{r.status}] {point_slug(r.point)} ({r.wall_time_s} s)" + (f": {r.error}" if r.error else ""))
                write_summary(results, folder)
    if interrupted.is_set():
        log("interrupted: finished points are kept; run the same command again to resume")
        stop.set()  # workers skip the points they have not started
    pool.shutdown(wait=True, cancel_futures=True)
    if interrupted.is_set():
        for future, index in futures.items():
            if future.done() and not future.cancelled() and results[index].status == "not run":
                results[index] = _outcome(future, points[index])
        write_summary(results, folder)
    _remove_if_empty(folder / ".partial")
    if interrupted.is_set():
        raise KeyboardInterrupt
    return results


def _outcome(future: Future, point: dict[str, Any]) -> PointResult:
    """The result of a finished point's future; a failure if the worker process itself died."""
    try:
        return future.result()
    except Exception as error:
        return PointResult(point, "failed", error=f"{type(error).__name__}: {error}")


@contextmanager
def _sigint_sets(event: threading.Event) -> Iterator[None]:
    """In the main thread, make SIGINT (Ctrl-C) set ``event`` instead of raising, while inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # missing, or not empty
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m pilcro_lib.sweep",
        description="Run a notebook once per point of a parameter grid (papermill), in parallel.")
    parser.add_argument("notebook", help="the notebook (.ipynb) to run")
    parser.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2",
                        help="parameter values to sweep; the points are the cartesian product")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    parser.add_argument("--out", default="runs/sweeps", help="output folder (default runs/sweeps)")
    parser.add_argument("--profile", choices=PROFILES, help="the notebooks' profile for every point")
    parser.add_argument("--cwd", help="the kernels' working directory (default: the notebook's folder)")
    args = parser.parse_args(argv)
    try:
        grid = parse_grid(args.grid)
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        results = run_sweep(args.notebook, grid, workers=args.workers, out=args.out,
                            profile=args.profile, cwd=args.cwd)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        return 130
    folder = Path(args.out) / Path(args.notebook).stem
    failed = sum(r.status == "failed" for r in results)
    print(f"summary: {folder / 'summary.md'} and {folder / 'summary.csv'}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
