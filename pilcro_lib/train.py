"""Training and evaluation: ``fit`` with crash-safe per-epoch checkpoints and bit-exact resume, ``evaluate``.

A run directory holds ``fit_config.json`` (a description of everything that decides the run:
the model's structure and initial weights, the exact images, every setting, the regulariser's
parameters and the training code's fingerprint, see :mod:`pilcro_lib.fingerprint`),
``checkpoint.pt`` (see :mod:`pilcro_lib.checkpoint`) and ``history.json``. Calling :func:`fit`
again with the same ``run_dir`` and arguments resumes after the last finished epoch; on CPU the
resumed run ends with the same weights and history (times aside) as an uninterrupted one. A
second process given the same ``run_dir`` waits for the first and then returns its result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pilcro_lib.checkpoint import (
    load_checkpoint,
    read_json,
    rng_state,
    run_dir_lock,
    save_checkpoint,
    set_rng_state,
    write_json,
)
from pilcro_lib.data import ImageDataset, to_float
from pilcro_lib.fingerprint import code_fingerprint, describe
from pilcro_lib.utils import check_choice, check_positive_int, get_device

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")
TIME_KEYS = ("epoch_time_s",)
NOT_IDENTITY = ("run_dir", "device", "progress")  # fit's arguments that do not change its result

Regularizer = Callable[[nn.Module, Tensor, Tensor, Tensor], "Tensor | None"]


@dataclass
class History:
    """Per-epoch records: epoch, train_loss, train_acc, val_loss, val_acc, lr, epoch_time_s, ..."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def to_frame(self):
        """The records as a pandas DataFrame, one row per epoch."""
        import pandas as pd

        return pd.DataFrame(self.records)

    @property
    def final(self) -> dict[str, Any]:
        """The last epoch's record (empty before training)."""
        return self.records[-1] if self.records else {}

    def __len__(self) -> int:
        return len(self.records)


