"""The networks of the book: the reference small net of the LRLC experiments, a CIFAR-style
ResNet-18 and the fast CNN of Part II."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pilcro_lib.layers import (
    COMBINING_INITS,
    RESIZE_MODES,
    CoordConv2d,
    LocallyConnected2d,
    LowRankLocallyConnected2d,
    lrlc_layers,
)
from pilcro_lib.utils import check_bool, check_choice, check_number, check_positive_int, check_type

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDINGS = ("valid", "same", "full")
LAYER_TYPES = ("conv", "lc", "lrlc", "lrlc_input", "wide_conv", "coordconv")
HEADS = ("gap", "flatten")


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``, so models take images in [0, 1]. ``[B, C, H, W]`` ->
    same."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        for name, values in (("mean", mean), ("std", std)):
            check_type(name, values, Sequence, "a sequence of per-channel numbers")
            if not values:
                raise ValueError(f"{name} must hold one number per channel, got an empty sequence")
            for v in values:
                check_number(name, v, minimum=0 if name == "std" else None, strict=True)
        if len(mean) != len(std):
            raise ValueError(
                f"mean and std must have one number per channel each, got {len(mean)} and "
                f"{len(std)}"
            )
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"x must be [B, {self.mean.shape[1]}, H, W] for this Normalize, got shape "
                f"{tuple(x.shape)}"
            )
        return (x - self.mean) / self.std


def _normalization_layers(
    normalization: tuple[Sequence[float], Sequence[float]] | None, in_channels: int
) -> list[nn.Module]:
    """``[Normalize(mean, std)]`` for ``normalization=(mean, std)`` of ``in_channels`` entries each;
    ``[]`` for ``None``."""
    if normalization is None:
        return []
    if not (
        isinstance(normalization, (list, tuple))
        and len(normalization) == 2
        and all(isinstance(v, Sequence) for v in normalization)
    ):
        raise ValueError(
            "normalization must be (mean, std), each with one number per channel, or None; got "
            f"{normalization!r}"
        )
    norm = Normalize(*normalization)
    if norm.mean.shape[1] != in_channels:
        raise ValueError(
            f"normalization has {norm.mean.shape[1]} channels but in_channels={in_channels}"
        )
    return [norm]


def padding_amount(padding: str, kernel_size: int) -> int:
    """Pixels of padding per side for a stride-1 ``kernel_size`` conv: valid 0, same (k-1)/2, full
    k-1."""
    check_choice("padding", padding, PADDINGS)
    check_positive_int("kernel_size", kernel_size)
    if padding == "same" and kernel_size % 2 == 0:
        raise ValueError(f"padding='same' needs an odd kernel_size, got {kernel_size}")
    return {"valid": 0, "same": (kernel_size - 1) // 2, "full": kernel_size - 1}[padding]


def output_size(input_size: int, kernel_size: int, padding: int, stride: int = 1) -> int:
    """Spatial output size (>= 1) of a convolution along one axis."""
    for name, value in (
        ("input_size", input_size),
        ("kernel_size", kernel_size),
        ("stride", stride),
    ):
        check_positive_int(name, value)
    check_positive_int("padding", padding, minimum=0)
    if kernel_size > input_size + 2 * padding:
        raise ValueError(
            f"input_size={input_size} is too small for kernel_size={kernel_size} with "
            f"padding={padding}"
        )
    return (input_size + 2 * padding - kernel_size) // stride + 1


def wide_conv_channels(
    in_channels: int,
    out_channels: int,
    input_size: int,
    *,
    kernel_size: int = 3,
    rank: int = 4,
    padding: str = "valid",
) -> int:
    """Output channels of the ``wide_conv`` layer: a bias-free conv with (to rounding) as many
    parameters as the bias-free row+column LRLC layer of ``rank`` it stands in for."""
    pad = padding_amount(padding, kernel_size)
    lrlc = LowRankLocallyConnected2d(
        in_channels, out_channels, kernel_size, input_size, rank, padding=pad, bias=False
    )
    return max(1, round(count_parameters(lrlc) / (in_channels * kernel_size**2)))


def make_layer(
    kind: str,
    in_channels: int,
    out_channels: int,
    input_size: int,
    *,
    kernel_size: int = 3,
    rank: int = 4,
    padding: str = "valid",
    padding_mode: str = "zeros",
    bias: bool = False,
    combining_init: str = "default",
    resize: str = "aligned",
) -> nn.Module:
    """One spatial layer of the reference net; ``input_size`` is the side of its square input.

    kind: ``conv``; ``lc`` (locally connected, always with its per-position bias, which a
    following BatchNorm does not cancel); ``lrlc`` (row+column combining, softmax) and
    ``lrlc_input`` (input-dependent combining; ``combining_init`` and ``resize`` as in
    :class:`~pilcro_lib.layers.LowRankLocallyConnected2d`) of ``rank``; ``wide_conv`` (a conv with
    :func:`wide_conv_channels` outputs, so as many parameters as the ``lrlc`` layer; note that
    :func:`reference_net` instead widens its ``wide_conv`` layers together); ``coordconv``.
    ``bias``: the per-channel bias of all but ``lc``.
    """
    check_choice("kind", kind, LAYER_TYPES)
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    for name, value in (
        ("in_channels", in_channels),
        ("out_channels", out_channels),
        ("input_size", input_size),
    ):
        check_positive_int(name, value)
    check_bool("bias", bias)
    check_choice("combining_init", combining_init, COMBINING_INITS)
    check_choice("resize", resize, RESIZE_MODES)
    pad = padding_amount(padding, kernel_size)
    spatial = dict(padding=pad, padding_mode=padding_mode)
    if kind == "lc":
        return LocallyConnected2d(in_channels, out_channels, kernel_size, input_size, **spatial)
    if kind == "lrlc":
        return LowRankLocallyConnected2d(
            in_channels, out_channels, kernel_size, input_size, rank, bias=bias, **spatial
        )
    if kind == "lrlc_input":
        return LowRankLocallyConnected2d(
            in_channels,
            out_channels,
            kernel_size,
            input_size,
            rank,
            combining="input",
            bias=bias,
            combining_init=combining_init,
            resize=resize,
            **spatial,
        )
    if kind == "coordconv":
        return CoordConv2d(in_channels, out_channels, kernel_size, bias=bias, **spatial)
    if kind == "wide_conv":
        out_channels = wide_conv_channels(
            in_channels,
            out_channels,
            input_size,
            kernel_size=kernel_size,
            rank=rank,
            padding=padding,
        )
    return nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias, **spatial)


def _reference_layers(
    layer_types: Sequence[str],
    widths: Sequence[int],
    *,
    in_channels: int,
    num_classes: int,
    input_size: int,
    rank: int,
    padding: str,
    padding_mode: str,
    head: str,
    combining_init: str,
    resize: str,
) -> list[nn.Module]:
    """The reference net's modules with ``widths[i]`` output channels at layer ``i`` (``wide_conv``
    built as a conv)."""
    layers: list[nn.Module] = []
    channels, size = in_channels, input_size
    for kind, out in zip(layer_types, widths):
        kind = "conv" if kind == "wide_conv" else kind
        layers += [
            make_layer(
                kind,
                channels,
                out,
                size,
                rank=rank,
                padding=padding,
                padding_mode=padding_mode,
                combining_init=combining_init,
                resize=resize,
            ),
            nn.BatchNorm2d(out, eps=1e-5, momentum=0.1),
            nn.ReLU(),
        ]
        channels, size = out, output_size(size, 3, padding_amount(padding, 3))
    if head == "gap":
        return layers + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return layers + [nn.Flatten(), nn.Linear(channels * size * size, num_classes)]


def _wide_width(layer_types: Sequence[str], width: int, **kwargs) -> int:
    """The one width of all ``wide_conv`` layers that brings the net's parameter count closest to
    the same net with those layers as ``lrlc`` (binary search; the count grows with the width)."""

    def count(w: int) -> int:
        widths = [w if kind == "wide_conv" else width for kind in layer_types]
        return count_parameters(nn.Sequential(*_reference_layers(layer_types, widths, **kwargs)))

    as_lrlc = ["lrlc" if kind == "wide_conv" else kind for kind in layer_types]
    target = count_parameters(
        nn.Sequential(*_reference_layers(as_lrlc, [width] * len(layer_types), **kwargs))
    )
    lo, hi = width, 2 * width
    while count(hi) < target:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    return min((lo, hi), key=lambda w: abs(count(w) - target))


def reference_net(
    layer_types: Sequence[str] = ("conv", "conv", "conv"),
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int = 28,
    width: int = 64,
    rank: int = 4,
    padding: str = "valid",
    padding_mode: str = "zeros",
    head: str = "gap",
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    combining_init: str = "default",
    resize: str = "aligned",
) -> nn.Sequential:
    """The 3-layer net of the LRLC reference experiments: ``[layer, BatchNorm, ReLU] x 3``, pooling,
    linear.

    Input ``[B, in_channels, input_size, input_size]`` in [0, 1] (normalised inside when
    ``normalization=(mean, std)``); output logits ``[B, num_classes]``. Each entry of
    ``layer_types`` is one of :data:`LAYER_TYPES` (see :func:`make_layer`; ``rank`` is the LRLC
    layers' rank). All ``wide_conv`` layers get one common width, chosen so that the whole net
    has (to rounding) as many parameters as the same net with those layers as ``lrlc``.
    Conv and LRLC layers have no per-channel bias (BatchNorm follows). ``head``: ``gap``
    (global average pooling) or ``flatten``. ``combining_init``, ``resize``: of the ``lrlc_input``
    layers (see :func:`make_layer`).
    """
    check_choice("head", head, HEADS)
    check_type("layer_types", layer_types, (list, tuple), "a list of layer kinds")
    if len(layer_types) < 1:
        raise ValueError("layer_types must name at least one layer")
    for kind in layer_types:
        check_choice("kind", kind, LAYER_TYPES)
    for name, value in (
        ("in_channels", in_channels),
        ("num_classes", num_classes),
        ("width", width),
        ("rank", rank),
    ):
        check_positive_int(name, value)
    pad = padding_amount(padding, 3)
    size = check_positive_int("input_size", input_size)
    try:
        for _ in layer_types:
            size = output_size(size, 3, pad)
    except ValueError as err:
        raise ValueError(
            f"input_size={input_size} is too small for {len(layer_types)} layers with "
            f"padding={padding!r}"
        ) from err
    kwargs = dict(
        in_channels=in_channels,
        num_classes=num_classes,
        input_size=input_size,
        rank=rank,
        padding=padding,
        padding_mode=padding_mode,
        head=head,
        combining_init=combining_init,
        resize=resize,
    )
    wide = _wide_width(layer_types, width, **kwargs) if "wide_conv" in layer_types else width
    widths = [wide if kind == "wide_conv" else width for kind in layer_types]
    layers = _normalization_layers(normalization, in_channels)
    return nn.Sequential(*layers, *_reference_layers(layer_types, widths, **kwargs))


def he_uniform_init_(model: nn.Module) -> nn.Module:
    """Re-initialise in place every ``nn.Conv2d`` of ``model`` that is a spatial layer (CoordConv's
    included; not the convs of an input-dependent LRLC's combining head) as the LC and LRLC layers
    start: He-uniform weights, ``U(-b, b)`` with ``b = sqrt(6 / fan_in)``, and zero biases.
    Returns ``model``."""
    check_type("model", model, nn.Module, "a torch.nn.Module")
    heads = {
        id(m)
        for layer in lrlc_layers(model)
        if layer.head is not None
        for m in layer.head.modules()
    }
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and id(module) not in heads:
            nn.init.kaiming_uniform_(module.weight, a=0.0, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def remove_spatial_bias_(model: nn.Module) -> nn.Module:
    """Remove in place the spatial bias of every LRLC layer of ``model``, as if each had been built
    with ``spatial_bias=False`` (its per-channel bias stays). Returns ``model``."""
    check_type("model", model, nn.Module, "a torch.nn.Module")
    for layer in lrlc_layers(model):
        layer.row_bias = layer.col_bias = layer.spatial_bias = None
    return model


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with BatchNorm, plus an identity or 1x1 projection
    shortcut."""

    expansion = 1

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, padding_mode: str = "zeros"
    ):
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("channels", channels),
            ("stride", stride),
        ):
            check_positive_int(name, value)
        check_choice("padding_mode", padding_mode, PADDING_MODES)
        self.conv1 = nn.Conv2d(
            in_channels, channels, 3, stride, 1, bias=False, padding_mode=padding_mode
        )
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False, padding_mode=padding_mode)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


