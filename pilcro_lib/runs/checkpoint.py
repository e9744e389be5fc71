"""Crash-safe, code-free files of a run directory: atomic writes, checkpoints, a lock.

A checkpoint is one file, ``checkpoint.pt``: a header line with the SHA-256 of the payload,
then the payload (``torch.save`` of plain tensors, numbers, strings, lists and dicts). It is
written to a temporary file of a unique name, flushed to disk and renamed over the previous
one, so a process killed at any instant leaves either the old checkpoint or the new one, never
a mix. It is read back with ``weights_only=True``: loading a checkpoint cannot run code.
:func:`run_dir_lock` makes a second process that asks for the same run wait for the first.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import random
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

MAGIC = b"PILCRO-CHECKPOINT 1 sha256="
CHECKPOINT = "checkpoint.pt"


class CorruptFileError(ValueError):
    """A run file that cannot be read back as written; the message names it and what to do."""


def write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves the old file or the new one, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


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
        raise CorruptFileError(f"{what} {path} is not valid JSON ({err}); delete it and run again") from None


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) as ``run_dir/checkpoint.pt``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    write_atomic(Path(run_dir) / CHECKPOINT, MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


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
    if not header.startswith(MAGIC) or hashlib.sha256(payload).hexdigest().encode() != header[len(MAGIC):]:
        raise CorruptFileError(f"checkpoint {path} is corrupt (checksum mismatch or unknown format); {advice}")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # holds objects that weights_only refuses to build
        raise CorruptFileError(f"checkpoint {path} holds more than plain data ({err}); {advice}") from None


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
