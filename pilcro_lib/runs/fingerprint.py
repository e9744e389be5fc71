"""What identifies a run: a JSON description of the objects that produce it, and its hash.

:func:`describe` turns the objects a run is made from (datasets, tensors, models, regularisers,
functions, numbers, strings, lists and dicts of them) into plain JSON that changes whenever
anything that decides the result changes: a dataset by a SHA-256 of its images and labels, a
tensor by its content, a model by its structure and weights, a regulariser by its
``describe()`` (name and parameters), a function by its normalised source and the data it
reads from its closure and globals. :func:`run_key` hashes such a description.
:func:`code_fingerprint` hashes the library's training code, so a result made by other code
is never taken for a current one.
"""

from __future__ import annotations

import ast
import dis
import hashlib
import inspect
import json
import math
import sys
import textwrap
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

# The modules whose code decides a trained result. Docstrings, comments and formatting do not count.
TRAINING_MODULES = (
    "data",
    "synthetic",
    "models",
    "layers",
    "objective",
    "landscape",
    "train",
    "experiments",
)
_PACKAGE = Path(__file__).resolve().parents[1]
_EMPTY = object()


def sha256_of_tensors(*tensors: torch.Tensor | np.ndarray) -> str:
    """A SHA-256 (hex) of the shapes, dtypes and bytes of ``tensors``."""
    h = hashlib.sha256()
    for t in tensors:
        array = (
            t.detach().cpu().contiguous().numpy()
            if isinstance(t, torch.Tensor)
            else np.ascontiguousarray(t)
        )
        h.update(f"{array.dtype}{array.shape}".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def describe(obj: Any, *, where: str = "value") -> Any:
    """A JSON-serialisable description of ``obj`` that changes whenever its content does.

    ``where`` names the object in error messages (e.g. ``inputs['train']``). Raises
    ``TypeError`` for an object it cannot describe; give such a class a ``describe()`` method
    that returns a dict of its name and parameters.
    """
    return _describe(obj, where, set())


def _describe(obj: Any, where: str, seen: set[int]) -> Any:
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, np.generic):
        return _describe(obj.item(), where, seen)
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return {
            "tensor": sha256_of_tensors(obj)[:16],
            "shape": list(obj.shape),
            "dtype": str(obj.dtype),
        }
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.device):
        return "device"  # where a run ran is provenance, not identity
    if isinstance(obj, (list, tuple)):
        return [_describe(v, f"{where}[{i}]", seen) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _describe(v, f"{where}[{k!r}]", seen) for k, v in obj.items()}
        # keys of other types are described with their type: {1: x} and {"1": x} differ
        return {
            "dict items": [
                [_describe(k, f"{where} key", seen), _describe(v, f"{where}[{k!r}]", seen)]
                for k, v in obj.items()
            ]
        }
    if hasattr(obj, "describe") and callable(obj.describe) and not isinstance(obj, type):
        return {"type": type(obj).__qualname__, **_describe(obj.describe(), where, seen)}
    if isinstance(obj, TensorDataset):
        return {"type": "TensorDataset", "tensors": _describe(list(obj.tensors), where, seen)}
    if isinstance(obj, nn.Module):
        state = list(obj.state_dict().values())
        described = {
            "module": repr(obj),
            "state": sha256_of_tensors(*state)[:16] if state else None,
        }
        frozen = [name for name, p in obj.named_parameters() if not p.requires_grad]
        return described | ({"frozen": frozen} if frozen else {})
    if isinstance(obj, (types.FunctionType, types.MethodType)):
        return _describe_function(obj, where, seen)
    if isinstance(obj, (type, types.ModuleType, types.BuiltinFunctionType)):
        return (
            getattr(obj, "__module__", "")
            + ":"
            + getattr(obj, "__qualname__", getattr(obj, "__name__", ""))
        )
    raise TypeError(
        f"{where}: cannot describe an object of type {type(obj).__name__} for a run key; pass "
        "numbers, strings, tensors, an ImageDataset or TensorDataset, models, functions, or give "
        "the object a describe() method that returns a dict of its name and parameters (a "
        "dataset: of its content)"
    )


