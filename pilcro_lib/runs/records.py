"""Run records: the stored, auditable result of every trained run, keyed by what decides it.

:func:`cached_run` calls ``run_fn(**inputs, run_dir=run_dir)`` unless a current record of the same
run exists. A run is identified by a description (:func:`pilcro_lib.runs.fingerprint.describe`) of
``run_fn`` (its source and the data it reads) and of every input (datasets by content, models
by weights, regularisers by parameters), so a notebook cannot leave a field out of the key.

Each finished run writes ``<store>/<name>/<key>.json.gz``: gzip-compressed JSON (``zcat`` shows it;
:func:`read_record` reads it) with the run's description,
its metrics (e.g. the per-epoch history; floats to 6 significant digits), its provenance
(commit, dirty flag, library and torch versions, device, wall time, date) and its code: every
library function that ran during the run (traced) with a digest of their code
(:func:`pilcro_lib.runs.fingerprint.code_digest`). The store is the repository's committed
``records/`` folder (``$PILCRO_RECORDS`` overrides it), so a fresh clone re-renders every
chapter without retraining. Checkpoints live in the ignored ``runs/<key>-<code>/``
(``$PILCRO_RUNS``). A record whose functions' code has changed since is never returned as
current: it is retrained, or refused with ``PILCRO_STALE_RECORDS=refuse``. Edits to code the
run did not execute, docstrings, comments and formatting leave it current.

Planning mode. With ``$PILCRO_PLAN`` set to a folder, :func:`cached_run` trains nothing: a run
without a current record is written to that folder as a :class:`RunRequest`
(``<key>.pkl``, see :mod:`pilcro_lib.runs.plans`) and a placeholder :class:`Record` is returned
whose ``metrics`` and ``provenance`` raise :class:`MissingRun` when read. A loop that asks for many
runs before reading any of them so plans them all; the first read ends the notebook there.
:meth:`RunRequest.compute` later computes the run, anywhere, into the same record
(``python -m pilcro_lib.runs``).
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from pilcro_lib.runs.checkpoint import CorruptFileError, run_dir_lock, temp_path, write_atomic
from pilcro_lib.runs.fingerprint import (
    RunLog,
    code_digest,
    code_fingerprint,
    describe,
    run_key,
    traced_code,
)
from pilcro_lib.utils import check_choice, get_device, git_commit

SCHEMA = "pilcro-run-record/1"
SUFFIX = ".json.gz"  # a record's file: <store>/<name>/<key>.json.gz
DIGITS = 6  # significant digits of the floats a record stores
STALE_POLICIES = ("retrain", "refuse")
PLAN_ENV = "PILCRO_PLAN"  # a folder: plan missing runs there instead of training them
_REPO = Path(__file__).resolve().parents[2]
_FIELDS = {
    "schema": str,
    "key": str,
    "name": str,
    "spec": dict,
    "code": str,
    "code_functions": list,
    "metrics": dict,
    "provenance": dict,
}
_ADVICE = "delete it to recompute the run, or restore it with git"
_PROVENANCE = {
    "commit": str,
    "dirty": bool,
    "pilcro_lib": str,
    "torch": str,
    "device": str,
    "wall_time_s": (int, float),
    "finished_utc": str,
}


class StaleRecordError(RuntimeError):
    """A stored record was made by other training code than the current one."""


class MissingRun(Exception):
    """The results of a run that has no record yet were read while planning (``$PILCRO_PLAN``)."""

    def __init__(self, name: str, key: str) -> None:
        super().__init__(
            f"run {name}/{key} has no record yet: it is planned, not computed "
            "(compute it with python -m pilcro_lib.runs compute)"
        )
        self.name, self.key = name, key


class Pending(Mapping):
    """The metrics (or provenance) of a planned run: reading any entry raises
    :class:`MissingRun`."""

    def __init__(self, name: str, key: str) -> None:
        self.name, self.key = name, key

    def __getitem__(self, item: str) -> Any:
        raise MissingRun(self.name, self.key)

    def __iter__(self) -> Iterator[str]:
        raise MissingRun(self.name, self.key)

    def __len__(self) -> int:
        raise MissingRun(self.name, self.key)

    def __repr__(self) -> str:
        return f"<results of planned run {self.name}/{self.key}>"


@dataclass
class Record:
    """One run's record: ``metrics`` and ``provenance`` as stored, and whether it was ``reused``."""

    key: str
    name: str
    metrics: dict[str, Any]
    provenance: dict[str, Any]
    path: Path
    reused: bool


