"""Chapter 8's experiment: the reference net with its first layer swapped, trained per arm and seed.

An *arm* is the spatial layer at the first position of :func:`pilcro_lib.models.reference_net`
(the other two layers stay convolutions): ``conv``, ``lc``, ``lrlc`` (row + column combining),
``lrlc_no_spatial_bias`` (the same without its row + column spatial bias), ``lrlc_input``
(input-dependent combining), ``wide_conv`` (a conv net with the ``lrlc`` net's parameter count)
or ``coordconv``. Every spatial layer of every arm starts He-uniform (fan-in), the
initialisation of the LC and LRLC layers; BatchNorm and the classifier keep PyTorch's defaults.

A *task* is Fashion-MNIST-like data as it is (``real``) or pasted on a noise canvas, centred
(``aligned``) or at a random offset (``translated``): :func:`position_tasks`.
:func:`train_arm` trains one arm on one task for one seed (with :func:`pilcro_lib.train.fit`)
and returns what the chapter reads: the per-epoch history with the combining weights' entropy,
validation and test accuracy, and diagnostics of the trained first layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pilcro_lib.data import ImageDataset, load_dataset, train_val_split
from pilcro_lib.layers import (
    LocallyConnected2d,
    LowRankLocallyConnected2d,
    layer_combining_weights,
    lrlc_layers,
)
from pilcro_lib.models import (
    count_parameters,
    he_uniform_init_,
    reference_net,
    remove_spatial_bias_,
)
from pilcro_lib.synthetic import on_noise
from pilcro_lib.train import evaluate, fit
from pilcro_lib.utils import (
    check_choice,
    check_number,
    check_positive_int,
    check_tensor,
    check_type,
    seed_everything,
)

ARMS = ("conv", "lc", "lrlc", "lrlc_no_spatial_bias", "lrlc_input", "wide_conv", "coordconv")
TASKS = ("real", "aligned", "translated")
_KIND = {
    "lrlc_no_spatial_bias": "lrlc"
}  # the reference_net layer kind of each arm, where it differs


def downsample(dataset: ImageDataset, factor: int) -> ImageDataset:
    """``dataset`` with its images average-pooled over ``factor x factor`` blocks:
    ``[N, C, H, W]`` -> ``[N, C, H // factor, W // factor]`` float in [0, 1] (``factor=1``: as
    is)."""
    check_type("dataset", dataset, ImageDataset)
    factor = check_positive_int("factor", factor)
    if factor == 1:
        return dataset
    if factor > min(dataset.image_shape[1:]):
        raise ValueError(f"factor={factor} is larger than the {dataset.image_shape[1:]} images")
    images = F.avg_pool2d(dataset.float_images(), factor)
    return ImageDataset(images, dataset.labels, dataset.classes, f"{dataset.name}_down{factor}")


def load_splits(
    name: str,
    *,
    train_size: int | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
    val_share: float = 0.1,
    seed: int = 0,
    download: bool = False,
) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """``(train, validation, test)`` of dataset ``name``: validation drawn at random from the
    training split, disjoint from train. ``train_size``/``val_size``/``test_size``: that many
    images, drawn at random (seeded by ``seed``); ``None``: all (train: all the training split
    leaves after validation; validation: ``val_share`` of the training images used)."""
    check_number("val_share", val_share, minimum=0, maximum=1, strict=True)
    pool_size = None if train_size is None or val_size is None else train_size + val_size
    pool = load_dataset(name, "train", subset=pool_size, seed=seed, download=download)
    n_val = (
        val_size
        if val_size is not None
        else max(
            1,
            round(val_share * (len(pool) if train_size is None else train_size / (1 - val_share))),
        )
    )
    train, val = train_val_split(pool, min(n_val, len(pool) - 1) / len(pool), seed=seed)
    if train_size is not None and len(train) > train_size:
        train = train.subset(torch.arange(train_size))
    return train, val, load_dataset(name, "test", subset=test_size, seed=seed, download=download)


def position_tasks(
    splits: Sequence[ImageDataset], canvas_size: int, *, seed: int = 0
) -> dict[str, tuple[ImageDataset, ...]]:
    """The three tasks over the same ``splits`` (e.g. train, validation, test):
    ``real`` (the images as they are), ``aligned`` (each image centred on a ``canvas_size``
    square of uniform noise) and ``translated`` (at a uniformly random offset on it); split
    ``i`` of a noise task is drawn with seed ``seed + 2 * i`` (noise and offsets)."""
    check_type("splits", splits, (list, tuple), "a list of ImageDatasets")
    tasks: dict[str, tuple[ImageDataset, ...]] = {"real": tuple(splits)}
    for name, aligned in (("aligned", True), ("translated", False)):
        tasks[name] = tuple(
            on_noise(d, canvas_size, aligned=aligned, seed=seed + 2 * i)
            for i, d in enumerate(splits)
        )
    return tasks


def arm_net(
    arm: str,
    *,
    rank: int = 1,
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int = 28,
    width: int = 64,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
) -> nn.Sequential:
    """The reference net with ``arm`` as its first layer (``rank``: of the LRLC arms, and the
    LRLC net whose parameter count ``wide_conv`` matches), every spatial layer He-uniform.

    Input ``[B, in_channels, input_size, input_size]`` in [0, 1]; output logits
    ``[B, num_classes]``.
    """
    check_choice("arm", arm, ARMS)
    kind = _KIND.get(arm, arm)
    net = reference_net(
        (kind, "conv", "conv"),
        in_channels=in_channels,
        num_classes=num_classes,
        input_size=input_size,
        width=width,
        rank=rank,
        normalization=normalization,
    )
    if arm == "lrlc_no_spatial_bias":
        remove_spatial_bias_(net)
    return he_uniform_init_(net)


def combining_entropy(weights: Tensor) -> Tensor:
    """Entropy of combining weights ``[..., K]`` (normalised over ``K``) over ``log K``:
    ``[...]``, 1 for uniform weights, 0 when one basis takes all (``K = 1``: 0)."""
    check_tensor("weights", weights, min_ndim=1, dims="[..., K]", dtype_kind="float")
    rank = weights.shape[-1]
    entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1)
    return entropy / math.log(rank) if rank > 1 else torch.zeros_like(entropy)


def position_variation(kernels: Tensor) -> float:
    """How much per-position kernels ``[H_out, W_out, ...]`` differ from their mean over positions:
    ``sum_hw |W_hw - mean W|^2 / sum_hw |W_hw|^2`` (0 for a convolution, 1 when they average
    to zero)."""
    check_tensor("kernels", kernels, min_ndim=3, dims="[H_out, W_out, ...]", dtype_kind="float")
    flat = kernels.reshape(kernels.shape[0] * kernels.shape[1], -1).double()
    total = flat.pow(2).sum()
    if total == 0:
        raise ValueError("kernels are all zero: their variation is undefined")
    return float((flat - flat.mean(0)).pow(2).sum() / total)


class EntropyLog:
    """Logs, after every epoch of :func:`pilcro_lib.train.fit` (given as its ``regularizer``),
    the mean :func:`combining_entropy` of the first LRLC layer of ``model`` on ``probe`` images
    ``[N, C, H, W]`` (eval mode). It adds nothing to the loss."""

    def __init__(self, model: nn.Module, probe: Tensor) -> None:
        if not lrlc_layers(model):
            raise ValueError("model has no LRLC layer whose combining weights could be logged")
        self.model = model
        self.probe = check_tensor("probe", probe, ndim=4, dims="[N, C, H, W]", dtype_kind="float")

    def __call__(self, model: nn.Module, inputs: Tensor, targets: Tensor, outputs: Tensor) -> None:
        return None

    def epoch_log(self) -> dict[str, float]:
        """``{"entropy": mean normalised entropy}`` of the model as it is now."""
        return {"entropy": mean_entropy(self.model, self.probe)}

    def describe(self) -> dict[str, Any]:
        return {"probe": self.probe}


def mean_entropy(model: nn.Module, images: Tensor) -> float:
    """Mean :func:`combining_entropy` of the first LRLC layer of ``model`` over positions (and
    ``images`` ``[N, C, H, W]``, for input-dependent weights)."""
    return float(
        combining_entropy(layer_combining_weights(model, images.to(_device(model)))).mean()
    )


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _first_layer_kernels(model: nn.Module) -> Tensor | None:
    """The per-position kernels ``[H_out, W_out, F, C, kh, kw]`` of the net's first spatial layer
    when it has shared per-position kernels (LC, LRLC with shared weights), else ``None``."""
    for layer in model.modules():
        if isinstance(layer, LocallyConnected2d):
            return layer.kernel()
        if isinstance(layer, LowRankLocallyConnected2d):
            return layer.equivalent_kernel() if layer.head is None else None
        if isinstance(layer, nn.Conv2d):
            return None
    return None


def train_arm(
    *,
    arm: str,
    rank: int,
    train: ImageDataset,
    val: ImageDataset,
    test: ImageDataset,
    epochs: int,
    width: int,
    seed: int,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    probe_size: int = 256,
    examples: int = 0,
    run_dir: str | Path | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train :func:`arm_net` (``width`` channels) on ``train`` with the ``fast`` recipe for
    ``epochs`` (``batch_size`` and peak ``lr``, when given, replace the recipe's).

    Returns ``history`` (per epoch: ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``,
    ``val_acc``, ``epoch_time_s`` and, for LRLC arms, ``entropy`` on the first ``probe_size``
    validation images), ``val_acc`` and ``test_acc`` (final), ``params``, and for LRLC arms
    ``initial_entropy``; ``combining_weights`` ``[H_out, W_out, K]`` of ``lrlc`` and
    ``lrlc_no_spatial_bias``; ``kernel_variation`` (:func:`position_variation` of the first layer's
    per-position kernels) for ``lc``, ``lrlc`` and ``lrlc_no_spatial_bias``; for ``lrlc_input``
    with ``examples > 0``: ``example_images`` ``[examples, C, H, W]`` (the first test images) and
    their ``example_weights`` ``[examples, H_out, W_out, K]``, and for every ``lrlc_input`` run the
    spread of its test weights ``alpha[n, h, w, k]`` (first ``probe_size`` test images) across
    examples (``across_examples``: std over ``n``, mean over ``h, w, k``) and across positions
    (``across_positions``: std over ``h, w`` of the mean over ``n``, mean over ``k``).
    """
    check_choice("arm", arm, ARMS)
    for name, value in (
        ("rank", rank),
        ("epochs", epochs),
        ("width", width),
        ("probe_size", probe_size),
    ):
        check_positive_int(name, value)
    check_positive_int("examples", examples, minimum=0)
    seed_everything(seed)
    model = arm_net(
        arm,
        rank=rank,
        in_channels=train.image_shape[0],
        num_classes=train.num_classes,
        input_size=train.image_shape[-1],
        width=width,
        normalization=normalization,
    )
    lrlc = bool(lrlc_layers(model))
    probe = val.float_images()[:probe_size]
    metrics: dict[str, Any] = {"params": count_parameters(model)}
    log = None
    if lrlc:
        metrics["initial_entropy"] = mean_entropy(model, probe)
        log = EntropyLog(model, probe)
    history = fit(
        model,
        train,
        val,
        epochs=epochs,
        recipe="fast",
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        run_dir=run_dir,
        regularizer=log,
        device=device,
        progress=False,
    )
    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_time_s", "entropy")
    metrics["history"] = [{k: r[k] for k in keys if k in r} for r in history.records]
    metrics["val_acc"] = history.final["val_acc"]
    metrics["test_acc"] = evaluate(model, test, device=device)["accuracy"]
    model = model.cpu().eval()
    kernels = _first_layer_kernels(model)
    if kernels is not None:
        metrics["kernel_variation"] = position_variation(kernels.detach())
    if arm in ("lrlc", "lrlc_no_spatial_bias"):
        metrics["combining_weights"] = lrlc_layers(model)[0].combining_weights().detach().tolist()
    if arm == "lrlc_input":
        with torch.no_grad():
            alpha = layer_combining_weights(
                model, test.float_images()[:probe_size]
            )  # [N, H_out, W_out, K]
        metrics["across_examples"] = float(alpha.std(0).mean())
        metrics["across_positions"] = float(alpha.mean(0).flatten(0, 1).std(0).mean())
        if examples:
            metrics["example_images"] = test.float_images()[:examples].tolist()
            metrics["example_weights"] = alpha[:examples].tolist()
    return metrics
