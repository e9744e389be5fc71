"""Crash-safe, code-free files of a run directory: atomic writes, checkpoints, a lock.

A checkpoint is one file, ``checkpoint.pt``: a header line with the SHA-256 of the payload,
then the payload (``torch.save`` of plain tensors, numbers, strings, lists and dicts). It is
written to a temporary file of a unique name, flushed to disk and renamed over the previous
one, so a process killed at any instant leaves either the old checkpoint or the new one, never
a mix. It is read back with ``weights_only=True``: loading a checkpoint cannot run code.
:func:`run_dir_lock` makes a second process that asks for the same run wait for the first.

Every file (checkpoints, records, run requests) is written by :func:`write_atomic` through a
temporary file in the same folder, named ``.<name>.<host>.<pid>.<8 hex digits>.tmp`` (the
target's name, the writing machine and process, a random id). A process killed mid-write
leaves it behind; the next write into that folder removes the temporary files of this machine
whose process no longer exists. A write that fails (a full disk, a read-only folder) raises an
``OSError`` with the same errno whose message names the file and what to do.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import random
import re
import socket
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch

MAGIC = b"PILCRO-CHECKPOINT 1 sha256="
CHECKPOINT = "checkpoint.pt"
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
_WRITE_ADVICE = (
    "free space or make the folder writable, or set PILCRO_RECORDS/PILCRO_RUNS to another folder"
)


class CorruptFileError(ValueError):
    """A run file that cannot be read back as written; the message names it and what to do."""


def write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves the old file or the new one, whole.

    The payload goes to a temporary file ``.<name>.<host>.<pid>.<id>.tmp`` next to ``path``, is
    flushed and renamed over it. Leftover temporary files of dead processes of this machine in
    the folder are removed first. An ``OSError`` names ``path`` and what to do (same errno).
    """
    path = Path(path)
    remove_dead_temps(path.parent)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as error:
        raise OSError(
            error.errno, f"could not write {path}: {error.strerror or error}; {_WRITE_ADVICE}"
        ) from error
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def temp_path(path: Path) -> Path:
    """A fresh temporary file name next to ``path``: ``.<name>.<host>.<pid>.<8 hex digits>.tmp``
    (removed by :func:`remove_dead_temps` once this process is gone)."""
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def remove_dead_temps(folder: Path) -> list[Path]:
    """Remove the temporary files of :func:`write_atomic` in ``folder`` whose writing process (of
    this machine) no longer exists; return them. Files of other machines are left alone."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        match = _TEMP.match(tmp.name)
        if match and match["host"] == _HOST and not _alive(int(match["pid"])):
            with suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # none such; a number too large to be a pid
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON with sorted keys, atomically."""
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n").encode())


def read_json(path: Path, *, what: str) -> Any:
    """The JSON in ``path``; a :class:`CorruptFileError` naming the file if it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(
            f"{what} {path} is not valid JSON ({err}); delete it and run again"
        ) from None


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) as ``run_dir/checkpoint.pt``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    write_atomic(
        Path(run_dir) / CHECKPOINT,
        MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload,
    )


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The verified checkpoint of ``run_dir``, or ``None`` if there is none.

    Raises :class:`CorruptFileError` (naming the file) if it fails its checksum or holds
    anything but plain data.
    """
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    raw = path.read_bytes()
    header, _, payload = raw.partition(b"\n")
    advice = "delete it to restart this run from its beginning"
    if (
        not header.startswith(MAGIC)
        or hashlib.sha256(payload).hexdigest().encode() != header[len(MAGIC) :]
    ):
        raise CorruptFileError(
            f"checkpoint {path} is corrupt (checksum mismatch or unknown format); {advice}"
        )
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # holds objects that weights_only refuses to build
        raise CorruptFileError(
            f"checkpoint {path} holds more than plain data ({err}); {advice}"
        ) from None


def rng_state() -> dict[str, Any]:
    """The global random states of torch, NumPy and Python as plain data (tensors, ints, lists)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, python_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(internal), python_gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, python_gauss = state["python"]
    random.setstate((version, tuple(internal), python_gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def run_dir_lock(run_dir: Path, *, name: str = ".lock", log=None) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir/<name>`` while inside; wait for another holder first.

    The lock dies with its process, so a killed run never leaves a stale lock. Leftover
    temporary files of killed writes are removed once the lock is held.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    with open(run_dir / name, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{run_dir}: another process is computing this run; waiting for it to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        for tmp in run_dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        yield
