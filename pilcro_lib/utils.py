"""Seeding, device choice, provenance and argument checks shared by every module."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

PROFILES = ("smoke", "book", "paper")


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise a ``ValueError`` naming ``name``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")
    return value


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer >= ``minimum``, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU generator seeded with ``seed``."""
    check_positive_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else the best available: cuda, then mps, then cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def git_commit(path: str | Path | None = None) -> str:
    """The git commit of the checkout holding ``path`` (default: this package), or ``"unknown"``."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    commit = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True, text=True
    ).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def provenance(profile: str | None = None, seed: int | None = None, device: torch.device | None = None) -> dict:
    """What produced a notebook's outputs: library version, commit, profile, device, versions, time."""
    from pilcro_lib import __version__

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
    """The profile named by ``PILCRO_PROFILE`` (default ``default``)."""
    return os.environ.get("PILCRO_PROFILE", default)
