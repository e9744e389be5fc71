"""Execute notebooks in place through papermill, refusing parameters they do not declare.

Command line (what ``make execute`` runs)::

    python -m pilcro_lib.runs.execute notebooks/00_getting_started.ipynb --profile book \\
        --params epochs=3 lr=0.01

executes each notebook given, in place, with the notebook's folder as the kernel's working
directory. A notebook is executed into a temporary copy next to it
(``.<name>.<pid>.executing.ipynb``) that replaces it only when every cell ran: after a failing
cell the notebook is left as it was and the failed copy is kept in a temporary folder (its path
is printed); after Ctrl-C or SIGTERM the copy is deleted. ``--profile P`` sets
``PILCRO_PROFILE`` in the kernels' environment (the notebooks read their default profile from
it). ``--params key=value ...`` injects papermill parameters; values are parsed as ``int``,
``float``, ``True``/``False``, ``None`` or else kept as strings (:func:`parse_value`);
``--params`` may be repeated, and a name given twice is refused. Every name must be a
parameter of each notebook's cell tagged ``parameters``: an undeclared name stops the command
before anything runs, with a message that names it and lists the notebook's parameters.
Through make::

    make execute NB=notebooks/00_getting_started.ipynb PROFILE=book PARAMS="epochs=3 lr=0.01"

The shared checks of notebook parameters live here too: :func:`parse_assignments` reads
``key=value`` arguments, :func:`check_notebook` and :func:`check_parameters` validate a notebook
and the names set in it, and :func:`argument_errors` turns their errors into argparse's;
:func:`sigterm_interrupts` makes SIGTERM stop a command as Ctrl-C does.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "PROFILES",
    "argument_errors",
    "check_notebook",
    "check_parameters",
    "execute_in_place",
    "folder_lock",
    "main",
    "parse_assignments",
    "parse_value",
    "sigterm_interrupts",
]

PROFILES = (
    "smoke",
    "book",
    "paper",
)  # the same as pilcro_lib.utils.PROFILES, without importing torch
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"True"`` -> True, ``"None"`` -> None, else the
    string."""
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


def parse_assignments(
    specs: Iterable[str], what: str = "parameter", parse: Callable[[str], Any] = parse_value
) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``, each text after ``=`` read by ``parse``.

    ``what`` names an entry in the error messages (e.g. ``"grid entry"``); a ValueError raised by
    ``parse`` is reported with the entry it came from.
    """
    parsed: dict[str, Any] = {}
    for spec in specs:
        key, sep, text = (part.strip() for part in spec.partition("="))
        if not sep:
            raise ValueError(f"{what} {spec!r} must look like name=value (no '=' found)")
        if not _NAME.match(key):
            raise ValueError(f"{what} {spec!r}: {key!r} is not a valid parameter name")
        if key in parsed:
            raise ValueError(f"{what} {spec!r}: {key!r} is given twice")
        if not text:
            raise ValueError(f"{what} {spec!r}: empty value")
        try:
            parsed[key] = parse(text)
        except ValueError as error:
            raise ValueError(f"{what} {spec!r}: {error}") from None
    return parsed


def check_notebook(notebook: str | Path) -> Path:
    """``notebook`` as a ``Path``; FileNotFoundError unless it is an existing ``.ipynb`` file."""
    path = Path(notebook)
    if not path.is_file() or path.suffix != ".ipynb":
        raise FileNotFoundError(f"notebook {str(notebook)!r} is not an existing .ipynb file")
    return path


def check_parameters(notebook: Path, names: Iterable[str]) -> list[str]:
    """The parameters ``notebook`` declares (in its cell tagged ``parameters``).

    Raises ValueError, naming the undeclared ones and listing the declared ones, unless every
    one of ``names`` is declared.
    """
    import papermill

    declared = list(papermill.inspect_notebook(str(notebook)))
    unknown = [name for name in names if name not in declared]
    if unknown:
        allowed = (
            f"its parameters are {', '.join(map(repr, declared))}"
            if declared
            else "it has no code cell tagged 'parameters'"
        )
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for {notebook.name}; {allowed}"
        )
    return declared


@contextmanager
def argument_errors(parser: argparse.ArgumentParser, argument: str) -> Iterator[None]:
    """Inside, a ValueError, TypeError or FileNotFoundError ends the command as argparse does for
    a bad ``argument``: ``error: argument ARGUMENT: message`` and exit status 2."""
    try:
        yield
    except (ValueError, TypeError, FileNotFoundError) as error:
        parser.error(f"argument {argument}: {error}")


@contextmanager
def folder_lock(folder: Path, busy: Exception) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/.lock`` while inside; raise ``busy`` at once if another
    process holds it (so that two commands never share an output folder)."""
    import fcntl

    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        yield


