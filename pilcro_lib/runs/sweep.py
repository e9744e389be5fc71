"""Run a notebook once per point of a parameter grid, in parallel, and tabulate the results.

Command line::

    python -m pilcro_lib.runs.sweep notebooks/00_getting_started.ipynb \\
        --grid lr=1e-3,3e-3 seed=0,1 --workers 2 --out runs/sweeps --profile smoke

runs the notebook through papermill once per point of the cartesian product of the grid
(here 4 points), each in a process of its own with at most ``--workers`` at a time, with the
point's values injected as papermill parameters. Values are parsed as ``int``, ``float``,
``True``/``False``, ``None`` or else kept as strings; a value cannot contain a comma. Every grid
key must be a parameter of the notebook's cell tagged ``parameters``. ``--profile P`` sets the
notebook's ``profile`` parameter (and ``PILCRO_PROFILE`` in the kernel's environment) for every
point; it is part of each point, so runs of different profiles do not overwrite each other.
``--grid`` may be repeated (its entries add up); a key given twice is refused. ``--cwd`` must
be an existing folder. Bad arguments stop the command at once with an ``error:`` line that names
the argument (exit status 2).

Outputs, for a notebook ``NAME.ipynb``, under ``OUT/NAME/``:

- ``<point-slug>.ipynb``: the executed notebook of a point that completed, e.g.
  ``lr=0.001__profile=smoke__seed=0.ipynb``. A value is written as it reads on the command line
  when that is file-name-safe and reads back as the same value; otherwise (the string ``'1'``,
  ``'a/b'``, ``nan``) a short hash of the point is appended, so two points never share a name.
  A point is executed into ``.partial/`` and renamed into place only when it completed, so an
  interrupted point is never taken for done. Its metadata ``pilcro_sweep.code_sha256`` is the
  SHA-256 of the notebook's code cells it ran (:func:`notebook_digest`).
- ``<point-slug>.failed.ipynb``: the executed notebook of a point whose run raised, up to the
  failing cell (or up to where its process died).
- ``.lock``: held by the running sweep; a second sweep on the same folder stops at once with an
  error instead of racing the first.
- ``summary.csv`` and ``summary.md``: one row per point with its parameters, ``status``
  (``ran``, ``done before`` = completed in an earlier sweep and skipped, ``failed``,
  ``not run`` = the sweep was interrupted first), ``wall_time_s`` (papermill's execution
  time), the point's final metrics, and for failures the error and the cell that raised.
  ``summary.json`` holds the same records, typed. A sweep keeps the rows of the folder's
  earlier points that it does not run itself (with their earlier status), so a narrower re-run
  adds to the table instead of replacing it.

Re-running the same command skips every point that already completed with the notebook's
current code and runs the rest (a point is run again, and the log says so, when the notebook's
code cells changed since it ran), so a stopped sweep resumes where it stopped. Delete
``OUT/NAME/`` to start over.

Stopping. Ctrl-C (SIGINT to the whole process group) interrupts the running points, whose
kernels are shut down, and exits with status 130; ``kill -INT`` of the sweep alone lets the
running points finish and starts no others. SIGTERM stops the running points (and their
kernels) at once and exits with status 143. Either way the summary is written and finished
points are kept. A point whose process dies (killed, out of memory) fails alone; the others go on.
On Linux, the points' processes die with the sweep even when it is killed with SIGKILL (which
it cannot catch), so that no point runs on outside the folder's lock (their kernels then exit
as they see their parent gone; :func:`pilcro_lib.runs.executors.die_with_parent`). Elsewhere a
sweep killed with SIGKILL leaves its running points to finish on their own: stop them before
starting another sweep on the same folder.

Final metrics. A notebook reports its headline numbers by calling :func:`record_metrics`, e.g.
as the last line of a cell::

    from pilcro_lib.results import record_metrics
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
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from pilcro_lib.results import read_metrics
from pilcro_lib.runs.execute import (
    PROFILES,
    argument_errors,
    check_notebook,
    check_parameters,
    folder_lock,
    parse_assignments,
    parse_value,
)
from pilcro_lib.runs.executors import die_with_parent

__all__ = [
    "Interrupted",
    "PointResult",
    "grid_points",
    "main",
    "merge_results",
    "notebook_digest",
    "parse_grid",
    "point_slug",
    "read_summary",
    "run_sweep",
    "summary_rows",
    "write_summary",
]

_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_FIXED_COLUMNS = ("status", "wall_time_s", "error", "failed_cell", "notebook")
STATUSES = ("ran", "done before", "failed", "not run")
_FIELDS = {
    "point": dict,
    "status": str,
    "notebook": str,
    "wall_time_s": (int, float, type(None)),
    "metrics": dict,
    "error": str,
    "failed_cell": str,
}  # a PointResult's fields in summary.json, and their JSON types
_STAMP = "pilcro_sweep"  # the executed notebook's metadata key for the code it ran
_GRACE_S = 10.0  # how long a point stopped by SIGTERM may take to shut its kernel down


# --------------------------------------------------------------------------- grid


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """Parse ``["key=v1,v2", "key2=v3"]`` into ``{"key": [v1, v2], "key2": [v3]}`` (values
    parsed)."""
    if isinstance(specs, str):
        specs = [specs]
    if not specs:
        raise ValueError("grid: give at least one key=v1,v2,... entry")
    return parse_assignments(specs, "grid entry", _parse_values)


def _parse_values(text: str) -> list[Any]:
    """``"1,2,a"`` -> ``[1, 2, "a"]``; ValueError for an empty or a repeated item."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise ValueError("empty value (write key=v1,v2 with no empty items)")
    values = [parse_value(item) for item in items]
    if len({json.dumps(v) for v in values}) != len(values):
        raise ValueError("a value is repeated")
    return values


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``grid`` as a list of ``{key: value}`` dicts, first key slowest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def point_slug(point: Mapping[str, Any]) -> str:
    """A file-name-safe, unique name for a point: ``key=value`` pairs sorted by key, joined by
    ``__``.

    A value is written as ``str(value)``. Where that text has characters outside
    ``[A-Za-z0-9._+-]`` (they become ``-``) or would read back (:func:`parse_value`) as another
    value or type (the string ``'1'`` reads as the int 1; ``nan``), a short hash of the exact
    point is appended, so that two points never share a name.
    """
    texts = {key: str(point[key]) for key in sorted(point)}
    slug = "__".join(f"{key}={_SLUG_UNSAFE.sub('-', text)}" for key, text in texts.items())
    if not all(_plain(point[key], text) for key, text in texts.items()):
        slug += (
            "__" + hashlib.sha1(json.dumps(dict(point), sort_keys=True).encode()).hexdigest()[:8]
        )
    return slug