@dataclass
class RunRequest:
    """A run that :func:`cached_run` was asked for, with its identity (``spec``, ``key``) as
    computed there."""

    run_fn: Callable[..., dict[str, Any]]
    inputs: dict[str, Any]
    name: str
    store: str | Path | None
    runs: str | Path | None
    spec: dict[str, Any]
    key: str

    def record_path(self) -> Path:
        """Where this run's record is (or will be) stored."""
        return record_path(self.name, self.key, store=self.store)

    def compute(self) -> Record:
        """The run's record, computed as :func:`cached_run` computes it (or read, if current)."""
        return _cached(self)


def _in_checkout() -> bool:
    return (_REPO / ".git").exists() and (_REPO / "pilcro_lib").is_dir()


def default_store() -> Path:
    """``$PILCRO_RECORDS``, else the repository's ``records/`` (else ``records/`` here)."""
    if "PILCRO_RECORDS" in os.environ:
        return Path(os.environ["PILCRO_RECORDS"])
    return _REPO / "records" if _in_checkout() else Path("records")


def smoke_store() -> Path:
    """Where smoke-profile records go (:func:`pilcro_lib.utils.setup_notebook`): the ignored
    ``_build/smoke-records`` of the repository (else of the working directory)."""
    return (_REPO if _in_checkout() else Path.cwd()) / "_build" / "smoke-records"


def record_path(name: str, key: str, *, store: str | Path | None = None) -> Path:
    """``<store>/<name>/<key>.json.gz``, the file of run ``key`` of ``name`` (default store:
    :func:`default_store`)."""
    return Path(store if store is not None else default_store()) / name / f"{key}{SUFFIX}"


def default_runs() -> Path:
    """``$PILCRO_RUNS``, else the repository's ignored ``runs/`` (else ``runs/`` here)."""
    if "PILCRO_RUNS" in os.environ:
        return Path(os.environ["PILCRO_RUNS"])
    return _REPO / "runs" if _in_checkout() else Path("runs")


def stale_policy() -> str:
    """``$PILCRO_STALE_RECORDS``: ``retrain`` (default) or ``refuse``."""
    return check_choice(
        "PILCRO_STALE_RECORDS", os.environ.get("PILCRO_STALE_RECORDS", "retrain"), STALE_POLICIES
    )


def cached_run(
    run_fn: Callable[..., dict[str, Any]],
    /,
    *,
    name: str | None = None,
    store: str | Path | None = None,
    runs: str | Path | None = None,
    **inputs: Any,
) -> Record:
    """The record of ``run_fn(**inputs, run_dir=run_dir)``: loaded if a current one is stored, else
    computed. Tuples among the inputs reach ``run_fn`` as lists, as the run key describes them.

    ``run_fn`` returns JSON-serialisable metrics; it may checkpoint into ``run_dir`` (e.g. with
    :func:`pilcro_lib.train.fit`) so that a killed run resumes. ``name`` groups records in a
    folder (default ``run_fn.__name__``). Two processes asking for the same run: one computes,
    the other waits and then reads its record. With ``$PILCRO_PLAN`` set, a run without a
    current record is planned instead of computed (see the module's docstring).
    """
    if not callable(run_fn):
        raise TypeError(
            f"run_fn must be a function run_fn(*, run_dir, **inputs), got {type(run_fn).__name__}"
        )
    name = name if name is not None else run_fn.__name__
    policy = stale_policy()
    if (
        not isinstance(name, str)
        or not name
        or any(c in name for c in "/\\")
        or name.startswith(".")
    ):
        raise ValueError(f"name must be a non-empty folder name without slashes, got {name!r}")
    inputs = _as_described(inputs)
    spec = {
        "function": describe(run_fn, where="run_fn"),
        "inputs": describe(inputs, where="inputs"),
    }
    request = RunRequest(run_fn, inputs, name, store, runs, spec, run_key(spec))
    plan = os.environ.get(PLAN_ENV)
    if plan:
        return _current(request.record_path(), request.key, policy) or _planned(request, Path(plan))
    return _cached(request)