def execute_in_place(
    notebook: Path, parameters: dict[str, Any], profile: str | None = None
) -> None:
    """Execute ``notebook`` with papermill and replace it with the executed copy if every cell ran;
    the kernel runs in its folder.

    ``profile`` (if given) becomes ``PILCRO_PROFILE`` in the kernel's environment. When a cell
    raises, the notebook is left as it was, the executed copy (up to that cell) is moved to a
    temporary folder and its path printed, and papermill's ``PapermillExecutionError`` is raised.
    """
    import papermill

    if profile is not None:
        os.environ["PILCRO_PROFILE"] = profile
    target = notebook.resolve()
    copy = target.with_name(f".{target.stem}.{os.getpid()}.executing.ipynb")
    try:
        papermill.execute_notebook(
            str(notebook), str(copy), parameters=parameters, cwd=str(target.parent)
        )
    except Exception:
        _keep_failed(copy, notebook)
        raise
    except BaseException:  # Ctrl-C, SIGTERM: nothing to keep
        copy.unlink(missing_ok=True)
        raise
    _replace(copy, target, notebook)


def _replace(copy: Path, target: Path, notebook: Path) -> None:
    """Move the executed ``copy`` over ``target``, recording ``notebook`` as papermill's output
    path."""
    import nbformat

    executed = stable_outputs(nbformat.read(copy, as_version=4))
    executed.metadata.get("papermill", {})["output_path"] = str(notebook)
    nbformat.write(executed, copy)
    os.replace(copy, target)


_STYLER_ID = re.compile(r"\bT_[0-9a-f]{5}(?![0-9a-f])")  # pandas Styler's random 5-digit table id
_ADDRESS = re.compile(r" at 0x[0-9a-f]+>")  # an object's address in its repr


def stable_outputs(executed: Any) -> Any:
    """``executed`` (an nbformat notebook) without what changes from one execution of unchanged
    code to the next: papermill's per-cell times, pandas Styler's random table ids (each
    replaced by a hash of its table) and object addresses (``<... at 0x7f...>``)."""
    for key in ("start_time", "end_time", "duration"):
        executed.metadata.get("papermill", {}).pop(key, None)
    for cell in executed.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/html" in data:
                html = "".join(data["text/html"])
                stable = "T_" + hashlib.sha256(_STYLER_ID.sub("T_", html).encode()).hexdigest()[:5]
                data["text/html"] = _STYLER_ID.sub(stable, html)
            if "text/plain" in data:
                data["text/plain"] = _ADDRESS.sub(">", "".join(data["text/plain"]))
    return executed


def _keep_failed(copy: Path, notebook: Path) -> None:
    """Move a failed execution's ``copy`` to a new temporary folder and say where it is."""
    if not copy.is_file():
        return
    failed = Path(tempfile.mkdtemp(prefix="pilcro-execute-")) / notebook.name
    shutil.move(copy, failed)
    print(f"{notebook} is unchanged; the failed execution is in {failed}", file=sys.stderr)


@contextmanager
def sigterm_interrupts() -> Iterator[list[int]]:
    """While inside (in the main thread), the first SIGTERM raises ``KeyboardInterrupt`` as Ctrl-C
    does, so that clean-up code runs before the command exits (later ones are ignored); the
    yielded list holds the SIGTERMs received."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def interrupt(signum: int, frame: Any) -> None:
        got.append(signum)
        if len(got) == 1:  # a second one must not break off the clean-up
            raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    from papermill.exceptions import PapermillExecutionError

    parser = argparse.ArgumentParser(
        prog="python -m pilcro_lib.runs.execute",
        description="Execute notebooks in place (papermill), with parameters they declare.",
    )
    parser.add_argument(
        "notebooks", nargs="+", metavar="notebook", help="the notebooks (.ipynb) to execute"
    )
    parser.add_argument("--profile", choices=PROFILES, help="PILCRO_PROFILE for the kernels")
    parser.add_argument(
        "--params",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="papermill parameters (repeatable); each must be declared by every notebook",
    )
    args = parser.parse_args(argv)
    with argument_errors(parser, "notebook"):
        notebooks = [check_notebook(notebook) for notebook in args.notebooks]
    with argument_errors(parser, "--params"):
        parameters = parse_assignments(args.params)
        if args.profile is not None and "profile" in parameters:
            raise ValueError(
                "give the profile with --profile (PROFILE= for make execute), not as profile=..."
            )
        for notebook in notebooks:
            check_parameters(notebook, parameters)
    with sigterm_interrupts() as terminated:  # SIGTERM, as Ctrl-C, deletes the copy being executed
        for notebook in notebooks:
            print(
                f"== {notebook} ({args.profile or os.environ.get('PILCRO_PROFILE', 'default')} "
                "profile)",
                flush=True,
            )
            try:
                execute_in_place(notebook, parameters, args.profile)
            except PapermillExecutionError as error:
                print(
                    f"{notebook}: {error.ename}: {error.evalue} (cell {error.cell_index})",
                    file=sys.stderr,
                )
                return 1
            except KeyboardInterrupt:
                print(f"{notebook}: interrupted; it is unchanged", file=sys.stderr)
                return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