def _plain(value: Any, text: str) -> bool:
    """Whether ``text`` (``value`` written out) is file-name-safe and reads back as ``value``
    itself."""
    parsed = parse_value(text)
    return not _SLUG_UNSAFE.search(text) and type(parsed) is type(value) and parsed == value


def notebook_digest(notebook: Any) -> str:
    """SHA-256 (hex) of a notebook's code: the sources of its code cells, in order.

    ``notebook`` is an ``nbformat`` node or its JSON dict; markdown and outputs do not count.
    """
    sources = [
        "".join(cell.get("source", ""))
        for cell in notebook.get("cells", [])
        if cell.get("cell_type") == "code"
    ]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


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
    """The executed notebook at ``path`` if it exists, completed and ran with ``point``, else
    None."""
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


def _point_process(
    sender: Connection, parent: int, notebook: str, point: dict[str, Any], folder: str, cwd: str
) -> None:
    """A point's own process: run it and send its :class:`PointResult` to the sweep (process
    ``parent``).

    SIGTERM interrupts the point as Ctrl-C does, so that papermill shuts its kernel down. On
    Linux the process dies with the sweep (:func:`pilcro_lib.runs.executors.die_with_parent`).
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    die_with_parent(parent)
    sender.send(_execute_point(notebook, point, folder, cwd))


def _execute_point(notebook: str, point: dict[str, Any], folder: str, cwd: str) -> PointResult:
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    final, failed, partial = _point_paths(Path(folder), point)
    partial.parent.mkdir(parents=True, exist_ok=True)
    if "profile" in point:
        os.environ["PILCRO_PROFILE"] = str(point["profile"])
    digest = notebook_digest(nbformat.read(notebook, as_version=4))
    start = time.perf_counter()
    result = PointResult(point=point, status="ran", notebook=final.name)
    try:
        papermill.execute_notebook(
            notebook, str(partial), parameters=point, cwd=cwd, progress_bar=False, log_output=False
        )
    except PapermillExecutionError as error:
        first_line = next((line for line in error.source.splitlines() if line.strip()), "")
        result.status, result.notebook = "failed", failed.name
        result.error = f"{error.ename}: {error.evalue}"
        result.failed_cell = f"cell {error.cell_index} (In [{error.exec_count}]): {first_line[:80]}"
    except KeyboardInterrupt:
        partial.unlink(missing_ok=True)
        return PointResult(point=point, status="not run", error="interrupted")
    except (
        Exception
    ) as error:  # the kernel died or did not start, the notebook could not be written, ...
        result.status, result.notebook = "failed", failed.name
        result.error = f"{type(error).__name__}: {error}"
    result.wall_time_s = round(time.perf_counter() - start, 2)
    if partial.is_file():
        executed = nbformat.read(partial, as_version=4)
        executed.metadata[_STAMP] = {"code_sha256": digest}
        nbformat.write(executed, partial)
        result.wall_time_s = _duration(executed) or result.wall_time_s
        result.metrics = read_metrics(executed)
        _file_as(partial, final, failed, result.status == "ran")
    elif result.status == "ran":
        result.status, result.notebook, result.error = "failed", "", "papermill wrote no notebook"
    return result


def _point_paths(folder: Path, point: Mapping[str, Any]) -> tuple[Path, Path, Path]:
    """Where a point's notebook goes: (completed, failed, being run)."""
    slug = point_slug(point)
    return (
        folder / f"{slug}.ipynb",
        folder / f"{slug}.failed.ipynb",
        folder / ".partial" / f"{slug}.ipynb",
    )