def _as_described(value: Any) -> Any:
    """``value`` with every tuple inside its plain lists, tuples and dicts made a list.

    The run key describes ``(1, 2)`` and ``[1, 2]`` alike, so the run function is given the list
    either way: one key, one result. Other objects (tuple subclasses included) pass unchanged.
    """
    if type(value) in (list, tuple):
        return [_as_described(v) for v in value]
    if type(value) is dict:
        return {k: _as_described(v) for k, v in value.items()}
    return value


def _cached(request: RunRequest) -> Record:
    """The current record of ``request``, else the run computed and its record stored."""
    policy = stale_policy()
    key, name, inputs = request.key, request.name, request.inputs
    path = request.record_path()
    record = _current(path, key, policy, say=False)  # said, if stale, by the check under the lock
    if record is not None:
        return record
    run_dir = (
        Path(request.runs if request.runs is not None else default_runs())
        / f"{key}-{code_fingerprint()}"
    )
    with run_dir_lock(run_dir, name=".record.lock"):
        record = _current(
            path, key, policy
        )  # another process may have finished it while this one waited
        if record is not None:
            return record
        start = time.perf_counter()
        _check_writable(path)
        with traced_code() as log:
            metrics = request.run_fn(**inputs, run_dir=run_dir)
        functions = log.functions
        metrics = _rounded(_checked(metrics))
        device = inputs.get("device")
        provenance = run_provenance(
            time.perf_counter() - start,
            get_device(device) if device is not None else None,
            modules={f.partition(":")[0] for f in functions},
            log=log,
        )
        stored = {
            "schema": SCHEMA,
            "key": key,
            "name": name,
            "spec": request.spec,
            "code": code_digest(functions),
            "code_functions": sorted(functions),
            "metrics": metrics,
            "provenance": provenance,
        }
        write_record_text(path, json.dumps(stored, sort_keys=True, separators=(",", ":")) + "\n")
    return Record(key, name, metrics, provenance, path, reused=False)


