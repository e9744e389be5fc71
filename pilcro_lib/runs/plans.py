"""Run requests on disk: what a planned run needs to be computed on another process or machine.

:func:`save_request` writes a :class:`pilcro_lib.runs.records.RunRequest` to ``<folder>/<key>.pkl``:
a pickle of a small header (format, key, name, record store, a one-line summary of the run and
the blobs it uses) and of the request itself serialised with cloudpickle, so that functions
defined in a notebook travel by value. Tensors of at least :data:`BLOB_BYTES` (the images of a
dataset) are stored once per plan folder, as ``blobs/<sha256>.pt``, and referenced by hash: many
runs on one dataset do not copy it many times. Loading a request runs the code it holds: load
only plans you made.

Example::

    folder = Path("runs/plans/00_getting_started")
    for file in list_requests(folder):
        print(file.key, file.summary)
        record = load_request(file.path).compute()
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from pilcro_lib.runs.checkpoint import CorruptFileError, write_atomic
from pilcro_lib.runs.fingerprint import sha256_of_tensors

__all__ = [
    "BLOB_BYTES",
    "FORMAT",
    "RequestFile",
    "list_requests",
    "load_request",
    "loads_request",
    "read_request_file",
    "save_request",
    "summary",
]

FORMAT = "pilcro-run-request/1"
BLOB_BYTES = 1 << 20  # tensors at least this large are stored once per plan folder
BLOBS = "blobs"


@dataclass
class RequestFile:
    """A request file's header and its still serialised request (``payload``)."""

    path: Path
    key: str
    name: str
    store: str | None
    summary: str
    blobs: list[str]
    payload: bytes


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError:
        raise ImportError(
            "planning runs needs cloudpickle: pip install cloudpickle "
            "(or pip install 'pilcro-lib[book]')"
        ) from None
    return cloudpickle


def save_request(request: Any, folder: str | Path) -> Path:
    """Write ``request`` (a :class:`pilcro_lib.runs.records.RunRequest`) to ``folder/<key>.pkl``;
    return its path."""
    folder = Path(folder)
    (folder / BLOBS).mkdir(parents=True, exist_ok=True)
    request = replace(
        request, store=_absolute(request.store), runs=_absolute(request.runs)
    )  # for any working directory
    buffer = io.BytesIO()
    pickler = _blob_pickler(_cloudpickle(), buffer, folder / BLOBS)
    pickler.dump(request)
    header = {
        "format": FORMAT,
        "key": request.key,
        "name": request.name,
        "store": request.store,
        "summary": summary(request.spec),
        "blobs": sorted(set(pickler.used)),
        "payload": buffer.getvalue(),
    }
    path = folder / f"{request.key}.pkl"
    write_atomic(path, pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def _absolute(folder: str | Path | None) -> str | None:
    return None if folder is None else str(Path(folder).resolve())


def _blob_pickler(cloudpickle: Any, file: io.BytesIO, blobs: Path) -> Any:
    """A cloudpickle pickler that stores large plain tensors in ``blobs/`` and pickles their
    hash."""

    class BlobPickler(cloudpickle.Pickler):
        def __init__(self) -> None:
            super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
            self.used: list[str] = []

        def persistent_id(self, obj: Any) -> tuple[str, str] | None:
            if type(obj) is not torch.Tensor or obj.requires_grad or obj.nbytes < BLOB_BYTES:
                return None
            tensor = obj.detach().cpu()
            digest = sha256_of_tensors(tensor)
            path = blobs / f"{digest}.pt"
            if not path.exists():
                data = io.BytesIO()
                torch.save(
                    tensor.clone()
                    if tensor.untyped_storage().nbytes() != tensor.nbytes
                    else tensor,
                    data,
                )
                write_atomic(path, data.getvalue())
            self.used.append(digest)
            return ("tensor", digest)

    return BlobPickler()


def read_request_file(path: str | Path) -> RequestFile:
    """The header and payload of the request file at ``path``; :class:`CorruptFileError` naming it
    if unreadable."""
    path = Path(path)
    try:
        header = pickle.loads(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise CorruptFileError(
            f"run request {path} cannot be read ({error}); plan again to rewrite it"
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CorruptFileError(
            f"run request {path} is not a {FORMAT} file; plan again to rewrite it"
        )
    return RequestFile(
        path,
        header["key"],
        header["name"],
        header["store"],
        header["summary"],
        header["blobs"],
        header["payload"],
    )


def list_requests(folder: str | Path) -> list[RequestFile]:
    """Every request file in the plan ``folder``, sorted by run name and key (none if it is
    missing)."""
    files = [read_request_file(path) for path in Path(folder).glob("*.pkl")]
    return sorted(files, key=lambda f: (f.name, f.key))


def loads_request(payload: bytes, blob: Callable[[str], torch.Tensor]) -> Any:
    """The request serialised in ``payload``, its stored tensors read by ``blob(sha256)``."""
    loaded: dict[str, torch.Tensor] = {}

    class BlobUnpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> torch.Tensor:
            kind, digest = pid
            if kind != "tensor":
                raise pickle.UnpicklingError(f"unknown stored object {kind!r}")
            if digest not in loaded:
                loaded[digest] = blob(digest)
            return loaded[digest]

    _cloudpickle()  # the payload's functions are rebuilt with cloudpickle's helpers
    return BlobUnpickler(io.BytesIO(payload)).load()


def load_request(path: str | Path) -> Any:
    """The :class:`pilcro_lib.runs.records.RunRequest` in the request file at ``path`` (blobs from
    its folder)."""
    file = read_request_file(path)
    blobs = file.path.parent / BLOBS

    def blob(digest: str) -> torch.Tensor:
        source = blobs / f"{digest}.pt"
        if not source.is_file():
            raise CorruptFileError(
                f"run request {file.path} needs {source}, which is missing; plan again"
            )
        return torch.load(source, weights_only=True)

    return loads_request(file.payload, blob)


def summary(spec: dict[str, Any], width: int = 100) -> str:
    """One line for a run's description: its function and its scalar inputs (else those its function
    reads)."""
    function = spec.get("function")
    name = function if isinstance(function, str) else str(function.get("function", "?"))
    scalars = _scalars(spec.get("inputs", {})) or _scalars(
        function.get("reads", {}) if isinstance(function, dict) else {}
    )
    text = f"{name.rpartition(':')[2]}({', '.join(f'{k}={v}' for k, v in scalars)})"
    return text if len(text) <= width else text[: width - 3] + "..."


def _scalars(described: dict[str, Any]) -> list[tuple[str, Any]]:
    """The numbers, strings and flags among ``described``'s entries and those of its dict
    entries."""
    items: list[tuple[str, Any]] = []
    for key, value in described.items():
        if isinstance(value, dict) and "tensor" not in value and "content" not in value:
            items += [
                (k, v)
                for k, v in value.items()
                if isinstance(v, (bool, int, float, str)) and v != "device"
            ]
        elif isinstance(value, (bool, int, float, str)) and value != "device":
            items.append((key, value))
    return items