def _describe_function(fn: Any, where: str, seen: set[int]) -> Any:
    """A library function by name (its code is in :func:`code_fingerprint`); any other by its
    normalised source and the data its closure and globals hold."""
    if isinstance(fn, types.MethodType):
        return {"method": fn.__func__.__qualname__, "self": _describe(fn.__self__, where, seen)}
    name = f"{fn.__module__}:{fn.__qualname__}"
    if not _is_user_code(fn) or id(fn) in seen:
        return name
    seen = seen | {id(fn)}
    cells = zip(fn.__code__.co_freevars, fn.__closure__ or ())
    free = {k: _contents(c) for k, c in cells}
    free = {k: v for k, v in free.items() if v is not _EMPTY}
    for global_name in _global_names(fn.__code__):
        if global_name in fn.__globals__:
            free.setdefault(global_name, fn.__globals__[global_name])
    reads = {k: v for k, v in sorted(free.items()) if not isinstance(v, types.ModuleType)}
    reads |= _library_constants_read(fn.__code__, free)
    return {
        "function": name,
        "source": _source_digest(fn),
        "defaults": _describe(fn.__defaults__ or (), f"{where}.__defaults__", seen),
        "kwdefaults": _describe(fn.__kwdefaults__ or {}, f"{where}.__kwdefaults__", seen),
        "reads": {k: _describe(v, f"{where} reads {k}", seen) for k, v in reads.items()},
    }


def _library_constants_read(code: types.CodeType, scope: dict[str, Any]) -> dict[str, Any]:
    """The library's data that ``code`` reads through a module in ``scope`` (its closure and
    globals), e.g. ``D.NORMALIZATION`` after ``from pilcro_lib import data as D``, as
    ``{"D.NORMALIZATION": value}``."""
    reads = {}
    for alias, attribute in sorted(_attributes_loaded(code)):
        module = scope.get(alias)
        if not (
            isinstance(module, types.ModuleType) and module.__name__.split(".")[0] == "pilcro_lib"
        ):
            continue
        value = getattr(module, attribute, None)
        if value is not None and not callable(value) and not isinstance(value, types.ModuleType):
            reads[f"{alias}.{attribute}"] = value
    return reads


def _attributes_loaded(code: types.CodeType) -> set[tuple[str, str]]:
    """``(name, attribute)`` for every ``name.attribute`` of a global or closure variable that
    ``code`` (or code nested in it) loads."""
    found, previous = set(), None
    for instruction in dis.get_instructions(code):
        if previous is not None and instruction.opname in ("LOAD_ATTR", "LOAD_METHOD"):
            found.add((previous, instruction.argval))
        previous = (
            instruction.argval if instruction.opname in ("LOAD_GLOBAL", "LOAD_DEREF") else None
        )
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= _attributes_loaded(const)
    return found