def _file_as(partial: Path, final: Path, failed: Path, completed: bool) -> None:
    """Move ``partial`` to ``final`` if ``completed``, else to ``failed``; remove the other one."""
    keep, drop = (final, failed) if completed else (failed, final)
    drop.unlink(missing_ok=True)
    os.replace(partial, keep)


def _died(point: dict[str, Any], folder: Path, exitcode: int | None) -> PointResult:
    """The result of a point whose process ended without one (killed, out of memory, ...)."""
    final, failed, partial = _point_paths(folder, point)
    how = (
        f"killed by {signal.Signals(-exitcode).name}"
        if exitcode and exitcode < 0
        else f"exit status {exitcode}"
    )
    result = PointResult(point, "failed", error=f"the point's process died ({how})")
    if partial.is_file():  # saved by papermill up to the cell that was running
        _file_as(partial, final, failed, completed=False)
        result.notebook = failed.name
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
    echoes = {
        k
        for r in results
        for k in r.metrics  # a metric that only repeats its point's parameter
        if k in params and all(q.metrics.get(k, q.point.get(k)) == q.point.get(k) for q in results)
    }
    metric_names = [
        k for k in dict.fromkeys(k for r in results for k in r.metrics) if k not in echoes
    ]
    taken = set(params) | set(_FIXED_COLUMNS)
    metric_columns = {m: f"metric_{m}" if m in taken else m for m in metric_names}
    columns = (
        params
        + ["status", "wall_time_s"]
        + list(metric_columns.values())
        + list(_FIXED_COLUMNS[2:])
    )
    rows = []
    for r in results:
        row = {
            **r.point,
            "status": r.status,
            "wall_time_s": r.wall_time_s,
            "error": r.error,
            "failed_cell": r.failed_cell,
            "notebook": r.notebook,
        }
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
    """Write ``summary.csv``, ``summary.md`` and ``summary.json`` into ``folder`` (each atomically);
    return the paths of the first two."""
    columns, rows = summary_rows(results)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(
        {c: ("" if row.get(c) is None else row.get(c)) for c in columns} for row in rows
    )
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    lines = [
        f"# Sweep summary: {len(results)} points; "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n),
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        cells = [_cell(row.get(c)).replace("|", "\\|").replace("\n", " ") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    records = json.dumps([asdict(r) for r in results], indent=1)
    paths = folder / "summary.csv", folder / "summary.md", folder / "summary.json"
    for path, content in zip(paths, (text.getvalue(), "\n".join(lines) + "\n", records + "\n")):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(content)
        os.replace(tmp, path)
    return paths[0], paths[1]


def read_summary(folder: Path) -> list[PointResult]:
    """The results recorded in ``folder/summary.json`` by an earlier sweep (none if it is missing);
    a ValueError naming the file if it is not a list of such results."""
    path = folder / "summary.json"
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text())
        if not isinstance(records, list):
            raise TypeError(f"it holds a JSON {type(records).__name__}, not a list")
        return [_point_result(record) for record in records]
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{path} is not a sweep summary ({error}); delete it to start the summary afresh"
        ) from None


