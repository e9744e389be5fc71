"""Training and evaluation: ``fit`` with crash-safe per-epoch checkpoints and bit-exact resume,
``evaluate``.

How ``fit`` trains is a :class:`Recipe` (optimiser, per-step schedule, batch size, label
smoothing, flips, bf16 and memory format); :data:`RECIPES` holds the named ones: ``classic``
(the settings before the recipes) and ``fast`` (reaches a plateau in minutes on 2 CPU cores).

A run directory holds ``fit_config.json`` (a description of everything that decides the run:
the model's structure and initial weights, the exact images, every setting, the regulariser's
parameters and the training code's fingerprint, see :mod:`pilcro_lib.runs.fingerprint`),
``checkpoint.pt`` (see :mod:`pilcro_lib.runs.checkpoint`) and ``history.json``. Calling :func:`fit`
again with the same ``run_dir`` and arguments resumes after the last finished epoch; on CPU the
resumed run ends with the same weights and history (times aside) as an uninterrupted one. A
second process given the same ``run_dir`` waits for the first and then returns its result.
"""

from __future__ import annotations

import dataclasses
import math
import os
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

from pilcro_lib.data import ImageDataset, to_float
from pilcro_lib.runs.checkpoint import (
    load_checkpoint,
    read_json,
    rng_state,
    run_dir_lock,
    save_checkpoint,
    set_rng_state,
    write_json,
)
from pilcro_lib.runs.fingerprint import code_fingerprint, current_run, describe, start_segment
from pilcro_lib.utils import (
    check_bool,
    check_choice,
    check_number,
    check_positive_int,
    check_type,
    get_device,
)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "linear", "step")
AUTOCAST = ("cuda", "native", "all")
TIME_KEYS = ("epoch_time_s",)
NOT_IDENTITY = (
    "run_dir",
    "run_key",
    "device",
    "progress",
)  # fit's arguments that do not change its result
RECIPE_ARGUMENTS = (
    "batch_size",
    "optimizer",
    "lr",
    "schedule",
    "weight_decay",
)  # fit's overrides of its recipe
# "1" or "0": bf16 arithmetic on this CPU forced on or off (unset: the CPU decides)
BF16_ENV = "PILCRO_CPU_BF16"

Regularizer = Callable[[nn.Module, Tensor, Tensor, Tensor], "Tensor | None"]


