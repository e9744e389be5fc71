"""Compute a chapter's runs anywhere: plan the runs a notebook needs, compute them in parallel,
render.

Command line::

    python -m pilcro_lib.runs plan notebooks/06_p_objective_experiments.ipynb --profile paper
    python -m pilcro_lib.runs compute notebooks/06_p_objective_experiments.ipynb --profile paper \\
        --executor ray --gpus-per-run 1
    # renders from the records
    make execute NB=notebooks/06_p_objective_experiments.ipynb PROFILE=paper

``plan`` executes the notebook through papermill into a temporary copy (the notebook itself is
not touched) in planning mode (``$PILCRO_PLAN``, see :mod:`pilcro_lib.runs.records`): each run it
asks for that has no record is written as a request to ``runs/plans/<notebook>/<key>.pkl`` instead
of being trained, and the first read of a planned run's results ends the notebook there. A loop
that asks for its runs before reading their results is planned whole; a loop that reads each
run's results as it goes plans one run per stage. ``plan`` prints the planned runs.

``compute`` plans, computes the planned runs in parallel through ``--executor`` (``local``, the
default: a process pool here; ``ray``; ``slurm``: see :mod:`pilcro_lib.runs.executors`) and repeats
until the notebook asks for no missing run: a chapter that chooses something on validation
results plans its later runs only once those results exist (at most ``--max-stages`` stages).
Each run is computed by the code of :func:`pilcro_lib.runs.records.cached_run` itself, so its record
is the one the notebook would have written; executing the notebook afterwards (``make execute``)
renders it from the records. ``-p NAME VALUE`` sets a parameter of the notebook's cell tagged
``parameters`` (as papermill's ``-p``), as does ``--params NAME=VALUE ...`` (what ``make compute
PARAMS="a=1 b=x"`` passes; the value is everything after the first ``=``); give the same ones to
``make execute`` (``PARAMS=``). A name given twice is refused.

A text progress bar counts finished runs; a table of every run (status, wall time, worker,
devices, error) ends the command and is written to ``summary.md`` in the plan folder: a run's
status is ``computed``, ``read (computed elsewhere)`` (another process stored its record while
it waited) or ``failed`` (with the error; ``worker process died (signal 9: SIGKILL)`` when its
process was killed). A failing run is reported and the others go on. Ctrl-C or SIGTERM stops
the running runs' processes (and waits for them) and keeps the finished runs (their records
are written as each ends); the same command resumes, and a killed run resumes from its last
checkpoint. Exit status: 0 when nothing is missing any more, 1 when a run or the notebook failed
or the stage limit was reached, 130 after Ctrl-C, 143 after SIGTERM, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilcro_lib.runs.execute import (
    PROFILES,
    argument_errors,
    check_notebook,
    check_parameters,
    folder_lock,
    parse_assignments,
    parse_value,
    sigterm_interrupts,
)
from pilcro_lib.runs.executors import EXECUTORS, Executor, Outcome, make_executor
from pilcro_lib.runs.plans import RequestFile, list_requests

__all__ = [
    "Computation",
    "Plan",
    "PlansBusy",
    "compute",
    "compute_planned",
    "default_plans",
    "main",
    "plan",
    "summary_table",
]

MISSING = "MissingRun"  # the exception a read of a planned run's results raises in the notebook
SHOWN = {"read": "read (computed elsewhere)"}  # an outcome's status as the summary table shows it


@dataclass
class Plan:
    """One planning stage: the runs the notebook asked for that have no record, and how it ended
    (``error`` is empty when it ran to its end, ``"MissingRun: ..."`` when a planned run's results
    were read)."""

    folder: Path
    requests: list[RequestFile]
    error: str = ""


@dataclass
class Computation:
    """What ``compute`` did: ``status`` is ``complete``, ``failed``, ``notebook failed``,
    ``stage limit`` or ``interrupted``; the ``outcomes`` of the runs it computed, in order."""

    status: str = "complete"
    stages: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    requests: dict[str, RequestFile] = field(default_factory=dict)  # every planned run, by key
    message: str = ""


def default_plans(notebook: Path) -> Path:
    """``runs/plans/<notebook's name>`` under the runs folder (``$PILCRO_RUNS``)."""
    from pilcro_lib.runs.records import default_runs

    return default_runs() / "plans" / notebook.stem


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` updated with ``values`` while inside (the notebook's kernel inherits it)."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_profile(profile: str | None) -> None:
    if profile is not None and profile not in PROFILES:
        raise ValueError(
            f"profile={profile!r} is not allowed; choose one of {', '.join(map(repr, PROFILES))}"
        )


def plan(
    notebook: str | Path,
    *,
    profile: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    folder: str | Path | None = None,
) -> Plan:
    """Execute ``notebook`` in planning mode and return the runs it needs that have no record.

    ``profile`` becomes ``PILCRO_PROFILE`` in the kernel; ``parameters`` are papermill parameters
    (each declared by the notebook); ``folder``: where the requests go (default
    :func:`default_plans`). Requests of an earlier plan in ``folder`` are replaced.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from pilcro_lib.runs.records import PLAN_ENV

    notebook = check_notebook(notebook)
    _check_profile(profile)
    parameters = dict(parameters or {})
    check_parameters(notebook, parameters)
    folder = Path(folder) if folder is not None else default_plans(notebook)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.pkl"):
        old.unlink()
    env = {PLAN_ENV: str(folder.resolve()), **({"PILCRO_PROFILE": profile} if profile else {})}
    error = ""
    with _environment(env), tempfile.TemporaryDirectory() as tmp:
        try:
            papermill.execute_notebook(
                str(notebook),
                str(Path(tmp) / notebook.name),
                parameters=parameters,
                cwd=str(notebook.resolve().parent),
                progress_bar=False,
                log_output=False,
            )
        except PapermillExecutionError as failure:
            error = f"{failure.ename}: {failure.evalue} (cell {failure.cell_index})"
    requests = list_requests(folder)
    _prune_blobs(folder, requests)
    return Plan(folder, requests, error)


def _prune_blobs(folder: Path, requests: Sequence[RequestFile]) -> None:
    """Delete the stored tensors that no request of ``folder`` uses any more."""
    used = {digest for request in requests for digest in request.blobs}
    for blob in (folder / "blobs").glob("*.pt"):
        if blob.stem not in used:
            blob.unlink()


def compute_planned(
    requests: Sequence[RequestFile],
    executor: Executor,
    *,
    desc: str = "runs",
    outcomes: list[Outcome] | None = None,
) -> list[Outcome]:
    """Compute ``requests`` through ``executor`` with a progress bar; each computed run's record is
    written to this process's store as it ends. Outcomes are appended to ``outcomes`` (returned)
    as they come, so that an interrupted caller keeps those of the finished runs."""
    from tqdm import tqdm

    outcomes = [] if outcomes is None else outcomes
    by_key = {request.key: request for request in requests}
    failed = 0
    with (
        tqdm(total=len(requests), desc=desc, unit="run", file=sys.stderr, ascii=True) as bar,
        closing(executor.run([request.path for request in requests])) as results,
    ):
        for outcome in results:
            if outcome.status != "failed":
                _keep(outcome, by_key[outcome.key])
            else:
                failed += 1
                bar.write(f"  failed: {outcome.name}/{outcome.key}: {outcome.error}")
                bar.set_postfix(failed=failed)
            outcomes.append(outcome)
            bar.update(1)
    return outcomes


def _keep(outcome: Outcome, request: RequestFile) -> None:
    """Store a computed run's record where this process's ``cached_run`` will look for it
    (a worker on another machine wrote it to its own disk)."""
    from pilcro_lib.runs.records import (
        read_record,
        read_record_text,
        record_path,
        write_record_text,
    )

    path = record_path(request.name, request.key, store=request.store)
    if path.is_file() and read_record_text(path) == outcome.record:
        return
    write_record_text(path, outcome.record)
    read_record(path)


def compute(
    notebook: str | Path,
    executor: Executor,
    *,
    profile: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    folder: str | Path | None = None,
    max_stages: int = 10,
    log: Callable[[str], Any] = print,
) -> Computation:
    """Plan ``notebook`` and compute its missing runs through ``executor``, stage after stage, until
    it asks for no missing run; at most ``max_stages`` stages. Never raises for a failing run or
    notebook, nor for Ctrl-C: the returned :class:`Computation` says how it ended."""
    if isinstance(max_stages, bool) or not isinstance(max_stages, int) or max_stages < 1:
        raise ValueError(f"max_stages must be an integer >= 1, got {max_stages!r}")
    done = Computation()
    try:
        for stage in range(1, max_stages + 1):
            done.stages = stage
            log(f"stage {stage}: planning {Path(notebook).name} ...")
            planned = plan(notebook, profile=profile, parameters=parameters, folder=folder)
            if not planned.requests:
                if planned.error:
                    done.status, done.message = (
                        "notebook failed",
                        f"the notebook failed: {planned.error}",
                    )
                else:
                    done.message = "nothing is missing: the notebook renders from its records"
                return done
            done.requests.update((request.key, request) for request in planned.requests)
            log(
                f"stage {stage}: {len(planned.requests)} run(s) to compute with the "
                f"{executor.name} executor"
            )
            compute_planned(
                planned.requests, executor, desc=f"stage {stage}", outcomes=done.outcomes
            )
            failed = [o for o in done.outcomes if o.status == "failed"]
            if failed:
                done.status, done.message = (
                    "failed",
                    f"{len(failed)} run(s) failed; fix them and run the same command",
                )
                return done
        done.status = "stage limit"
        done.message = (
            f"runs were still missing after {max_stages} stages; run the same command "
            "again to go on"
        )
    except KeyboardInterrupt:
        done.status = "interrupted"
        done.message = "interrupted: finished runs are kept; run the same command again to resume"
    return done


def summary_table(
    outcomes: Sequence[Outcome], requests: Mapping[str, RequestFile] | None = None
) -> str:
    """A markdown table of ``outcomes``: run, key, status (as :data:`SHOWN`), wall time, worker,
    devices, error."""
    requests = requests or {}
    lines = [
        "| run | key | status | wall time (s) | worker | devices | error |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        run = requests[o.key].summary if o.key in requests else o.name
        cells = [
            f"{o.name}: {run}" if o.key in requests else run,
            o.key,
            SHOWN.get(o.status, o.status),
            "" if o.wall_time_s is None else f"{o.wall_time_s:.1f}",
            o.worker,
            o.devices,
            o.error,
        ]
        lines.append(
            "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        )
    return "\n".join(lines)


def _parameters(
    pairs: Sequence[Sequence[str]] | None, assignments: Sequence[str] = ()
) -> dict[str, Any]:
    """The notebook's parameters from ``-p NAME VALUE`` ``pairs`` and ``--params NAME=VALUE``
    ``assignments``."""
    parameters = parse_assignments(assignments)
    for name, text in pairs or ():
        if name in parameters:
            raise ValueError(f"parameter {name!r} is given twice")
        parameters[name] = parse_value(text)
    return parameters


def _gpus(text: str) -> float:
    """``--gpus-per-run``: a finite number >= 0."""
    try:
        gpus = float(text)
    except ValueError:
        gpus = math.nan
    if not math.isfinite(gpus) or gpus < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return gpus


def _make_folder(folder: Path) -> None:
    """Create the plan ``folder``; a ValueError naming it and its parent if it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"{str(folder.parent)!r} cannot hold the plan folder {str(folder)!r} "
            f"({error.strerror}); give a folder (it is created if missing)"
        ) from None


def _render_hint(notebook: Path, profile: str | None, parameters: Mapping[str, Any]) -> str:
    params = " ".join(f"{k}={v}" for k, v in parameters.items())
    return (
        f"make execute NB={notebook}"
        + (f" PROFILE={profile}" if profile else "")
        + (f' PARAMS="{params}"' if params else "")
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pilcro_lib.runs",
        description="Plan the runs a notebook needs, and compute them anywhere.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("plan", "list the runs the notebook needs that have no record (trains nothing)"),
        ("compute", "compute the missing runs in parallel, stage after stage"),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("notebook", help="the notebook (.ipynb)")
        sub.add_argument("--profile", choices=PROFILES, help="PILCRO_PROFILE for the notebook")
        sub.add_argument(
            "-p",
            "--parameter",
            nargs=2,
            action="append",
            metavar=("NAME", "VALUE"),
            help="a parameter of the notebook's parameters cell (repeatable)",
        )
        sub.add_argument(
            "--params",
            nargs="+",
            action="extend",
            default=[],
            metavar="NAME=VALUE",
            help="parameters as NAME=VALUE (repeatable; the value is all after the first '=')",
        )
        sub.add_argument(
            "--plans",
            help="folder of the plans (default: runs/plans); the notebook's go in a sub-folder",
        )
    compute_parser = commands.choices["compute"]
    compute_parser.add_argument(
        "--executor", choices=EXECUTORS, default="local", help="where runs are computed"
    )
    compute_parser.add_argument(
        "--gpus-per-run", type=_gpus, default=0, help="GPUs each run gets (default 0: CPU)"
    )
    compute_parser.add_argument(
        "--max-stages", type=int, default=10, help="plan+compute rounds at most (default 10)"
    )
    compute_parser.add_argument(
        "--workers", type=int, help="local: runs at a time (default: one per GPU slot, else 1)"
    )
    compute_parser.add_argument(
        "--address", help="ray: address of a running cluster (default: start one here)"
    )
    compute_parser.add_argument("--cpus-per-run", type=int, help="ray, slurm: CPUs each run gets")
    compute_parser.add_argument("--partition", help="slurm: the partition")
    compute_parser.add_argument(
        "--time", type=int, metavar="MINUTES", help="slurm: each job's time limit"
    )
    compute_parser.add_argument(
        "--parallelism", type=int, help="slurm: jobs of the array running at a time"
    )
    return parser


# command-line option -> (the executors that take it, their keyword argument)
_OPTIONS = {
    "workers": (("local",), "workers"),
    "address": (("ray",), "address"),
    "cpus_per_run": (("ray", "slurm"), "cpus_per_run"),
    "partition": (("slurm",), "partition"),
    "time": (("slurm",), "time_min"),
    "parallelism": (("slurm",), "parallelism"),
}


def _executor_options(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The executor's keyword arguments from the command line; ValueError for an option of another
    executor."""
    options: dict[str, Any] = {"folder": folder / "slurm"} if args.executor == "slurm" else {}
    for attribute, (executors, keyword) in _OPTIONS.items():
        value = getattr(args, attribute)
        if value is None:
            continue
        if args.executor not in executors:
            raise ValueError(
                f"--{attribute.replace('_', '-')} is an option of --executor "
                f"{' or '.join(executors)}, not of {args.executor}"
            )
        options[keyword] = value
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    with argument_errors(parser, "notebook"):
        notebook = check_notebook(args.notebook)
    with argument_errors(parser, "--parameter" if args.parameter else "--params"):
        parameters = _parameters(args.parameter, args.params)
        if "profile" in parameters:
            raise ValueError("give the profile with --profile, not as -p profile ...")
        check_parameters(notebook, parameters)
    folder = Path(args.plans) / notebook.stem if args.plans else default_plans(notebook)
    if args.command == "compute":
        with argument_errors(parser, "--executor"):
            executor = make_executor(
                args.executor, args.gpus_per_run, **_executor_options(args, folder)
            )
        with argument_errors(parser, "--max-stages"):
            if args.max_stages < 1:
                raise ValueError(f"must be an integer >= 1, got {args.max_stages!r}")
    with argument_errors(parser, "--plans"):
        _make_folder(folder)
    try:
        with _only_one(folder):
            if args.command == "plan":
                return _report_plan(
                    plan(notebook, profile=args.profile, parameters=parameters, folder=folder),
                    notebook,
                    args,
                    parameters,
                )
            return _compute_command(notebook, executor, folder, args, parameters)
    except PlansBusy as error:
        parser.error(f"argument --plans: {error}")


class PlansBusy(RuntimeError):
    """Another ``plan`` or ``compute`` holds the notebook's plan folder."""


def _only_one(folder: Path) -> AbstractContextManager[None]:
    """Hold the plan ``folder`` while inside: one plan or compute of a notebook at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder_lock(
        folder,
        PlansBusy(
            f"another plan or compute of this notebook holds {folder}; "
            "wait for it to end or give another --plans"
        ),
    )


def _compute_command(
    notebook: Path,
    executor: Executor,
    folder: Path,
    args: argparse.Namespace,
    parameters: Mapping[str, Any],
) -> int:
    """``compute``: run the stages, print and save the table of runs; the exit status."""
    with sigterm_interrupts() as signals, executor:
        done = compute(
            notebook,
            executor,
            profile=args.profile,
            parameters=parameters,
            folder=folder,
            max_stages=args.max_stages,
        )
    table = summary_table(done.outcomes, done.requests)
    if done.outcomes:
        print(table)
        (folder / "summary.md").write_text(
            f"# Runs of {notebook.name} ({done.status})\n\n{table}\n"
        )
    print(done.message)
    if done.status == "complete":
        print("render it with: " + _render_hint(notebook, args.profile, parameters))
    if done.status == "interrupted":
        return 128 + (signals[0] if signals else signal.SIGINT)
    return 0 if done.status == "complete" else 1


def _report_plan(
    planned: Plan, notebook: Path, args: argparse.Namespace, parameters: Mapping[str, Any]
) -> int:
    """Print what ``plan`` found; the exit status."""
    if planned.requests:
        print(
            f"{len(planned.requests)} run(s) of {notebook.name} have no record (requests in "
            f"{planned.folder}):"
        )
        print("| run | key | what |\n|---|---|---|")
        for request in planned.requests:
            print(f"| {request.name} | {request.key} | {request.summary} |")
        if planned.error and not planned.error.startswith(MISSING):
            print(f"the notebook then failed: {planned.error}")
        command = f"python -m pilcro_lib.runs compute {notebook}" + (
            f" --profile {args.profile}" if args.profile else ""
        )
        command += "".join(f" -p {k} {v}" for k, v in parameters.items())
        print(f"compute them with: {command} --executor local|ray|slurm")
        return 0
    if planned.error:
        print(f"no run is missing, but the notebook failed: {planned.error}", file=sys.stderr)
        return 1
    print(
        f"nothing is missing: {notebook.name} renders from its records "
        f"({_render_hint(notebook, args.profile, parameters)})"
    )
    return 0
