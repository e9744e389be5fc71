"""Seeding, device choice, provenance and argument checks shared by every module."""

from __future__ import annotations

import ast
import math
import os
import platform
import random
import subprocess
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

PROFILES = ("smoke", "book", "paper")
DEVICE_NAMES = ("cpu", "cuda", "cuda:<index>", "mps")
DTYPE_KINDS = ("float", "integer")
MAX_SEED = 2**64 - 1


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise a ``ValueError`` naming ``name``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(
            f"{name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}"
        )
    return value


def _is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_positive_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` if it is an integer (NumPy integers too, bools not) in
    ``[minimum, maximum]``, else raise a ``TypeError``/``ValueError`` naming ``name``."""
    allowed = (
        f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    )
    if not _is_int(value):
        raise TypeError(f"{name} must be {allowed}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def _range_text(minimum: float | None, maximum: float | None, strict: bool) -> str:
    if minimum is not None and maximum is not None:
        return f" in ({minimum}, {maximum})" if strict else f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" {'>' if strict else '>='} {minimum}"
    if maximum is not None:
        return f" {'<' if strict else '<='} {maximum}"
    return ""


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
    finite: bool = True,
    allow_bool: bool = False,
) -> float:
    """Return ``value`` as a ``float`` if it is a real number (Python or NumPy) within the bounds.

    ``minimum``/``maximum`` are inclusive, or exclusive with ``strict`` (NaN is outside every
    range); ``finite`` refuses NaN and infinities; bools are refused unless ``allow_bool``.
    Raises a ``TypeError`` (not a number) or ``ValueError`` (out of range) naming ``name`` and
    the allowed range.
    """
    allowed = ("a finite number" if finite else "a number") + _range_text(minimum, maximum, strict)
    is_bool = isinstance(value, (bool, np.bool_))
    if (is_bool and not allow_bool) or not isinstance(
        value, (int, float, np.integer, np.floating, np.bool_)
    ):
        raise TypeError(f"{name} must be {allowed}, got {value!r}")
    number = float(value)
    below = minimum is not None and (number <= minimum if strict else number < minimum)
    above = maximum is not None and (number >= maximum if strict else number > maximum)
    bounded = minimum is not None or maximum is not None
    if (finite and not math.isfinite(number)) or (bounded and math.isnan(number)) or below or above:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return number


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (NumPy bools too), else raise a
    ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_type(
    name: str, value: Any, types: type | tuple[type, ...], what: str | None = None
) -> Any:
    """Return ``value`` if it is an instance of ``types``, else raise a ``TypeError`` naming
    ``name``.

    ``what`` describes the allowed values (default: the type names).
    """
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise TypeError(
            f"{name} must be {what or 'an instance of ' + names}, got {type(value).__name__}"
        )
    return value


def check_int_tuple(
    name: str, value: Any, length: int, *, minimum: int = 1, dims: str = ""
) -> tuple[int, ...]:
    """``value`` as a tuple of ``length`` integers >= ``minimum`` (e.g. ``input_size`` as
    ``(channels, height, width)``, described by ``dims``), else raise naming ``name``."""
    allowed = f"{length} integers >= {minimum}" + (f" {dims}" if dims else "")
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"{name} must be a sequence of {allowed}, got {value!r}")
    if (
        len(value) != length
        or not all(_is_int(v) for v in value)
        or any(v < minimum for v in value)
    ):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return tuple(int(v) for v in value)


def _dtype_ok(tensor: Tensor, kind: str) -> bool:
    if kind == "float":
        return tensor.is_floating_point()
    return not tensor.is_floating_point() and not tensor.is_complex() and tensor.dtype != torch.bool


def check_tensor(
    name: str,
    value: Any,
    *,
    ndim: int | None = None,
    min_ndim: int | None = None,
    dims: str = "",
    dtype_kind: str | None = None,
    finite: bool = False,
    nonempty: bool = False,
) -> Tensor:
    """Return ``value`` if it is a tensor of the expected form, else raise naming ``name``.

    ``ndim``: exact number of dimensions, ``min_ndim``: at least that many, ``dims``: their
    names for the message (e.g. ``"[N, C, H, W]"``); ``dtype_kind``: ``"float"`` or
    ``"integer"`` (not bool); ``finite``: no NaN or infinity (one pass over the tensor);
    ``nonempty``: at least one element. ``TypeError`` for a non-tensor or a wrong dtype,
    ``ValueError`` otherwise.
    """
    described = f" {dims}" if dims else ""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a tensor{described}, got {type(value).__name__}")
    if ndim is not None and value.dim() != ndim:
        raise ValueError(
            f"{name} must be a {ndim}-D tensor{described}, got shape {tuple(value.shape)}"
        )
    if min_ndim is not None and value.dim() < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions{described}, got shape "
            f"{tuple(value.shape)}"
        )
    if dtype_kind is not None and not _dtype_ok(
        value, check_choice("dtype_kind", dtype_kind, DTYPE_KINDS)
    ):
        kind = "a floating-point" if dtype_kind == "float" else "an integer"
        raise TypeError(f"{name} must be {kind} tensor, got dtype {value.dtype}")
    if nonempty and value.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    if finite and value.is_floating_point() and not torch.isfinite(value).all():
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(
            f"{name} must be finite, but {bad} of its {value.numel()} values are NaN or infinite"
        )
    return value


def check_image_batch(
    name: str, value: Any, *, dims: str = "[batch, channels, height, width]"
) -> Tensor:
    """Return ``value`` if it is a non-empty, finite floating-point image batch ``[B, C, H, W]``."""
    return check_tensor(
        name, value, ndim=4, dims=dims, dtype_kind="float", nonempty=True, finite=True
    )


def check_map(name: str, value: Any) -> Tensor:
    """Return ``value`` if it is a floating-point map (or a stack of maps) ``[..., H, W]`` with at
    least one pixel."""
    return check_tensor(
        name, value, min_ndim=2, dims="[..., H, W]", dtype_kind="float", nonempty=True
    )


def check_model_builder(name: str, value: Any) -> Any:
    """Return ``value`` if it is a function that builds a model (not a model itself), else raise a
    ``TypeError``."""
    if isinstance(value, torch.nn.Module) or not callable(value):
        raise TypeError(
            f"{name} must be a function that returns a freshly initialised nn.Module (e.g. a "
            f"lambda), got {type(value).__name__}"
        )
    return value


def check_indices(
    name: str, value: Any, size: int, *, dims: str = "[n]", what: str = "indices"
) -> Tensor:
    """Return ``value`` if it is a 1-D integer tensor whose entries lie in ``[0, size)``."""
    check_tensor(name, value, ndim=1, dims=dims, dtype_kind="integer")
    if value.numel() > 0:
        low, high = torch.stack([value.min(), value.max()]).tolist()
        if low < 0 or high >= size:
            raise ValueError(
                f"{name} must be {what} in [0, {size - 1}], got values from {low} to {high}"
            )
    return value


def check_labels(name: str, labels: Any, n: int, num_classes: int | None = None) -> Tensor:
    """Return ``labels`` if it is an integer tensor ``[n]`` (of class indices in
    ``[0, num_classes)``)."""
    check_tensor(name, labels, ndim=1, dims="[N]", dtype_kind="integer")
    if labels.shape[0] != n:
        raise ValueError(
            f"{name} must have shape [{n}] (one per input), got shape {tuple(labels.shape)}"
        )
    if num_classes is not None:
        check_indices(
            name, labels, num_classes, dims="[N]", what=f"class indices (num_classes={num_classes})"
        )
    return labels


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU generator seeded with ``seed``."""
    seed = check_positive_int("seed", seed, minimum=0, maximum=MAX_SEED)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else the best available: cuda, then mps, then cpu.

    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:<index>"``, ``"mps"`` (or a ``torch.device``); a
    device that this machine does not have is refused with a ``ValueError`` that says so.
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    check_type("device", device, (str, torch.device), "a device name (str) or a torch.device")
    allowed = f"choose one of {', '.join(map(repr, DEVICE_NAMES))}, or None for the best available"
    try:
        chosen = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a device name; {allowed}") from err
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={device!r} is not supported; {allowed}")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but no CUDA device is available; use device='cpu'"
        )
    if (
        chosen.type == "cuda"
        and chosen.index is not None
        and chosen.index >= torch.cuda.device_count()
    ):
        raise ValueError(
            f"device={device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA "
            "device(s)"
        )
    if chosen.type == "mps" and not _mps_available():
        raise ValueError(
            f"device={device!r} was requested but no MPS device is available; use device='cpu'"
        )
    return chosen


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def git_commit(path: str | Path | None = None, *, files: Iterable[str] | None = None) -> str:
    """The git commit of the checkout holding ``path`` (default: this package), or ``"unknown"``,
    with ``+dirty`` when tracked files differ from it: any file but notebooks, or only ``files``
    (paths relative to the checkout's top) when given."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    commit = out.stdout.strip()
    # a notebook being executed in place is not a change of the code
    which = [f":(top){f}" for f in files] if files is not None else [":/", ":(exclude,top)*.ipynb"]
    dirty = (
        bool(which)
        and subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *which],
            cwd=where,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    return commit + ("+dirty" if dirty else "")


def provenance(
    profile: str | None = None, seed: int | None = None, device: torch.device | None = None
) -> dict:
    """What produced a notebook's outputs: library version, commit, profile, device, versions,
    time."""
    from pilcro_lib import __version__

    if profile is not None:
        check_choice("profile", profile, PROFILES)
    if seed is not None:
        check_positive_int("seed", seed, minimum=0, maximum=MAX_SEED)
    device = get_device(device)
    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    return {
        "pilcro_lib": __version__,
        "git_commit": git_commit(),
        "profile": profile,
        "seed": seed,
        "device": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "time_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
    }


def print_provenance(**kwargs: Any) -> dict:
    """Print :func:`provenance` as aligned ``key: value`` lines and return it."""
    info = provenance(**kwargs)
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:<{width}} : {value}")
    return info


def env_profile(default: str = "book") -> str:
    """The profile named by ``PILCRO_PROFILE`` (default ``default``), one of :data:`PROFILES`."""
    check_choice("default", default, PROFILES)
    return check_choice("PILCRO_PROFILE", os.environ.get("PILCRO_PROFILE", default), PROFILES)


def _assigned_names(source: str) -> list[str] | None:
    """The names a cell assigns at its top level (``a = ...``, ``a: int = ...``, ``a, b = ...``),
    in order; ``None`` if ``source`` is not Python."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None

    def names(target: ast.expr) -> list[str]:
        if isinstance(target, ast.Name):
            return [target.id]
        if isinstance(target, (ast.Tuple, ast.List)):
            return [n for element in target.elts for n in names(element)]
        return names(target.value) if isinstance(target, ast.Starred) else []

    found: list[str] = []
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else ([node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        )
        found += [n for target in targets for n in names(target) if n not in found]
    return found


def _is_injected_cell(source: str) -> bool:
    """Whether ``source`` is a cell papermill injected: its ``# Parameters`` comment, then
    assignments only."""
    lines = source.strip().splitlines()
    if not lines or lines[0].strip() != "# Parameters":
        return False
    try:
        return all(isinstance(node, ast.Assign) for node in ast.parse(source).body)
    except SyntaxError:
        return False


def check_injected_parameters(history: Sequence[str] | None = None) -> list[str]:
    """Refuse a papermill parameter that the notebook's ``parameters`` cell does not declare.

    papermill (``-p NAME VALUE``) runs the cell tagged ``parameters``, then a cell it injects
    (tagged ``injected-parameters``, starting with the comment ``# Parameters``) that assigns every
    parameter given, and only warns about a name the ``parameters`` cell does not assign: a typo
    (``-p epoch 3`` where the cell declares ``epochs``) would run the notebook with the default.
    Call this in the code cell after the ``parameters`` cell. It reads the sources of the cells
    the kernel ran (``history``, in order; default IPython's input history), finds the last
    injected cell and the cell run just before it (the ``parameters`` cell), and raises a
    ``ValueError`` naming every injected name that cell does not assign and listing the ones it
    does (papermill's own ``PAPERMILL_*`` names pass). Returns the injected names, ``[]`` when no
    injected cell ran (nbval, an interactive session, plain Python).
    """
    if history is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return []
        shell = get_ipython()
        if shell is None:
            return []
        history = shell.history_manager.input_hist_parsed
    if (
        isinstance(history, str)
        or not isinstance(history, Sequence)
        or not all(isinstance(h, str) for h in history)
    ):
        raise TypeError(
            "history must be a sequence of cell sources (str) or None, got "
            f"{type(history).__name__}"
        )
    where = next(
        (i for i in range(len(history) - 1, -1, -1) if _is_injected_cell(history[i])), None
    )
    if where is None:
        return []
    injected = _assigned_names(history[where]) or []
    declared = (_assigned_names(history[where - 1]) or []) if where > 0 else []
    unknown = [
        name for name in injected if name not in declared and not name.startswith("PAPERMILL_")
    ]
    if unknown:
        allowed = (
            f"its parameters are {', '.join(map(repr, declared))}"
            if declared
            else "it declares none (no cell tagged 'parameters' ran before the injected one)"
        )
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} given to papermill: the "
            "notebook's 'parameters' cell does not assign them, so they would change nothing; "
            f"{allowed}"
        )
    return injected


def setup_notebook(profile: str) -> str:
    """The set-up a chapter runs right after its ``parameters`` cell; returns ``profile``.

    Checks ``profile`` (one of :data:`PROFILES`), refuses papermill parameters that the
    ``parameters`` cell does not declare (:func:`check_injected_parameters`) and, in the ``smoke``
    profile, sends run records to ``_build/smoke-records`` unless ``$PILCRO_RECORDS`` names a
    store: a quick smoke run never writes into the book's committed ``records/``.
    """
    check_choice("profile", profile, PROFILES)
    check_injected_parameters()
    if profile == "smoke" and "PILCRO_RECORDS" not in os.environ:
        from pilcro_lib.runs.records import smoke_store

        os.environ["PILCRO_RECORDS"] = str(smoke_store())
    return profile