def _point_result(record: Any) -> PointResult:
    """The :class:`PointResult` that a ``summary.json`` entry holds; a ValueError or TypeError
    saying what is wrong."""
    if not isinstance(record, dict) or not {"point", "status"} <= set(record):
        raise TypeError(f"entry {record!r} is not an object with a point and a status")
    for name, value in record.items():
        if name not in _FIELDS:
            raise ValueError(f"entry {record!r} has an unknown field {name!r}")
        if not isinstance(value, _FIELDS[name]) or isinstance(value, bool):
            raise TypeError(f"entry {record!r}: field {name!r} is {value!r}")
    if record["status"] not in STATUSES:
        raise ValueError(
            f"entry {record!r}: status {record['status']!r} is not one of "
            f"{', '.join(map(repr, STATUSES))}"
        )
    return PointResult(**record)


def merge_results(
    earlier: Iterable[PointResult], current: Iterable[PointResult]
) -> list[PointResult]:
    """``earlier`` with every point that ``current`` also has replaced by its new result, followed
    by ``current``'s other points (points are the same when their :func:`point_slug` is)."""
    new = {point_slug(r.point): r for r in current}
    merged = [new.pop(point_slug(r.point), r) for r in earlier]
    return merged + list(new.values())


# --------------------------------------------------------------------------- the sweep