def _check_writable(path: Path) -> None:
    """Refuse, before any training, a store where the record at ``path`` could not be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = temp_path(path)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OSError(
            err.errno,
            f"the record store {path.parent} is not writable ({err.strerror}); set "
            "PILCRO_RECORDS to a writable folder, or pass store=",
        ) from None


def _planned(request: RunRequest, folder: Path) -> Record:
    """Write ``request`` into the plan ``folder``; a placeholder record whose results raise
    :class:`MissingRun`."""
    from pilcro_lib.runs.plans import save_request

    save_request(request, folder)
    pending = Pending(request.name, request.key)
    return Record(request.key, request.name, pending, pending, request.record_path(), reused=False)


def _checked(metrics: Any) -> dict[str, Any]:
    if not isinstance(metrics, dict):
        raise TypeError(f"run_fn must return a dict of metrics, got {type(metrics).__name__}")
    try:
        return json.loads(json.dumps(metrics))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"run_fn's metrics must be plain JSON (numbers, strings, lists, dicts): {err}"
        ) from None


def _rounded(obj: Any) -> Any:
    """``obj`` with every float rounded to :data:`DIGITS` significant digits (a small store; a
    fresh run shows exactly what its stored record will show)."""
    if isinstance(obj, float):
        return float(f"{obj:.{DIGITS}g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


def run_provenance(
    wall_time_s: float,
    device: torch.device | None = None,
    modules: Iterable[str] | None = None,
    log: RunLog | None = None,
) -> dict[str, Any]:
    """What produced a run: commit, dirty flag, versions, device and CPU, wall time and date. With
    ``modules`` (the library files the run executed, e.g. ``"train.py"``) the dirty flag says
    whether those differ from the commit; without, whether any file but a notebook does. With
    ``log`` (the run's :class:`~pilcro_lib.runs.fingerprint.RunLog`): ``precision`` (the
    arithmetic of its training: ``float32``, ``bf16``, ``bf16+float32``, or ``none`` when it
    trained nothing), ``segments`` (one per process that trained part of it: commit, start,
    epochs) and ``started_commit`` (the first segment's commit)."""
    from pilcro_lib import __version__

    files = None if modules is None else [f"pilcro_lib/{m}" for m in sorted(modules)]
    commit = git_commit(files=files)
    device = device if device is not None else get_device()
    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    return {
        "commit": commit.removesuffix("+dirty"), "dirty": commit.endswith("+dirty"),
        "pilcro_lib": __version__, "torch": torch.__version__, "python": sys.version.split()[0],
        "device": name,
        "threads": torch.get_num_threads(), "cpu": cpu_name(), "wall_time_s": round(wall_time_s, 2),
        "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
    } | ({} if log is None else {
        "precision": "+".join(sorted(log.precisions)) or "none",
        "segments": log.segments,
        "started_commit": log.segments[0]["commit"] if log.segments else commit,
    })  # fmt: skip


def cpu_name() -> str:
    """This machine's processor model (``/proc/cpuinfo``'s model name where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def write_record_text(path: str | Path, text: str) -> None:
    """Store a record's JSON ``text`` at ``path``, gzip-compressed (the same text, the same
    bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, gzip.compress(text.encode(), compresslevel=9, mtime=0))


def read_record_text(path: str | Path) -> str:
    """The JSON text of the record stored at ``path``; :class:`CorruptFileError` naming the file if
    it is not gzip-compressed text."""
    try:
        return gzip.decompress(Path(path).read_bytes()).decode()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        raise CorruptFileError(
            f"run record {path} is not gzip-compressed text ({err}); {_ADVICE}"
        ) from None


def read_record(path: str | Path) -> dict[str, Any]:
    """The validated JSON of a stored record; :class:`CorruptFileError` naming the file if
    invalid."""
    path = Path(path)
    try:
        stored = json.loads(read_record_text(path))
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"run record {path} is not valid JSON ({err}); {_ADVICE}") from None
    except RecursionError:
        raise CorruptFileError(
            f"run record {path} is nested too deeply to be a record; {_ADVICE}"
        ) from None
    if not isinstance(stored, dict):
        raise CorruptFileError(f"run record {path} is not a JSON object; {_ADVICE}")
    for field, kind in _FIELDS.items():
        if not isinstance(stored.get(field), kind):
            raise CorruptFileError(
                f"run record {path}: field {field!r} is missing or not a {kind.__name__}; {_ADVICE}"
            )
    if stored["schema"] != SCHEMA:
        raise CorruptFileError(
            f"run record {path} has schema {stored['schema']!r}, expected {SCHEMA!r}; {_ADVICE}"
        )
    missing = [k for k in _PROVENANCE if k not in stored["provenance"]]
    if missing:
        raise CorruptFileError(
            f"run record {path}: provenance lacks {', '.join(missing)}; {_ADVICE}"
        )
    wrong = [
        k
        for k, kind in _PROVENANCE.items()
        if not isinstance(stored["provenance"][k], kind)
        or (kind is not bool and isinstance(stored["provenance"][k], bool))
    ]
    if wrong:
        raise CorruptFileError(
            f"run record {path}: provenance entries of the wrong type: {', '.join(wrong)}; "
            f"{_ADVICE}"
        )
    if not all(isinstance(f, str) for f in stored["code_functions"]):
        raise CorruptFileError(
            f"run record {path}: code_functions must be a list of names; {_ADVICE}"
        )
    if run_key(stored["spec"]) != stored["key"]:
        raise CorruptFileError(
            f"run record {path}: its key {stored['key']!r} is not the hash of its spec "
            f"({run_key(stored['spec'])!r}): the spec was edited; {_ADVICE}"
        )
    if stored["name"] != path.parent.name:
        raise CorruptFileError(
            f"run record {path}: its name {stored['name']!r} is not the folder it is "
            f"stored in ({path.parent.name!r}); {_ADVICE}"
        )
    return stored