def iterate_batches(
    data: Dataset, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(images [b, C, H, W] float in [0, 1], labels [b])`` batches.

    An :class:`ImageDataset` is sliced directly (no per-sample Python); any other dataset of
    ``(image, label)`` pairs goes through a ``DataLoader``.
    """
    if isinstance(data, ImageDataset):
        n = len(data)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield to_float(data.images[idx]), data.labels[idx]
    else:
        yield from DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)


def _to_device(x: Tensor, y: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return x.to(device, non_blocking=True, memory_format=fmt), y.to(device, non_blocking=True)


def _autocast(device: torch.device):
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset,
    *,
    noise: float | None = None,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data`` (model in eval mode, then restored).

    noise: standard deviation of Gaussian noise added to the [0, 1] images (seeded by ``seed``;
    no clipping). Returns ``{"loss": float, "accuracy": float}``.
    """
    if noise is not None and not (isinstance(noise, (int, float)) and noise >= 0):
        raise ValueError(f"noise must be a non-negative float or None, got {noise!r}")
    device = get_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    total_loss, correct, n = 0.0, 0, 0
    try:
        for x, y in iterate_batches(data, batch_size):
            if noise:
                x = x + noise * torch.randn(x.shape, generator=g)
            x, y = _to_device(x, y, device)
            with _autocast(device):
                out = model(x)
            total_loss += F.cross_entropy(out.float(), y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    finally:
        model.train(was_training)
    return {"loss": total_loss / n, "accuracy": correct / n}


@torch.no_grad()
def predict(model: nn.Module, data: Dataset, *, batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """Predicted classes and true labels, both ``[N]`` (model in eval mode, then restored)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    preds, labels = [], []
    try:
        for x, y in iterate_batches(data, batch_size):
            with _autocast(device):
                preds.append(model(_to_device(x, y, device)[0]).argmax(1).cpu())
            labels.append(y)
    finally:
        model.train(was_training)
    return torch.cat(preds), torch.cat(labels)


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Learning-rate multiplier for 0-based ``epoch`` of ``epochs``: constant, cosine or step (/10 at 1/2, 3/4)."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    return 0.1 ** sum(epoch >= m for m in (epochs // 2, (3 * epochs) // 4) if m > 0)


def _make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=weight_decay)


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    *,
    epochs: int,
    batch_size: int = 128,
    optimizer: str = "adam",
    lr: float = 1e-3,
    schedule: str = "constant",
    seed: int = 0,
    run_dir: str | Path | None = None,
    regularizer: Regularizer | None = None,
    device: str | torch.device | None = None,
    weight_decay: float = 0.0,
    progress: bool = True,
) -> History:
    """Train ``model`` with cross-entropy (plus ``regularizer``) and return its :class:`History`.

    Batches are ``[batch_size, C, H, W]`` images in [0, 1]. The shuffling of epoch ``e`` is
    seeded by ``(seed, e)``; global RNG states are checkpointed, so a resumed run on CPU is
    bit-identical to an uninterrupted one. A ``regularizer(model, inputs, targets, outputs)``
    returns a scalar added to the loss, or ``None`` to skip a step; its optional hooks
    ``on_epoch_start(epoch)``, ``epoch_log() -> dict`` and ``state_dict``/``load_state_dict``
    are called when present. On CUDA: bf16 autocast and ``channels_last``.
    """
    settings = {k: v for k, v in locals().items() if k not in NOT_IDENTITY}  # every argument that decides the run
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    check_positive_int("seed", seed, minimum=0)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("schedule", schedule, SCHEDULES)
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    device = get_device(device)
    if run_dir is None:
        return _fit(model, train_set, val_set, settings, device, None, progress)
    run_dir = Path(run_dir)
    with run_dir_lock(run_dir):
        return _fit(model, train_set, val_set, settings, device, run_dir, progress)


def _fit(model: nn.Module, train_set, val_set, settings: dict[str, Any], device: torch.device,
         run_dir: Path | None, progress: bool) -> History:
    """:func:`fit` once its arguments are checked (and it holds ``run_dir``)."""
    epochs, lr, schedule, seed = settings["epochs"], settings["lr"], settings["schedule"], settings["seed"]
    regularizer, batch_size = settings["regularizer"], settings["batch_size"]
    identity = describe({**settings, "code": code_fingerprint()}, where="fit") if run_dir else None
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    opt = _make_optimizer(settings["optimizer"], model.parameters(), lr, settings["weight_decay"])
    history = History()
    start_epoch = 0
    torch.manual_seed(seed)
    if run_dir is not None:
        start_epoch = _resume(run_dir, identity, model, opt, regularizer, history)
    bar = tqdm(range(start_epoch, epochs), desc="epochs", disable=not progress, initial=start_epoch, total=epochs)
    for epoch in bar:
        for group in opt.param_groups:
            group["lr"] = lr * lr_factor(schedule, epoch, epochs)
        if hasattr(regularizer, "on_epoch_start"):
            regularizer.on_epoch_start(epoch)
        t0 = time.perf_counter()
        shuffle = torch.Generator().manual_seed(seed * 100_003 + epoch)
        record = {"epoch": epoch + 1, **_train_epoch(model, opt, train_set, regularizer, device, batch_size, shuffle)}
        val = evaluate(model, val_set, device=device)
        record.update(val_loss=val["loss"], val_acc=val["accuracy"])
        record["lr"] = opt.param_groups[0]["lr"]
        record["epoch_time_s"] = time.perf_counter() - t0
        if hasattr(regularizer, "epoch_log"):
            record.update(regularizer.epoch_log())
        history.records.append(record)
        bar.set_postfix(train_acc=f"{record['train_acc']:.3f}", val_acc=f"{record['val_acc']:.3f}")
        if run_dir is not None:
            _checkpoint(run_dir, epoch + 1, model, opt, regularizer, history)
    return history


def _train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    train_set: Dataset,
    regularizer: Regularizer | None,
    device: torch.device,
    batch_size: int,
    shuffle: torch.Generator,
) -> dict[str, float]:
    """One pass over ``train_set``; returns the mean data loss, accuracy and regulariser value."""
    model.train()
    loss_sum, reg_sum, reg_steps, correct, n = 0.0, 0.0, 0, 0, 0
    for x, y in iterate_batches(train_set, batch_size, shuffle=True, generator=shuffle):
        x, y = _to_device(x, y, device)
        with _autocast(device):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        total = loss
        if regularizer is not None:
            reg = regularizer(model, x, y, out)
            if reg is not None:
                total = loss + reg
                reg_sum += reg.item()
                reg_steps += 1
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        loss_sum += loss.item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        n += len(y)
    record = {"train_loss": loss_sum / n, "train_acc": correct / n}
    if regularizer is not None:
        record["reg_loss"] = reg_sum / max(reg_steps, 1)
    return record


def _resume(run_dir: Path, identity: dict, model: nn.Module, opt, regularizer, history: History) -> int:
    """Check ``run_dir`` holds this run, restore its last checkpoint; return the next epoch."""
    config_path = run_dir / "fit_config.json"
    if config_path.exists():
        stored = read_json(config_path, what="run description")
        diff = [k for k in sorted(set(stored) | set(identity)) if stored.get(k) != identity.get(k)]
        if diff:
            raise ValueError(
                f"run_dir={str(run_dir)!r} holds a different run (it differs in: {', '.join(diff)}); "
                "refusing to resume it. Use another run_dir or delete this one."
            )
    else:
        write_json(config_path, identity)
    state = load_checkpoint(run_dir)
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if state.get("regularizer") is not None:
        regularizer.load_state_dict(state["regularizer"])
    history.records[:] = state["history"]
    set_rng_state(state["rng"])
    return state["epoch"]


def _checkpoint(run_dir: Path, epoch: int, model: nn.Module, opt, regularizer, history: History) -> None:
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "regularizer": regularizer.state_dict() if hasattr(regularizer, "state_dict") else None,
        "history": history.records,
        "rng": rng_state(),
    }
    save_checkpoint(run_dir, state)
    write_json(run_dir / "history.json", history.records)