def cifar_resnet18(
    num_classes: int = 10,
    in_channels: int = 3,
    padding_mode: str = "zeros",
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    width: int = 64,
) -> nn.Sequential:
    """CIFAR-style ResNet-18: 3x3 stem without max-pool, stages of 2 basic blocks at widths
    ``width * (1, 2, 4, 8)`` with strides ``(1, 2, 2, 2)``, global average pooling, linear.

    Input ``[B, in_channels, H, W]`` in [0, 1]; output ``[B, num_classes]``. ``padding_mode``
    applies to every 3x3 conv.
    """
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    for name, value in (
        ("num_classes", num_classes),
        ("in_channels", in_channels),
        ("width", width),
    ):
        check_positive_int(name, value)
    layers = _normalization_layers(normalization, in_channels)
    layers += [
        nn.Conv2d(in_channels, width, 3, 1, 1, bias=False, padding_mode=padding_mode),
        nn.BatchNorm2d(width),
        nn.ReLU(),
    ]
    channels = width
    for i, stride in enumerate((1, 2, 2, 2)):
        out = width * 2**i
        layers += [
            BasicBlock(channels, out, stride, padding_mode),
            BasicBlock(out, out, 1, padding_mode),
        ]
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    check_type("model", model, nn.Module, "a torch.nn.Module")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def fast_cnn(
    in_channels: int = 1,
    num_classes: int = 10,
    *,
    width: int = 32,
    padding: str = "same",
    padding_mode: str = "zeros",
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
) -> nn.Sequential:
    """A plain CNN that trains to its plateau in minutes on a CPU: four
    ``[3x3 conv, BatchNorm, ReLU]`` blocks of ``width * (1, 2, 2, 4)`` channels, a 2x2 max-pool
    after each of the first two, global average pooling, linear.

    Input ``[B, in_channels, H, W]`` in [0, 1] (normalised inside when ``normalization=(mean,
    std)``); output logits ``[B, num_classes]``. ``padding`` (``valid``, ``same``, ``full``) and
    ``padding_mode`` apply to every conv; convs have no bias (BatchNorm follows). Only layers that
    :func:`pilcro_lib.paths.path_count` supports.
    """
    for name, value in (
        ("in_channels", in_channels),
        ("num_classes", num_classes),
        ("width", width),
    ):
        check_positive_int(name, value)
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    pad = padding_amount(padding, 3)
    layers = _normalization_layers(normalization, in_channels)
    channels = in_channels
    for i, out in enumerate((width, 2 * width, 2 * width, 4 * width)):
        layers += [
            nn.Conv2d(channels, out, 3, padding=pad, bias=False, padding_mode=padding_mode),
            nn.BatchNorm2d(out),
            nn.ReLU(),
        ]
        layers += [nn.MaxPool2d(2)] if i < 2 else []
        channels = out
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
    )
