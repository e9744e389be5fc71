"""Where position information hides in a CNN: the networks, task and measurements of chapter 10.

:func:`position_net` is :func:`pilcro_lib.models.fast_cnn` with a choice of padding, of
downsampling (max-pooling, anti-aliased max-blur pooling, strided convolutions) and of first
layer (convolution, CoordConv, LRLC). :func:`quadrant_task` is a task whose only signal is
*where* an item lies. :func:`shift_images` translates with zero fill, and
:func:`shift_consistency` measures how often a prediction survives a one-pixel shift.
:func:`run_position_arm` trains one network (optionally with the P-objective) and measures
all of it, for :func:`pilcro_lib.runs.records.cached_run`. :func:`position_probe` asks how well
a linear read-out of a network's frozen features recovers where an item lies (as Islam et al.
2020 probe absolute position), a measure that does not saturate as a four-way task does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pilcro_lib.data import ImageDataset
from pilcro_lib.layers import CoordConv2d, LowRankLocallyConnected2d
from pilcro_lib.models import fast_cnn
from pilcro_lib.paths import blur_pool
from pilcro_lib.synthetic import paste
from pilcro_lib.utils import (
    MAX_SEED,
    check_bool,
    check_choice,
    check_image_batch,
    check_number,
    check_positive_int,
    check_tensor,
    check_type,
)

PADDINGS = ("zeros", "reflect", "circular", "valid", "full")
DOWNSAMPLINGS = ("max", "blur", "stride")
FIRST_LAYERS = ("conv", "coordconv", "lrlc")
QUADRANTS = ["top-left", "top-right", "bottom-left", "bottom-right"]
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}


def _first_layer(first: str, conv: nn.Conv2d, input_size: int, rank: int) -> nn.Module:
    """The replacement of ``conv`` (same channels, padding and stride) by ``first``."""
    spatial = dict(
        padding=conv.padding[0], padding_mode=conv.padding_mode, stride=conv.stride[0], bias=False
    )
    if first == "coordconv":
        return CoordConv2d(conv.in_channels, conv.out_channels, 3, **spatial)
    return LowRankLocallyConnected2d(
        conv.in_channels, conv.out_channels, 3, input_size, rank, **spatial
    )


def position_net(
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int = 28,
    *,
    width: int = 16,
    padding: str = "zeros",
    downsampling: str = "max",
    first: str = "conv",
    rank: int = 4,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
) -> nn.Sequential:
    """:func:`~pilcro_lib.models.fast_cnn` of ``width`` with one change per argument.

    ``[B, in_channels, input_size, input_size]`` -> logits ``[B, num_classes]``.
    padding: ``zeros``, ``reflect``, ``circular`` (``same`` padding of that mode), ``valid``
    (none) or ``full`` (``k - 1`` zeros); the blur of ``blur`` downsampling pads with the same
    mode. downsampling, after each of the first two blocks: ``max`` (2x2 max-pooling), ``blur``
    (max-blur pooling: a stride-1 2x2 max-pool, then a binomial blur of stride 2) or ``stride``
    (the block's convolution has stride 2, no pooling). first: the first layer is a ``conv``, a
    :class:`~pilcro_lib.layers.CoordConv2d` or a row+column
    :class:`~pilcro_lib.layers.LowRankLocallyConnected2d` of ``rank`` (both without bias).
    """
    check_choice("padding", padding, PADDINGS)
    check_choice("downsampling", downsampling, DOWNSAMPLINGS)
    check_choice("first", first, FIRST_LAYERS)
    input_size = check_positive_int("input_size", input_size)
    rank = check_positive_int("rank", rank)
    mode = padding if padding in ("reflect", "circular") else "zeros"
    kind = padding if padding in ("valid", "full") else "same"
    net = fast_cnn(
        in_channels,
        num_classes,
        width=width,
        padding=kind,
        padding_mode=mode,
        normalization=normalization,
    )
    layers: list[nn.Module] = []
    conv: nn.Conv2d | None = None
    for module in net:
        if isinstance(module, nn.Conv2d):
            conv = module
        if isinstance(module, nn.MaxPool2d) and downsampling == "stride":
            conv.stride = (2, 2)
        elif isinstance(module, nn.MaxPool2d) and downsampling == "blur":
            blur = blur_pool(conv.out_channels)
            blur.padding_mode = mode
            layers += [nn.MaxPool2d(2, stride=1), blur]
        else:
            layers.append(module)
    if first != "conv":
        index = next(i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d))
        layers[index] = _first_layer(first, layers[index], input_size, rank)
    return nn.Sequential(*layers)


def quadrant_task(
    dataset: ImageDataset, canvas_size: int, *, jitter: int = 2, seed: int = 0
) -> ImageDataset:
    """Every item of ``dataset`` pasted in one of the canvas's four quadrants, which is its label.

    The quadrant (:data:`QUADRANTS`) is drawn uniformly per item, and the item's top-left corner
    sits at the quadrant's corner plus a uniform jitter of ``0..jitter`` pixels per axis; the
    item's own class is dropped. The quadrants lie exactly half a canvas apart, so the four
    classes are circular shifts of one another: a network invariant to circular shifts of half
    the canvas cannot beat chance. ``[N, C, s, s]`` -> ``[N, C, canvas_size, canvas_size]``.
    """
    check_type("dataset", dataset, ImageDataset)
    canvas_size = check_positive_int("canvas_size", canvas_size, minimum=2)
    jitter = check_positive_int("jitter", jitter, minimum=0)
    seed = check_positive_int("seed", seed, minimum=0, maximum=MAX_SEED)
    size, half = max(dataset.image_shape[1:]), canvas_size // 2
    if canvas_size % 2:
        raise ValueError(
            f"canvas_size must be even (quadrants half a canvas apart), got {canvas_size}"
        )
    if size + jitter > half:
        raise ValueError(
            f"canvas_size={canvas_size} must be at least 2 x (item size {size} + jitter {jitter})"
        )
    g = torch.Generator().manual_seed(seed)
    quadrant = torch.randint(0, 4, (len(dataset),), generator=g)
    offsets = torch.stack([quadrant // 2, quadrant % 2], 1) * half + torch.randint(
        0, jitter + 1, (len(dataset), 2), generator=g
    )
    placed = paste(dataset, canvas_size, offsets)
    return ImageDataset(
        placed.images, quadrant, QUADRANTS, f"{dataset.name}_quadrants_{canvas_size}"
    )


def shift_images(images: Tensor, dy: int, dx: int) -> Tensor:
    """``images [N, C, H, W]`` translated by ``dy`` rows down and ``dx`` columns right (negative:
    up, left); what moves out is lost and what moves in is 0. Same shape, float."""
    check_image_batch("images", images)
    h, w = images.shape[-2:]
    for name, value, size in (("dy", dy, h), ("dx", dx, w)):
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= size:
            raise ValueError(
                f"{name} must be an integer shift smaller than the image ({size} px), got {value!r}"
            )
    out = torch.zeros_like(images, dtype=torch.float32)
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ].float()
    return out


def shifted(dataset: ImageDataset, dy: int, dx: int) -> ImageDataset:
    """``dataset`` with every image :func:`shift_images` by ``(dy, dx)``."""
    check_type("dataset", dataset, ImageDataset)
    images = shift_images(dataset.float_images(), dy, dx)
    return ImageDataset(images, dataset.labels, dataset.classes, f"{dataset.name}_shift_{dy}_{dx}")


def penultimate_features(model: nn.Sequential, images: Tensor, batch_size: int = 256) -> Tensor:
    """The input of ``model``'s final linear layer for each image, in eval mode and without
    gradients: ``[N, C, H, W]`` -> ``[N, D]`` (float64, on the CPU)."""
    check_type("model", model, nn.Sequential, "an nn.Sequential ending in a linear layer")
    if not isinstance(model[-1], nn.Linear):
        raise ValueError(f"model must end in a linear layer, got {type(model[-1]).__name__}")
    check_image_batch("images", images)
    body = model[:-1]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        features = [body(chunk).double().cpu() for chunk in images.split(batch_size)]
    model.train(was_training)
    return torch.cat(features)


def position_probe(features: Tensor, offsets: Tensor, *, ridge: float = 1e-3) -> dict[str, float]:
    """How well a linear read-out of ``features`` ``[N, D]`` recovers the item positions
    ``offsets`` ``[N, 2]`` (row, column in pixels): ridge regression (weight ``ridge`` on the
    standardised features, centred targets) fitted on the first half of the items and scored on
    the second. Returns ``r2_row``, ``r2_col`` (1: exact; 0: no better than the mean position)
    and ``mae_px``, the mean absolute error of the two coordinates in pixels."""
    check_tensor("features", features, nonempty=True, finite=True)
    check_tensor("offsets", offsets, nonempty=True, finite=True)
    check_number("ridge", ridge, minimum=0)
    if features.ndim != 2 or offsets.shape != (len(features), 2):
        raise ValueError(
            "features must be [N, D] and offsets [N, 2] for the same N items, got "
            f"{tuple(features.shape)} and {tuple(offsets.shape)}"
        )
    if len(features) < 4:
        raise ValueError(f"position_probe needs at least 4 items, got {len(features)}")
    x, y = features.double(), offsets.double()
    half = len(x) // 2
    mean, std = x[:half].mean(0), x[:half].std(0).clamp_min(1e-12)
    x = (x - mean) / std
    centre = y[:half].mean(0)
    gram = x[:half].T @ x[:half] + ridge * torch.eye(x.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(gram, x[:half].T @ (y[:half] - centre))
    predicted = x[half:] @ weights + centre
    residual = ((y[half:] - predicted) ** 2).sum(0)
    total = ((y[half:] - y[half:].mean(0)) ** 2).sum(0)
    r2 = 1 - residual / total
    return {
        "r2_row": float(r2[0]),
        "r2_col": float(r2[1]),
        "mae_px": float((y[half:] - predicted).abs().mean()),
    }


def shift_consistency(model: nn.Module, dataset: ImageDataset, *, distance: int = 1) -> float:
    """The share of (image, shift) pairs whose predicted class is the same as the unshifted
    image's, over the 8 zero-filled shifts by ``distance`` pixels (the 4 axis and 4 diagonal
    neighbours). 1 for a network whose prediction never changes."""
    from pilcro_lib.train import predict

    check_type("model", model, nn.Module, "a torch.nn.Module")
    check_type("dataset", dataset, ImageDataset)
    distance = check_positive_int("distance", distance)
    reference, _ = predict(model, dataset)
    moves = [
        (dy, dx)
        for dy in (-distance, 0, distance)
        for dx in (-distance, 0, distance)
        if (dy, dx) != (0, 0)
    ]
    same = [
        (predict(model, shifted(dataset, dy, dx))[0] == reference).float().mean()
        for dy, dx in moves
    ]
    return float(torch.stack(same).mean())


def run_position_arm(
    train_set: ImageDataset,
    val_set: ImageDataset,
    test_set: ImageDataset,
    *,
    epochs: int,
    seed: int = 0,
    recipe: Any = "fast",
    lam: float = 0.0,
    border_shift: int = 0,
    probe_size: int = 256,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    eval_landscape: bool = False,
    position_probe_set: tuple[ImageDataset, Tensor] | None = None,
    run_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    **net_kwargs: Any,
) -> dict[str, Any]:
    """Train :func:`position_net` (``net_kwargs`` go there) with :func:`pilcro_lib.train.fit`, plus
    the P-objective of weight ``lam`` (its cheap default) when ``lam > 0``, then measure it.

    Returns JSON-serialisable metrics: ``history`` (fit's records), ``steps_per_epoch``,
    ``val_acc``, ``test_acc``, ``consistency`` (:func:`shift_consistency` on the test set),
    ``landscapes`` (epoch -> ``[H, W]`` list: the landscape of the first ``probe_size`` test
    images, batch statistics) and ``train_time_s``; with ``border_shift > 0`` also ``shift_acc``
    (direction of :data:`DIRECTIONS` -> test accuracy with the images shifted that way by
    ``border_shift`` pixels); with ``eval_landscape``, the deployed network's final landscape too
    (:func:`pilcro_lib.experiments.deployed_landscape`); with ``position_probe_set`` (items
    pasted on canvases of the network's input size, and their ``[N, 2]`` offsets),
    ``position_probe`` and ``position_probe_init``: :func:`position_probe` of the trained and of
    the initial network's frozen features.
    """
    from pilcro_lib.experiments import LandscapeRecorder, deployed_landscape
    from pilcro_lib.objective import PObjective
    from pilcro_lib.train import evaluate, fit, get_recipe
    from pilcro_lib.utils import seed_everything

    for name, data in (("train_set", train_set), ("val_set", val_set), ("test_set", test_set)):
        check_type(name, data, ImageDataset)
    epochs = check_positive_int("epochs", epochs)
    lam = check_number("lam", lam, minimum=0)
    border_shift = check_positive_int("border_shift", border_shift, minimum=0)
    probe_size = check_positive_int("probe_size", probe_size)
    check_bool("eval_landscape", eval_landscape)
    seed_everything(seed)
    c, h, _ = train_set.image_shape
    model = position_net(c, train_set.num_classes, h, normalization=normalization, **net_kwargs)
    probe = test_set.subset(torch.arange(min(probe_size, len(test_set))))
    recorder = LandscapeRecorder(
        probe.float_images(), probe.labels, PObjective(lam) if lam > 0 else None
    )
    recorder.record(model, 0)
    if position_probe_set is not None:
        canvases, offsets = _check_probe_set(position_probe_set, h)
        probe_init = position_probe(penultimate_features(model, canvases), offsets)
    history = fit(
        model,
        train_set,
        val_set,
        epochs=epochs,
        recipe=recipe,
        seed=seed,
        run_dir=run_dir,
        regularizer=recorder,
        device=device,
        progress=False,
    )
    model = model.cpu()
    metrics = {
        "history": history.records,
        "steps_per_epoch": -(-len(train_set) // get_recipe(recipe).batch_size),
        "val_acc": history.final["val_acc"],
        "test_acc": evaluate(model, test_set)["accuracy"],
        "consistency": shift_consistency(model, test_set),
        "landscapes": {str(k): v.tolist() for k, v in sorted(recorder.landscapes.items())},
        "train_time_s": sum(r["epoch_time_s"] for r in history.records),
    }
    if border_shift:
        metrics["shift_acc"] = {
            name: evaluate(model, shifted(test_set, dy * border_shift, dx * border_shift))[
                "accuracy"
            ]
            for name, (dy, dx) in DIRECTIONS.items()
        }
    if eval_landscape:
        metrics |= deployed_landscape(model, probe)
    if position_probe_set is not None:
        metrics["position_probe_init"] = probe_init
        metrics["position_probe"] = position_probe(penultimate_features(model, canvases), offsets)
    return metrics


def _check_probe_set(probe_set: Any, size: int) -> tuple[Tensor, Tensor]:
    """The canvases ``[N, C, size, size]`` (float) and offsets ``[N, 2]`` of a probe set."""
    if not (isinstance(probe_set, (list, tuple)) and len(probe_set) == 2):
        raise ValueError("position_probe_set must be (ImageDataset of canvases, offsets [N, 2])")
    canvases, offsets = probe_set
    check_type("position_probe_set[0]", canvases, ImageDataset)
    if canvases.image_shape[-1] != size:
        raise ValueError(
            f"position_probe_set's canvases must be {size} px like the training images, got "
            f"{canvases.image_shape[-1]}"
        )
    return canvases.float_images(), torch.as_tensor(offsets)