def _current(path: Path, key: str, policy: str, *, say: bool = True) -> Record | None:
    """The record at ``path`` if it exists and was made by the current training code (a stale
    one is refused under ``policy`` ``refuse``, else reported on stderr when ``say``)."""
    if not path.exists():
        return None
    stored = read_record(path)
    if stored["key"] != key:
        raise CorruptFileError(
            f"run record {path} holds key {stored['key']!r}, not {key!r} as its name says; "
            "delete it to recompute the run"
        )
    current = code_digest(stored["code_functions"])
    if stored["code"] != current:
        made = stored["provenance"]["commit"]
        message = (
            f"run record {path} was made by other training code (code {stored['code']}, commit "
            f"{made}; the same functions' code is now {current})"
        )
        if policy == "refuse":
            raise StaleRecordError(
                message + "; run with PILCRO_STALE_RECORDS=retrain to recompute it"
            )
        if say:
            print(message + "; recomputing it", file=sys.stderr, flush=True)
        return None
    return Record(key, stored["name"], stored["metrics"], stored["provenance"], path, reused=True)


def load_records(name: str, *, store: str | Path | None = None) -> list[Record]:
    """Every stored record of ``name`` (current or not), sorted by key."""
    folder = Path(store if store is not None else default_store()) / name
    records = []
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        stored = read_record(path)
        records.append(
            Record(
                stored["key"], stored["name"], stored["metrics"], stored["provenance"], path, True
            )
        )
    return records


def provenance_note(records: Iterable[Record]) -> str:
    """One markdown line that says which commits, devices and arithmetic produced ``records``, e.g.
    for under a table: ``3 at commit `abc` on cpu (AMD EPYC, float32)``; a run that began at an
    earlier commit shows both (```old` to `abc```), and records made before precision and CPU were
    recorded say so."""
    records = list(records)
    if not records:
        return "No runs."
    groups: dict[tuple[str, str], int] = {}
    for r in records:
        group = (_commits(r.provenance), _machine(r.provenance))
        groups[group] = groups.get(group, 0) + 1
    made = "; ".join(f"{n} at commit {c} on {d}" for (c, d), n in sorted(groups.items()))
    reused = sum(r.reused for r in records)
    hours = sum(r.provenance["wall_time_s"] for r in records) / 3600
    return (
        f"{len(records)} run records ({reused} read from the store, {len(records) - reused} "
        f"computed now; {hours:.2f} h of training): {made}."
    )


def _commits(provenance: Mapping[str, Any]) -> str:
    finished = provenance["commit"] + ("+dirty" if provenance["dirty"] else "")
    started = provenance.get("started_commit", provenance["commit"])
    same = (
        started.removesuffix("+dirty") == provenance["commit"]
        and started.endswith("+dirty") == provenance["dirty"]
    )
    return f"`{finished}`" if same else f"`{started}` to `{finished}`"


def _machine(provenance: Mapping[str, Any]) -> str:
    if "precision" not in provenance:
        return f"{provenance['device']} (CPU model and precision not recorded)"
    return f"{provenance['device']} ({provenance['cpu']}, {provenance['precision']})"