class Interrupted(KeyboardInterrupt):
    """A sweep stopped by SIGINT or SIGTERM; ``signum`` says which (by custom, exit with 128 +
    signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def run_sweep(
    notebook: str | Path,
    grid: Mapping[str, Sequence[Any]],
    *,
    workers: int = 1,
    out: str | Path = "runs/sweeps",
    profile: str | None = None,
    cwd: str | Path | None = None,
    log: Callable[[str], Any] = print,
) -> list[PointResult]:
    """Run ``notebook`` at every point of ``grid``; return one :class:`PointResult` per point.

    Each point runs in a process of its own, at most ``workers`` at a time. Points already
    completed under ``out`` with the notebook's current code are skipped; failures are recorded,
    not raised. ``cwd``: the kernel's working directory (default: the notebook's folder). On SIGINT,
    points not yet started are skipped (a running point is interrupted if its process got the
    signal too, as with Ctrl-C in a terminal, else it finishes); on SIGTERM, running points are
    stopped. Either way the summary is written, then :class:`Interrupted` (a ``KeyboardInterrupt``)
    is raised.
    """
    notebook = check_notebook(notebook)
    _check_workers(workers)
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise ValueError("grid must give at least one value for each of at least one parameter")
    grid = _with_profile(grid, profile)
    check_parameters(notebook, grid)
    folder = _output_folder(out, notebook)
    cwd = str(_check_cwd(cwd) if cwd is not None else notebook.resolve().parent)
    with _only_sweep_on(folder):
        return _sweep(notebook, grid_points(grid), folder, workers, cwd, log)


def _check_workers(workers: Any) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")


def _check_cwd(cwd: str | Path) -> Path:
    """``cwd`` as a ``Path``; a ValueError naming it unless it is an existing folder."""
    if not Path(cwd).is_dir():
        raise ValueError(f"cwd {str(cwd)!r} is not an existing folder")
    return Path(cwd)


def _with_profile(
    grid: Mapping[str, Sequence[Any]], profile: str | None
) -> dict[str, Sequence[Any]]:
    """``grid`` with ``profile`` (one of :data:`PROFILES`, or None for none) as one more
    parameter."""
    if profile is None:
        return dict(grid)
    if profile not in PROFILES:
        raise ValueError(
            f"profile={profile!r} is not allowed; choose one of {', '.join(map(repr, PROFILES))}"
        )
    if "profile" in grid:
        raise ValueError("give the profile either with --profile or in the grid, not both")
    return {**grid, "profile": [profile]}


def _output_folder(out: str | Path, notebook: Path) -> Path:
    """``out/<notebook's name>``, created if missing; a ValueError naming ``out`` if it cannot
    be."""
    folder = Path(out) / notebook.stem
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"out {str(out)!r} cannot hold the sweep's folder {str(folder)!r} ({error.strerror}); "
            "give a folder (it is created if missing)"
        ) from None
    return folder


def _only_sweep_on(folder: Path) -> AbstractContextManager[None]:
    """Hold ``folder`` while inside, so that two sweeps never share it."""
    return folder_lock(
        folder,
        RuntimeError(
            f"out: another sweep is running on {folder}; wait for it to finish "
            "or give another --out"
        ),
    )


def _sweep(
    notebook: Path,
    points: list[dict[str, Any]],
    folder: Path,
    workers: int,
    cwd: str,
    log: Callable[[str], Any],
) -> list[PointResult]:
    """:func:`run_sweep` once its arguments are checked and it holds ``folder``."""
    import nbformat

    digest = notebook_digest(nbformat.read(notebook, as_version=4))
    results: list[PointResult] = []
    todo: list[int] = []
    changed = 0
    for index, point in enumerate(points):
        path = _point_paths(folder, point)[0]
        done = _completed(path, point)
        if done is not None and done.metadata.get(_STAMP, {}).get("code_sha256") == digest:
            results.append(
                PointResult(point, "done before", path.name, _duration(done), read_metrics(done))
            )
            continue
        changed += done is not None
        results.append(PointResult(point, "not run"))
        todo.append(index)
    log(
        f"{notebook.name}: {len(points)} points, {len(points) - len(todo)} done before, "
        f"{len(todo)} to run"
        + (
            f" ({changed} again because the notebook's code changed since they ran)"
            if changed
            else ""
        )
        + f" with {min(workers, max(len(todo), 1))} worker(s) -> {folder}"
    )
    earlier = read_summary(folder)

    def save() -> None:
        write_summary(merge_results(earlier, results), folder)

    save()
    signum = _run_points(notebook, points, todo, folder, workers, cwd, results, log, save)
    _remove_if_empty(folder / ".partial")
    if signum:
        log("interrupted: finished points are kept; run the same command again to resume")
        raise Interrupted(signum)
    return results


def _run_points(
    notebook: Path,
    points: list[dict[str, Any]],
    todo: list[int],
    folder: Path,
    workers: int,
    cwd: str,
    results: list[PointResult],
    log: Callable[[str], Any],
    save: Callable[[], None],
) -> int:
    """Run ``points[i]`` for each ``i`` in ``todo`` into ``results`` (``save`` after each); return
    the signal that stopped the sweep (0 if none). At most ``workers`` points' processes run at a
    time."""
    context = multiprocessing.get_context("spawn")
    waiting = deque(todo)
    running: dict[Connection, tuple[int, BaseProcess]] = {}
    stop = _Stop()
    with stop.on_signals():
        while running or (waiting and not stop.signum):
            while waiting and len(running) < workers and not stop.signum:
                index = waiting.popleft()
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(
                    target=_point_process,
                    name=f"sweep {point_slug(points[index])}",
                    args=(
                        sender,
                        os.getpid(),
                        str(notebook.resolve()),
                        points[index],
                        str(folder),
                        cwd,
                    ),
                )
                process.start()
                # the point's process holds the only writer: its end shows here as EOF
                sender.close()
                running[receiver] = index, process
            if stop.signum == signal.SIGTERM:
                _end([process for _, process in running.values()])
            for receiver in wait(list(running), timeout=0.5):
                index, process = running.pop(receiver)
                results[index] = r = _receive(receiver, process, points[index], folder, stop.signum)
                log(
                    f"  [{r.status}] {point_slug(r.point)}"
                    + (f" ({r.wall_time_s} s)" if r.wall_time_s is not None else "")
                    + (f": {r.error}" if r.error else "")
                )
                save()
    return stop.signum


def _receive(
    receiver: Connection, process: BaseProcess, point: dict[str, Any], folder: Path, signum: int
) -> PointResult:
    """The result a point's process sent, once it ended; if it sent none, the point was not run
    (the sweep was stopped by ``signum``) or failed (its process died)."""
    try:
        result = receiver.recv()
    except EOFError:
        result = None
    receiver.close()
    process.join()
    if result is not None:
        return result
    if signum:
        _point_paths(folder, point)[2].unlink(missing_ok=True)
        return PointResult(point, "not run", error="interrupted")
    return _died(point, folder, process.exitcode)


def _end(processes: list[BaseProcess]) -> None:
    """Stop ``processes``: SIGTERM (a point's process then shuts its kernel down), and SIGKILL for
    those still alive after :data:`_GRACE_S` seconds (their kernels exit when they see it gone)."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + _GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


class _Stop:
    """The signal that stopped a sweep: 0, ``SIGINT`` or ``SIGTERM`` (which overrides
    ``SIGINT``)."""

    def __init__(self) -> None:
        self.signum = 0

    def _set(self, signum: int, frame: Any) -> None:
        if self.signum != signal.SIGTERM:
            self.signum = signum

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        """In the main thread, make SIGINT and SIGTERM set :attr:`signum` instead of stopping, while
        inside."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            signum: signal.signal(signum, self._set) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # missing, or not empty
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m pilcro_lib.runs.sweep",
        description="Run a notebook once per point of a parameter grid (papermill), in parallel.",
    )
    parser.add_argument("notebook", help="the notebook (.ipynb) to run")
    parser.add_argument(
        "--grid",
        nargs="+",
        action="extend",
        required=True,
        metavar="KEY=V1,V2",
        help="parameter values to sweep (repeatable); the points are the cartesian product",
    )
    parser.add_argument("--workers", type=int, default=1, help="points run at a time (default 1)")
    parser.add_argument("--out", default="runs/sweeps", help="output folder (default runs/sweeps)")
    parser.add_argument(
        "--profile", choices=PROFILES, help="the notebooks' profile for every point"
    )
    parser.add_argument(
        "--cwd", help="the kernels' working directory (default: the notebook's folder)"
    )
    args = parser.parse_args(argv)
    with argument_errors(parser, "notebook"):
        notebook = check_notebook(args.notebook)
    with argument_errors(parser, "--workers"):
        _check_workers(args.workers)
    with argument_errors(parser, "--grid"):
        grid = parse_grid(args.grid)
        check_parameters(notebook, grid)
    with argument_errors(parser, "--profile"):
        check_parameters(notebook, _with_profile(grid, args.profile))
    with argument_errors(parser, "--cwd"):
        if args.cwd is not None:
            _check_cwd(args.cwd)
    with argument_errors(parser, "--out"):
        read_summary(_output_folder(args.out, notebook))
    try:
        results = run_sweep(
            notebook, grid, workers=args.workers, out=args.out, profile=args.profile, cwd=args.cwd
        )
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        parser.error(str(error))
    except Interrupted as stop:
        return 128 + stop.signum
    except KeyboardInterrupt:
        return 130
    folder = Path(args.out) / notebook.stem
    failed = sum(r.status == "failed" for r in results)
    print(
        f"summary: {folder / 'summary.md'} and {folder / 'summary.csv'}"
        + (f"; {failed} failed" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