@dataclass(frozen=True)
class Recipe:
    """How :func:`fit` trains: optimiser, learning-rate schedule, batch size, loss, augmentation,
    arithmetic.

    optimizer: ``adam``, ``adamw`` or ``sgd`` (Nesterov momentum 0.9). lr: the peak learning
    rate. schedule, per step: ``constant``; ``cosine`` or ``linear`` decay towards 0 at the
    last step; ``step`` (/10 at 1/2 and 3/4 of the steps). warmup: the fraction of all steps
    over which the learning rate first rises linearly to ``lr``. weight_decay: L2 (decoupled
    for ``adamw``). label_smoothing: of the cross-entropy (the recorded ``train_loss``
    includes it). flip: mirror each training image left-right with probability 1/2, drawn
    from the epoch's seeded generator; only for labels that survive a mirror (Fashion-MNIST,
    CIFAR-10; not position tasks), and it pulls learned importance landscapes towards
    left-right symmetry. autocast: where the forward pass runs under bf16 autocast: ``cuda``
    (on CUDA only), ``native`` (CUDA and CPUs with bf16 arithmetic, see
    :func:`cpu_has_bf16`), ``all`` (any CPU too). channels_last: that memory format on CPU as
    well (always on CUDA).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 128
    schedule: str = "constant"
    warmup: float = 0.0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    flip: bool = False
    autocast: str = "cuda"
    channels_last: bool = False

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_number("lr", self.lr, minimum=0, strict=True)
        check_positive_int("batch_size", self.batch_size)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_number("warmup", self.warmup, minimum=0, maximum=1)
        check_number("weight_decay", self.weight_decay, minimum=0)
        check_number("label_smoothing", self.label_smoothing, minimum=0, maximum=1)
        check_bool("flip", self.flip)
        check_choice("autocast", self.autocast, AUTOCAST)
        check_bool("channels_last", self.channels_last)

    def describe(self) -> dict[str, Any]:
        """Every setting, as plain data (see :func:`pilcro_lib.runs.fingerprint.describe`)."""
        return dataclasses.asdict(self)


RECIPES = {
    # fit's behaviour before the recipes: Adam 1e-3, batch 128, constant rate, fp32 on CPU.
    "classic": Recipe(),
    # Chosen with benchmarks/time_to_accuracy.py on Fashion-MNIST (2 CPU cores; the evidence is
    # in its docstring): SGD, a 20% warm-up then a linear decay to 0, batches of 256, label
    # smoothing, bf16 and channels_last where the CPU computes in bf16; no flips, no weight
    # averaging.
    "fast": Recipe(
        optimizer="sgd",
        lr=0.2,
        batch_size=256,
        schedule="linear",
        warmup=0.2,
        weight_decay=5e-4,
        label_smoothing=0.1,
        autocast="native",
        channels_last=True,
    ),
}


def get_recipe(recipe: str | Recipe = "classic", **overrides: Any) -> Recipe:
    """The named recipe of :data:`RECIPES` (or ``recipe`` itself) with the non-``None``
    ``overrides``."""
    if isinstance(recipe, str):
        recipe = RECIPES[check_choice("recipe", recipe, tuple(RECIPES))]
    check_type("recipe", recipe, Recipe, f"a Recipe or one of {', '.join(map(repr, RECIPES))}")
    return dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX512-BF16 or AMX), where bf16 autocast speeds
    training up.

    ``$PILCRO_CPU_BF16`` (``1`` or ``0``) overrides the answer, so that both arithmetic paths of
    the ``native`` autocast can be tested on any CPU (bf16 on a CPU without it is slow, not
    wrong)."""
    forced = os.environ.get(BF16_ENV)
    if forced is not None:
        return check_choice(BF16_ENV, forced, ("0", "1")) == "1"
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def uses_bf16(recipe: Recipe, device: torch.device) -> bool:
    """Whether :func:`fit` runs the forward pass of ``recipe`` on ``device`` under bf16 autocast."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and (
        recipe.autocast == "all" or (recipe.autocast == "native" and cpu_has_bf16())
    )


def channels_last_is_safe(model: nn.Module) -> bool:
    """Whether ``model`` may run in the ``channels_last`` memory format on a CPU.

    PyTorch's CPU convolution corrupts memory in float32 ``channels_last`` for 1x1 convolutions
    with a stride above 1 (seen with torch 2.14.1: ``Conv2d(c, 2c, 1, stride=2)`` for c = 2-8
    on 28- to 64-pixel inputs segfaults, aborts in ``free()``, or silently returns wrong values
    downstream, e.g. an all-NaN landscape; contiguous memory and bf16 autocast of that layer are
    fine). A ResNet's projection shortcut is such a layer. The float32 passes that a bf16 run
    still makes (the P-objective's penalty, landscapes) would reach it too, so a model holding
    one stays contiguous on CPU whatever the precision.
    """
    for module in model.modules():
        kernel, stride = getattr(module, "kernel_size", None), getattr(module, "stride", None)
        if isinstance(module, nn.modules.conv._ConvNd) or (
            kernel is not None and stride is not None
        ):
            kernels = kernel if isinstance(kernel, tuple) else (kernel,)
            strides = stride if isinstance(stride, tuple) else (stride,)
            if all(k == 1 for k in kernels) and any(s > 1 for s in strides):
                return False
    return True


def _channels_last(model: nn.Module, recipe: Recipe, device: torch.device) -> bool:
    """Whether :func:`fit` trains ``model`` in ``channels_last``: on CUDA, and where ``recipe``
    asks for it on a CPU that computes it correctly (:func:`channels_last_is_safe`)."""
    return device.type == "cuda" or (recipe.channels_last and channels_last_is_safe(model))


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
    data: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
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


def _to_device(
    x: Tensor, y: Tensor, device: torch.device, channels_last: bool = False
) -> tuple[Tensor, Tensor]:
    fmt = torch.channels_last if device.type == "cuda" or channels_last else torch.contiguous_format
    return x.to(device, non_blocking=True, memory_format=fmt), y.to(device, non_blocking=True)


def _autocast(device: torch.device, bf16: bool | None = None):
    """bf16 autocast where ``bf16`` says (default: on CUDA only)."""
    enabled = device.type == "cuda" if bf16 is None else bf16
    return torch.autocast(
        device_type="cpu" if device.type == "cpu" else "cuda", dtype=torch.bfloat16, enabled=enabled
    )


def random_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """``images [B, C, H, W]`` with each one mirrored left-right with probability 1/2 (drawn from
    ``generator``)."""
    mirror = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    return torch.where(mirror[:, None, None, None], images.flip(3), images)


def _check_eval_inputs(model: Any, data: Any, batch_size: Any) -> None:
    check_type("model", model, nn.Module, "a torch.nn.Module")
    check_type("data", data, Dataset, "a dataset of (image, label) pairs")
    if len(data) == 0:
        raise ValueError("data is empty: give at least one (image, label) pair")
    check_positive_int("batch_size", batch_size)


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
    _check_eval_inputs(model, data, batch_size)
    if noise is not None:
        check_number("noise", noise, minimum=0)
    check_positive_int("seed", seed, minimum=0, maximum=2**64 - 1)
    device = get_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    total_loss, correct, n = 0.0, 0, 0
    try:
        for x, y in iterate_batches(data, batch_size):
            if noise:
                x = x + noise * torch.randn(x.shape, generator=g)
            if not torch.isfinite(x).all():
                added = f" after adding noise={noise}" if noise else ""
                raise ValueError(
                    f"data: images {n} to {n + len(x) - 1} are not all finite{added}; give finite "
                    "images in [0, 1] (and a noise level they stay finite under)"
                )
            x, y = _to_device(x, y, device)
            with _autocast(device):
                out = model(x)
            total_loss += F.cross_entropy(out.float(), y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    finally:
        model.train(was_training)
    if not math.isfinite(total_loss):
        raise FloatingPointError(
            f"the model's loss on data is {total_loss / n}: its outputs are not finite "
            "(diverged weights?)"
        )
    return {"loss": total_loss / n, "accuracy": correct / n}


@torch.no_grad()
def predict(model: nn.Module, data: Dataset, *, batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """Predicted classes and true labels, both ``[N]`` (model in eval mode, then restored)."""
    _check_eval_inputs(model, data, batch_size)
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


def lr_factor(schedule: str, step: int, steps: int, warmup: int = 0) -> float:
    """Learning-rate multiplier at 0-based ``step`` of ``steps``.

    A linear rise ``(step + 1) / warmup`` over the first ``warmup`` steps, then with ``t`` going
    from 0 (end of warm-up) towards 1 (the end): ``constant`` 1, ``cosine`` ``(1 + cos(pi t)) / 2``,
    ``linear`` ``1 - t``, ``step`` 1, then /10 from ``t = 1/2`` and again from ``t = 3/4``.
    """
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(steps - warmup, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "linear":
        return 1.0 - t
    return 0.1 ** sum(t >= m for m in (0.5, 0.75))


def _make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True
        )
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=weight_decay)


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    *,
    epochs: int,
    recipe: str | Recipe = "classic",
    batch_size: int | None = None,
    optimizer: str | None = None,
    lr: float | None = None,
    schedule: str | None = None,
    weight_decay: float | None = None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    run_key: str | None = None,
    regularizer: Regularizer | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` with cross-entropy (plus ``regularizer``) and return its :class:`History`.

    recipe: a name in :data:`RECIPES` (``classic``: Adam 1e-3, batch 128, constant rate, fp32 on
    CPU; ``fast``: see :data:`RECIPES`) or a :class:`Recipe`; ``batch_size``, ``optimizer``,
    ``lr``, ``schedule`` and ``weight_decay`` replace its settings when given. Batches are
    ``[batch_size, C, H, W]`` images in [0, 1]; the learning rate changes every step. The
    shuffling (and flipping) of epoch ``e`` is seeded by ``(seed, e)``; global RNG states are
    checkpointed, so a resumed run on CPU is bit-identical to an uninterrupted one (bf16 on CPU
    included). A ``regularizer(model, inputs, targets, outputs)`` returns a scalar added to the
    loss, or ``None`` to skip a step; its optional hooks ``on_epoch_start(epoch)``,
    ``epoch_log() -> dict`` and ``state_dict``/``load_state_dict`` are called when present.
    On CUDA: bf16 autocast and ``channels_last``. A non-finite loss stops training with a
    ``FloatingPointError`` naming the epoch and step.

    run_dir: checkpoints there, and a resume checks that they are of this run: the datasets are
    identified by content (an :class:`~pilcro_lib.data.ImageDataset`, a ``TensorDataset``, or any
    dataset with a ``describe()`` method returning a dict of what decides its content); for any
    other dataset give ``run_key``, a string that names the data (yours to change when it does).
    """
    arguments = {k: v for k, v in locals().items() if k not in NOT_IDENTITY}
    chosen = get_recipe(arguments.pop("recipe"), **{k: arguments.pop(k) for k in RECIPE_ARGUMENTS})
    settings = {**arguments, **chosen.describe()}  # every setting that decides the run
    if run_key is not None:
        check_type("run_key", run_key, str, "a string that names the training and validation data")
        settings.update(train_set=None, val_set=None, run_key=run_key)
    check_positive_int("epochs", epochs)
    check_positive_int("seed", seed, minimum=0, maximum=2**64 - 1)
    check_type("model", model, nn.Module, "a torch.nn.Module")
    for name, data in (("train_set", train_set), ("val_set", val_set)):
        check_type(name, data, Dataset, "a dataset of (image, label) pairs")
        if len(data) == 0:
            raise ValueError(f"{name} is empty: give at least one (image, label) pair")
        _check_channels(name, data, model)
    if regularizer is not None and not callable(regularizer):
        raise TypeError(
            "regularizer must be None or callable(model, inputs, targets, outputs), got "
            f"{regularizer!r}"
        )
    device = get_device(device)
    if run_dir is None:
        return _fit(model, train_set, val_set, settings, chosen, device, None, progress)
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(
            f"run_dir={str(run_dir)!r} is a file, not a folder: give a folder for the checkpoints"
        )
    with run_dir_lock(run_dir):
        return _fit(model, train_set, val_set, settings, chosen, device, run_dir, progress)


def _check_channels(name: str, data: Dataset, model: nn.Module) -> None:
    """Refuse ``data`` whose images have another number of channels than ``model``'s first layer
    takes."""
    first = next(
        (m for m in model.modules() if isinstance(getattr(m, "in_channels", None), int)), None
    )
    image = data[0][0]
    if (
        first is not None
        and isinstance(image, Tensor)
        and image.ndim == 3
        and image.shape[0] != first.in_channels
    ):
        raise ValueError(
            f"{name} holds images of {image.shape[0]} channel(s), but the model's first layer "
            f"({type(first).__name__}) takes {first.in_channels}: build the model for "
            f"in_channels={image.shape[0]}"
        )


def _fit(
    model: nn.Module,
    train_set,
    val_set,
    settings: dict[str, Any],
    recipe: Recipe,
    device: torch.device,
    run_dir: Path | None,
    progress: bool,
) -> History:
    """:func:`fit` once its arguments are checked (and it holds ``run_dir``)."""
    epochs, seed, regularizer = settings["epochs"], settings["seed"], settings["regularizer"]
    identity = describe({**settings, "code": code_fingerprint()}, where="fit") if run_dir else None
    model.to(device)
    channels_last = _channels_last(model, recipe, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = _make_optimizer(recipe.optimizer, model.parameters(), recipe.lr, recipe.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / recipe.batch_size)
    steps, warmup = epochs * steps_per_epoch, round(recipe.warmup * epochs * steps_per_epoch)
    history = History()
    start_epoch = 0
    torch.manual_seed(seed)
    log = current_run()
    if run_dir is not None:
        start_epoch = _resume(run_dir, identity, model, opt, regularizer, history, log)
    if log is not None:
        log.precisions.add("bf16" if uses_bf16(recipe, device) else "float32")
        segment = start_segment(log, start_epoch)
    bar = tqdm(
        range(start_epoch, epochs),
        desc="epochs",
        disable=not progress,
        initial=start_epoch,
        total=epochs,
    )
    for epoch in bar:
        if hasattr(regularizer, "on_epoch_start"):
            regularizer.on_epoch_start(epoch)
        t0 = time.perf_counter()
        shuffle = torch.Generator().manual_seed((seed * 100_003 + epoch) % 2**64)
        rates = [
            recipe.lr * lr_factor(recipe.schedule, epoch * steps_per_epoch + i, steps, warmup)
            for i in range(steps_per_epoch)
        ]
        trained = _train_epoch(
            model, opt, train_set, regularizer, device, recipe, shuffle, rates, epoch, channels_last
        )
        record = {"epoch": epoch + 1, **trained}
        try:
            val = evaluate(model, val_set, device=device)
        except FloatingPointError as err:
            raise FloatingPointError(f"after epoch {epoch + 1}: {err}") from None
        record.update(val_loss=val["loss"], val_acc=val["accuracy"])
        record["lr"] = opt.param_groups[0]["lr"]
        record["epoch_time_s"] = time.perf_counter() - t0
        if hasattr(regularizer, "epoch_log"):
            record.update(regularizer.epoch_log())
        history.records.append(record)
        bar.set_postfix(train_acc=f"{record['train_acc']:.3f}", val_acc=f"{record['val_acc']:.3f}")
        if log is not None:
            segment["epochs"][1] = epoch + 1
        if run_dir is not None:
            _checkpoint(run_dir, epoch + 1, model, opt, regularizer, history, identity, log)
    return history


def _train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    train_set: Dataset,
    regularizer: Regularizer | None,
    device: torch.device,
    recipe: Recipe,
    shuffle: torch.Generator,
    rates: list[float],
    epoch: int,
    channels_last: bool,
) -> dict[str, float]:
    """One pass over ``train_set``, step ``i`` at learning rate ``rates[i]``, in ``channels_last``
    memory or not; returns the mean data loss, accuracy and regulariser value. Raises
    ``FloatingPointError`` at a non-finite loss, ``ValueError`` at a label the model has no output
    for."""
    model.train()
    bf16 = uses_bf16(recipe, device)
    loss_sum, reg_sum, reg_steps, correct, n = 0.0, 0.0, 0, 0, 0
    batches = iterate_batches(train_set, recipe.batch_size, shuffle=True, generator=shuffle)
    for step, ((x, y), rate) in enumerate(zip(batches, rates)):
        if recipe.flip:
            x = random_flip(x, shuffle)
        x, y = _to_device(x, y, device, channels_last)
        for group in opt.param_groups:
            group["lr"] = rate
        with _autocast(device, bf16):
            out = model(x)
        if y.min() < 0 or y.max() >= out.shape[1]:
            raise ValueError(
                f"train_set holds labels from {int(y.min())} to {int(y.max())}, but the model has "
                f"{out.shape[1]} outputs: labels must be class indices in [0, {out.shape[1] - 1}]"
            )
        loss = F.cross_entropy(out.float(), y, label_smoothing=recipe.label_smoothing)
        total, reg_value = loss, 0.0
        if regularizer is not None:
            reg = regularizer(model, x, y, out)
            if reg is not None:
                total, reg_value = loss + reg, reg.item()
                reg_sum += reg_value
                reg_steps += 1
        value = loss.item()
        if not math.isfinite(value + reg_value):
            raise FloatingPointError(
                f"the training loss is {value + reg_value} at epoch {epoch + 1}, step {step + 1} "
                f"of {len(rates)}: stopped. Lower the learning rate (it was {rate:.3g}) or check "
                "the inputs for NaN/inf."
            )
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        loss_sum += value * len(y)
        correct += (out.argmax(1) == y).sum().item()
        n += len(y)
    record = {"train_loss": loss_sum / n, "train_acc": correct / n}
    if regularizer is not None:
        record["reg_loss"] = reg_sum / max(reg_steps, 1)
    return record


def _resume(
    run_dir: Path, identity: dict, model: nn.Module, opt, regularizer, history: History, log
) -> int:
    """Check ``run_dir`` holds this run, restore its last checkpoint (and into ``log``, a
    :class:`~pilcro_lib.runs.fingerprint.RunLog` or ``None``, the code and segments of the
    epochs it holds); return the next epoch."""
    config_path = run_dir / "fit_config.json"
    if config_path.exists():
        stored = read_json(config_path, what="run description")
        diff = [k for k in sorted(set(stored) | set(identity)) if stored.get(k) != identity.get(k)]
        if diff:
            raise ValueError(
                f"run_dir={str(run_dir)!r} holds a different run (it differs in: "
                f"{', '.join(diff)}); refusing to resume it. Use another run_dir or delete this "
                "one."
            )
    else:
        write_json(config_path, identity)
    state = load_checkpoint(run_dir)
    if state is None:
        return 0
    if state.get("identity") != identity:
        raise ValueError(
            f"run_dir={str(run_dir)!r} holds a checkpoint of a different run (or of one without a "
            "recorded identity); refusing to resume it. Use another run_dir or delete this one."
        )
    if log is not None:
        log.functions.update(state["code_functions"])
        log.segments[:0] = state["segments"]
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if state.get("regularizer") is not None:
        regularizer.load_state_dict(state["regularizer"])
    history.records[:] = state["history"]
    set_rng_state(state["rng"])
    return state["epoch"]


def _checkpoint(
    run_dir: Path,
    epoch: int,
    model: nn.Module,
    opt,
    regularizer,
    history: History,
    identity: dict,
    log,
) -> None:
    state = {
        "identity": identity,
        "code_functions": sorted(log.functions) if log is not None else [],
        "segments": log.segments if log is not None else [],
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "regularizer": regularizer.state_dict() if hasattr(regularizer, "state_dict") else None,
        "history": history.records,
        "rng": rng_state(),
    }
    save_checkpoint(run_dir, state)
    write_json(run_dir / "history.json", history.records)