def _contents(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # a closure variable not assigned yet
        return _EMPTY


def _is_user_code(fn: Any) -> bool:
    """A function of a notebook, script or test (described in full), not of this library or an
    installed package (named only)."""
    module = sys.modules.get(fn.__module__ or "")
    file = str(getattr(module, "__file__", "") or "")
    installed = "site-packages" in file or "dist-packages" in file or file.startswith(str(_PACKAGE))
    return not installed


def _global_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _global_names(const)
    return names


def _source_digest(fn: Any) -> str:
    """SHA-256 of the function's source as an AST (formatting and comments do not count); of its
    byte code for a lambda (whose source line may hold other code) or where no source exists."""
    try:
        if fn.__name__ == "<lambda>":
            raise TypeError
        text = ast.dump(ast.parse(textwrap.dedent(inspect.getsource(fn))))
    except (OSError, TypeError, SyntaxError):
        text = _code_text(fn.__code__)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _code_text(code: types.CodeType) -> str:
    consts = [_code_text(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return f"{code.co_code.hex()}|{consts}|{code.co_names}|{code.co_varnames}"


def canonical_json(obj: Any) -> str:
    """``obj`` as JSON with sorted keys and no spaces: equal descriptions give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_key(description: Any) -> str:
    """A 16-hex-digit hash of a JSON description (see :func:`describe`)."""
    return hashlib.sha256(canonical_json(description).encode()).hexdigest()[:16]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def _module_tree(file_name: str) -> ast.Module:
    """The AST of the library module ``file_name`` (e.g. ``train.py``), docstrings removed."""
    return _strip_docstrings(ast.parse((_PACKAGE / file_name).read_text()))


@cache
def code_fingerprint() -> str:
    """A 16-hex-digit hash of the training modules' code (:data:`TRAINING_MODULES`), as ASTs
    without docstrings: editing a docstring, a comment or the formatting leaves it unchanged."""
    h = hashlib.sha256()
    for name in TRAINING_MODULES:
        h.update(name.encode() + ast.dump(_module_tree(f"{name}.py")).encode())
    return h.hexdigest()[:16]


@dataclass
class RunLog:
    """What a run did, collected while it runs (see :func:`traced_code`).

    functions: every library function that ran, as ``"module.py:qualname"``; precisions: the
    arithmetic its training used (``"float32"``, ``"bf16"``); segments: one entry per process
    that trained part of it (commit, start time, epochs), oldest first, carried over a resume by
    the checkpoint (:func:`pilcro_lib.train.fit`), which also restores the functions of the
    epochs trained before.
    """

    functions: set[str] = field(default_factory=set)
    precisions: set[str] = field(default_factory=set)
    segments: list[dict[str, Any]] = field(default_factory=list)


_ACTIVE: list[RunLog] = []


def current_run() -> RunLog | None:
    """The :class:`RunLog` of the innermost :func:`traced_code` block, or ``None`` outside one."""
    return _ACTIVE[-1] if _ACTIVE else None


def start_segment(log: RunLog, first_epoch: int) -> dict[str, Any]:
    """Append to ``log`` (and return) the segment this process trains from ``first_epoch``: the
    commit of the library's checkout (``+dirty`` if changed), the start time and
    ``epochs: [first_epoch, last epoch done]`` (the caller moves the end as epochs finish)."""
    from pilcro_lib.utils import git_commit

    previous = sys.getprofile()
    sys.setprofile(None)  # bookkeeping, not the run's code
    try:
        commit = git_commit()
    finally:
        sys.setprofile(previous)
    segment = {
        "commit": commit,
        "started_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "epochs": [first_epoch, first_epoch],
    }
    log.segments.append(segment)
    return segment


@contextmanager
def traced_code() -> Iterator[RunLog]:
    """Collect, while inside, every library function that runs in this thread into a
    :class:`RunLog`'s ``functions`` (as ``"module.py:qualname"``, filled as they run).

    Left out: the orchestration package :mod:`pilcro_lib.runs` (how a run is stored decides
    nothing in it), and module and class bodies, which run when a module is first imported
    inside the block: importing ``layers`` does not make every layer class part of a run."""
    log = RunLog()
    prefix = str(_PACKAGE) + "/"
    orchestration = str(Path(__file__).resolve().parent) + "/"

    def profile(frame: types.FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        if (
            event == "call"
            and code.co_flags & inspect.CO_NEWLOCALS
            and code.co_filename.startswith(prefix)
            and not code.co_filename.startswith(orchestration)
        ):
            log.functions.add(f"{code.co_filename[len(prefix) :]}:{code.co_qualname}")

    previous = sys.getprofile()
    sys.setprofile(profile)
    _ACTIVE.append(log)
    try:
        yield log
    finally:
        _ACTIVE.remove(log)
        sys.setprofile(previous)


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _constants_read(tree: ast.Module, definitions: list[ast.AST]) -> list[ast.AST]:
    """The module-level assignments that ``definitions`` read, directly or through each other."""
    assignments = [
        n for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign))
    ]
    wanted = set().union(*(_names(d) for d in definitions)) if definitions else set()
    chosen: list[ast.AST] = []
    while True:
        new = [n for n in assignments if n not in chosen and _targets(n) & wanted]
        if not new:
            return [n for n in assignments if n in chosen]
        chosen += new
        wanted |= set().union(*(_names(n.value) for n in new if n.value is not None))


def _targets(node: ast.AST) -> set[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return set().union(*(_names(t) for t in targets))


def code_digest(functions: Iterable[str]) -> str:
    """A 16-hex-digit hash of the code behind ``functions`` (``"module.py:qualname"``, see
    :func:`traced_code`): each one's definition (a function nested in another counts as part of
    the outer one; a method as itself plus its class's own statements: bases, decorators, class
    attributes, dataclass fields), the module-level constants those definitions read, and the
    library constants they import (``from pilcro_lib.data import X``, ``D.X`` after
    ``from pilcro_lib import data as D``). Docstrings, comments, formatting and the other methods
    of a class do not count; a function that no longer exists does."""
    h = hashlib.sha256()
    by_module: dict[str, set[tuple[str, ...]]] = {}
    for function in sorted(set(functions)):
        module, _, qualname = function.partition(":")
        by_module.setdefault(module, set()).add(_definition_path(qualname))
    for module, paths in sorted(by_module.items()):
        try:
            tree = _module_tree(module)
        except (OSError, SyntaxError):
            h.update(f"missing module {module}".encode())
            continue
        definitions = {path: _definition(tree, path) for path in sorted(paths)}
        found = [node for nodes in definitions.values() if nodes for node in nodes]
        h.update(
            module.encode() + "".join(ast.dump(n) for n in _constants_read(tree, found)).encode()
        )
        h.update(_imported_constants(tree, found).encode())
        for path, nodes in definitions.items():
            text = "".join(ast.dump(n) for n in nodes) if nodes else "missing"
            h.update(f"{'.'.join(path)}:{text}".encode())
    return h.hexdigest()[:16]


def _definition_path(qualname: str) -> tuple[str, ...]:
    """The names leading to the definition that holds ``qualname``: ``A.f.<locals>.g`` ->
    ``(A, f)``."""
    names = qualname.split(".")
    return tuple(names[: names.index("<locals>")] if "<locals>" in names else names)


def _definition(tree: ast.Module, path: tuple[str, ...]) -> list[ast.AST] | None:
    """The AST nodes that define ``path`` in ``tree``: the function itself, preceded by the own
    statements (without methods) of each class it sits in; ``None`` if it does not exist."""
    nodes: list[ast.AST] = []
    body = tree.body
    for i, name in enumerate(path):
        match = [n for n in body if isinstance(n, _DEFINITIONS) and n.name == name]
        if not match:
            return None
        node = match[-1]
        if i == len(path) - 1:
            return nodes + [node]
        if not isinstance(node, ast.ClassDef):
            return nodes + [node]  # a function defined inside a function: the outer one holds it
        own = [n for n in node.body if not isinstance(n, _DEFINITIONS)]
        nodes.append(
            ast.ClassDef(
                name=node.name,
                bases=node.bases,
                keywords=node.keywords,
                body=own,
                decorator_list=node.decorator_list,
            )
        )
        body = node.body
    return nodes


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _imported_constants(tree: ast.Module, definitions: list[ast.AST]) -> str:
    """The library's module-level constants that ``definitions`` read through an import (as AST
    text)."""
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    imports += [
        n for d in definitions for n in ast.walk(d) if isinstance(n, (ast.Import, ast.ImportFrom))
    ]
    used = set().union(*(_names(d) for d in definitions)) if definitions else set()
    attributes = {
        (n.value.id, n.attr)
        for d in definitions
        for n in ast.walk(d)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
    }
    wanted: set[tuple[str, str]] = set()  # (module file, constant)
    for node in imports:
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("pilcro_lib.")
            ):
                if bound in used:  # from pilcro_lib.data import NORMALIZATION
                    wanted.add((_module_file(node.module), alias.name))
            else:  # from pilcro_lib import data as D; import pilcro_lib.data as D
                full = (
                    f"{node.module}.{alias.name}"
                    if isinstance(node, ast.ImportFrom)
                    else alias.name
                )
                if full.startswith("pilcro_lib.") and (
                    alias.asname or isinstance(node, ast.ImportFrom)
                ):
                    wanted |= {
                        (_module_file(full), attr) for name, attr in attributes if name == bound
                    }
    text = []
    for file_name, constant in sorted(wanted):
        try:
            source = _module_tree(file_name)
        except (OSError, SyntaxError):
            continue
        text += [
            f"{file_name}:" + ast.dump(n) for n in _constants_read(source, [ast.Name(id=constant)])
        ]
    return "".join(text)


def _module_file(module: str) -> str:
    """``pilcro_lib.runs.records`` -> ``runs/records.py`` (relative to the package)."""
    return "/".join(module.split(".")[1:]) + ".py"
