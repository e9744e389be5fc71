"""Importance landscapes and their flatness figures (theory notes, sections 1 and 2).

A landscape is a map over pixel locations ``u = (i, j)``: how strongly a score of the network
reacts to the input at ``u``. Everything here is differentiable, so the P-objective
(:mod:`pilcro_lib.objective`) can penalise these figures by double backpropagation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from copy import deepcopy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pilcro_lib.utils import (
    MAX_SEED,
    check_bool,
    check_choice,
    check_image_batch,
    check_int_tuple,
    check_labels,
    check_map,
    check_model_builder,
    check_number,
    check_positive_int,
    check_tensor,
    check_type,
    get_device,
)

SCORES = ("loss", "logit", "logsumexp", "readout")
FLATNESS_FIGURES = (
    "cv",
    "border_ratio",
    "curvature",
    "gradient_energy",
    "max_over_min",
    "checkerboard",
)
READOUT_SEED = 1234


def _fixed_readout(num_outputs: int, like: Tensor) -> Tensor:
    """A fixed random unit vector ``v`` of length ``num_outputs`` (same for every call)."""
    g = torch.Generator().manual_seed(READOUT_SEED)
    v = torch.randn(num_outputs, generator=g, dtype=torch.float64)
    return (v / v.norm()).to(device=like.device, dtype=like.dtype)


def score_sum(outputs: Tensor, targets: Tensor | None, score: str = "loss") -> Tensor:
    """The scalar ``sum_b s(x_b, y_b)`` whose input gradient gives every sample's saliency at once.

    outputs: ``[B, K]`` logits; targets: ``[B]`` class indices (needed for ``loss`` and ``logit``).
    """
    check_choice("score", score, SCORES)
    check_tensor(
        "outputs", outputs, ndim=2, dims="[batch, classes] (the model's logits)", dtype_kind="float"
    )
    if score in ("loss", "logit") and targets is None:
        raise ValueError(
            f"targets are required for score={score!r}; pass class indices of shape [batch]"
        )
    if score in ("loss", "logit"):
        check_labels("targets", targets, outputs.shape[0], num_classes=outputs.shape[1])
    if score == "loss":
        return F.cross_entropy(outputs, targets, reduction="sum")
    if score == "logit":
        return outputs.gather(1, targets.view(-1, 1)).sum()
    if score == "logsumexp":
        return outputs.logsumexp(dim=1).sum()
    return (outputs @ _fixed_readout(outputs.shape[1], outputs)).sum()


def saliency(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None = None,
    *,
    score: str = "loss",
    squared: bool = False,
    create_graph: bool = False,
) -> Tensor:
    """Per-sample pixel saliency ``g_u(x) = sum_c |d s / d x_{c,u}|`` (or its squared variant).

    inputs: ``[B, C, H, W]``; targets: ``[B]`` or ``None``. Returns ``[B, H, W]``.
    One backward pass of the summed score serves the whole batch. With ``create_graph=True``
    the result is differentiable in the model's parameters (double backpropagation).
    """
    check_type("model", model, nn.Module, "a torch.nn.Module")
    check_image_batch("inputs", inputs)
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        s = score_sum(model(x), targets, score)
        (grad,) = torch.autograd.grad(s, x, create_graph=create_graph)
    return grad.pow(2).sum(1) if squared else grad.abs().sum(1)


def normalize(landscape: Tensor) -> Tensor:
    """``Lambda = L / mean_u L(u)`` over the last two dimensions (``[..., H, W]`` -> same shape)."""
    check_map("landscape", landscape)
    mean = landscape.mean(dim=(-2, -1), keepdim=True)
    return landscape / mean.clamp_min(torch.finfo(landscape.dtype).tiny)


_normalize = normalize  # functions below take a ``normalize`` flag that shadows the name


def cv(lam: Tensor) -> Tensor:
    """Coefficient of variation of a normalised landscape: ``std_u(Lambda)``. ``[..., H, W]`` ->
    ``[...]``."""
    return check_map("lam", lam).flatten(-2).std(dim=-1, unbiased=False)


def laplacian(lam: Tensor) -> Tensor:
    """5-point discrete Laplacian with replicate padding (zero on a constant map). Same shape."""
    shape = check_map("lam", lam).shape
    x = lam.reshape(-1, 1, *shape[-2:])
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    lap = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:] - 4 * x
    return lap.reshape(shape)


def curvature(lam: Tensor) -> Tensor:
    """``mean_u (Delta Lambda)(u)^2``. ``[..., H, W]`` -> ``[...]``."""
    return laplacian(lam).pow(2).mean(dim=(-2, -1))


def gradient_energy(lam: Tensor) -> Tensor:
    """``mean_u |grad Lambda|^2`` with forward differences (replicate edge). ``[..., H, W]`` ->
    ``[...]``."""
    check_map("lam", lam)
    dy = torch.diff(lam, dim=-2, append=lam[..., -1:, :])
    dx = torch.diff(lam, dim=-1, append=lam[..., :, -1:])
    return (dx.pow(2) + dy.pow(2)).mean(dim=(-2, -1))


def border_ratio(lam: Tensor, width: int = 2) -> Tensor:
    """Mean of ``Lambda`` on the outer ring of ``width`` pixels over the mean inside it."""
    h, w = check_map("lam", lam).shape[-2:]
    width = _check_ring("width", width, h, w)
    ring = torch.ones(h, w, dtype=torch.bool, device=lam.device)
    ring[width:-width, width:-width] = False
    return lam[..., ring].mean(-1) / lam[..., ~ring].mean(-1)


def max_over_min(lam: Tensor) -> Tensor:
    """Largest over smallest value of the map. ``[..., H, W]`` -> ``[...]``."""
    flat = check_map("lam", lam).flatten(-2)
    return flat.max(-1).values / flat.min(-1).values.clamp_min(torch.finfo(lam.dtype).tiny)


def asymmetry(lam: Tensor, dim: int = -1) -> Tensor:
    """Mirror asymmetry ``|Lambda - flip(Lambda)|_1 / |Lambda|_1`` along ``dim`` (-1: left/right,
    -2: top/bottom). ``[..., H, W]`` -> ``[...]``; 0 for a mirror-symmetric map."""
    check_map("lam", lam)
    if isinstance(dim, bool) or dim not in (-1, -2):
        raise ValueError(f"dim must be -1 (left/right) or -2 (top/bottom), got {dim!r}")
    return (lam - lam.flip(dim)).abs().sum(dim=(-2, -1)) / lam.abs().sum(dim=(-2, -1))


def border_balance(lam: Tensor, dim: int = -1, period: int = 2) -> Tensor:
    """How much more the first border is used than the last, free of the stride's phase:
    ``log(mean of the first period columns / mean of the last period columns)`` along ``dim``
    (-1: left over right, -2: top over bottom). A band of one whole ``period`` averages a
    period-``period`` pattern to the same value whatever its phase, so a map that only
    alternates with the stride scores 0 and a map with an under-used last border scores > 0.
    ``[..., H, W]`` -> ``[...]``."""
    h, w = check_map("lam", lam).shape[-2:]
    if isinstance(dim, bool) or dim not in (-1, -2):
        raise ValueError(f"dim must be -1 (left/right) or -2 (top/bottom), got {dim!r}")
    period = _check_stride("period", period, h, w)
    lines = lam if dim == -1 else lam.transpose(-1, -2)
    first = lines[..., :period].mean(dim=(-2, -1))
    last = lines[..., -period:].mean(dim=(-2, -1))
    return torch.log(first / last)


def checkerboard(lam: Tensor, stride: int = 2) -> Tensor:
    """Share of the landscape's non-constant power at the stride frequencies.

    The power of the 2-D FFT of ``Lambda`` summed over the frequencies ``(a H / s, b W / s)``
    (``a, b = 0..s-1``, not both 0; the Nyquist frequencies for ``s = 2``), over the power at all
    non-zero frequencies. 0 for a smooth map, 1 for a pure period-``s`` pattern.
    """
    h, w = check_map("lam", lam).shape[-2:]
    stride = _check_stride("stride", stride, h, w)
    power = torch.fft.fft2(lam).abs().pow(2)
    power[..., 0, 0] = 0
    rows = {round(a * h / stride) % h for a in range(stride)}
    cols = {round(b * w / stride) % w for b in range(stride)}
    mask = torch.zeros(h, w, dtype=torch.bool, device=lam.device)
    for r in rows:
        for c in cols:
            mask[r, c] = True
    mask[0, 0] = False
    total = power.sum(dim=(-2, -1))
    return power[..., mask].sum(-1) / total.clamp_min(torch.finfo(lam.dtype).tiny)


def _check_ring(name: str, width: int, h: int, w: int) -> int:
    """A ring width that leaves an interior in an ``h x w`` map."""
    width = check_positive_int(name, width)
    if not width < min(h, w) / 2:
        raise ValueError(
            f"{name}={width} leaves no interior in a {h}x{w} map; it must be in [1, "
            f"{(min(h, w) - 1) // 2}]"
        )
    return width


def _check_stride(name: str, stride: int, h: int, w: int) -> int:
    """A checkerboard period that fits an ``h x w`` map."""
    stride = check_positive_int(name, stride, minimum=2)
    if stride > min(h, w):
        raise ValueError(
            f"{name}={stride} is larger than the {h}x{w} map; it must be in [2, {min(h, w)}]"
        )
    return stride


def flatness(landscape: Tensor, *, border: int = 2, stride: int = 2) -> dict[str, float]:
    """All flatness figures of one landscape ``[H, W]`` (normalised to mean 1 first).

    Keys: ``cv``, ``border_ratio``, ``curvature``, ``gradient_energy``, ``max_over_min``,
    ``checkerboard``. A perfectly flat landscape gives 0, 1, 0, 0, 1 and 0. The landscape must be
    finite, not all zero (an all-zero map has no landscape to measure) and of positive mean.
    """
    check_tensor("landscape", landscape, ndim=2, dims="[H, W]", nonempty=True, finite=True)
    _check_ring("border", border, *landscape.shape)
    _check_stride("stride", stride, *landscape.shape)
    if not landscape.any():
        raise ValueError("landscape is all zero: an all-zero map has no landscape to measure")
    mean = landscape.detach().double().mean().item()
    if mean <= 0:
        raise ValueError(
            "landscape must have a positive mean (it is normalised by its mean), got a mean of "
            f"{mean:.4g}"
        )
    lam = normalize(landscape.detach().double())
    return {
        "cv": cv(lam).item(),
        "border_ratio": border_ratio(lam, border).item(),
        "curvature": curvature(lam).item(),
        "gradient_energy": gradient_energy(lam).item(),
        "max_over_min": max_over_min(lam).item(),
        "checkerboard": checkerboard(lam, stride).item(),
    }


def flatness_or_nan(
    landscape: Tensor | None, *, border: int = 2, stride: int = 2
) -> dict[str, float]:
    """:func:`flatness`, or NaN for every figure where there is no landscape to measure:
    ``None`` (none recorded), all zero, or not finite (a diverged run)."""
    if landscape is None or not torch.isfinite(landscape).all() or not landscape.any():
        return dict.fromkeys(FLATNESS_FIGURES, math.nan)
    return flatness(landscape, border=border, stride=stride)


# --- landscapes over datasets and over random initialisations -------------------------------------

MC_INPUTS = ("gaussian", "uniform")
MODES = ("eval", "train")
DROPOUTS = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
MC_SEED_STRIDE = 1_000_003  # init i of seed s draws its inputs with seed s * MC_SEED_STRIDE + i
_SIZE_ERRORS = ("too small", "greater than actual input size", "Output size is", "non-positive")


def pearson(a: Tensor, b: Tensor, *, flat_tol: float = 1e-9) -> float:
    """Pearson correlation of two maps of the same shape (flattened, in float64).

    Undefined for a constant map: returns ``nan`` when either map's relative standard deviation
    (``std / |mean|``) is at most ``flat_tol``.
    """
    check_tensor("a", a, nonempty=True, finite=True)
    check_tensor("b", b, nonempty=True, finite=True)
    check_number("flat_tol", flat_tol, minimum=0)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    x = a.detach().double().flatten().cpu()
    y = b.detach().double().flatten().cpu()
    for v in (x, y):
        if v.std(unbiased=False) <= flat_tol * v.mean().abs():
            return float("nan")
    x, y = x - x.mean(), y - y.mean()
    return (x @ y / (x.norm() * y.norm())).item()


def _model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def _expected_channels(model: nn.Module) -> int | None:
    """``in_channels`` of the model's first spatial layer (a conv, or any layer with an integer
    ``in_channels``, such as those of :mod:`pilcro_lib.layers`); ``None`` if it has none."""
    for module in model.modules():
        if module is not model and isinstance(getattr(module, "in_channels", None), int):
            return module.in_channels
    return None


def _check_inputs(model: nn.Module, shape: tuple[int, ...], name: str = "inputs") -> None:
    if len(shape) != 4:
        raise ValueError(f"{name} must be 4-D [batch, channels, height, width], got shape {shape}")
    expected = _expected_channels(model)
    if expected is not None and shape[1] != expected:
        raise ValueError(
            f"{name} have {shape[1]} channels but the model's first spatial layer expects "
            f"{expected}"
        )


def _batches(inputs, targets, batch_size: int):
    """Yield ``(x [B,C,H,W], y [B] or None)`` from a tensor (+ targets) or a Dataset of (image,
    label)."""
    from pilcro_lib.data import ImageDataset, to_float

    if isinstance(inputs, (Tensor, ImageDataset)):
        for start in range(0, len(inputs), batch_size):
            stop = start + batch_size
            if isinstance(inputs, ImageDataset):  # slice the stored images: no per-item loop
                yield to_float(inputs.images[start:stop]), inputs.labels[start:stop]
            else:
                yield inputs[start:stop], None if targets is None else targets[start:stop]
    else:
        loader = torch.utils.data.DataLoader(inputs, batch_size=batch_size, shuffle=False)
        for x, y in loader:
            yield x, torch.as_tensor(y)


def _snapshot_buffers(model: nn.Module) -> list[tuple[Tensor, Tensor]]:
    return [(buf, buf.detach().clone()) for buf in model.buffers()]


def _restore_buffers(saved: list[tuple[Tensor, Tensor]]) -> None:
    with torch.no_grad():
        for buf, copy in saved:
            buf.copy_(copy)


def _is_random_regulariser(module: nn.Module) -> bool:
    """Dropout of any kind, and torchvision's stochastic depth (EfficientNet's residual drop)."""
    from torchvision.ops import StochasticDepth

    return isinstance(module, (*DROPOUTS, StochasticDepth))


@contextmanager
def measurement_mode(model: nn.Module, mode: str | None) -> Iterator[nn.Module]:
    """Put ``model`` in ``mode`` for the block, then leave it exactly as it was.

    ``"train"``: the network as it takes a training step. BatchNorm normalises with the
    statistics of the batch it sees (and the gradient flows through those statistics);
    dropout and stochastic depth stay in eval mode, so a landscape is a property of the
    weights and the inputs, not of one random mask. ``"eval"``: every module in eval mode
    (BatchNorm uses its running statistics). ``None``: the modes the modules are in.
    On exit every buffer (BatchNorm's running statistics, its batch counter) is restored and
    every module gets its own ``training`` flag back: measuring changes nothing.
    """
    if mode is not None:
        check_choice("mode", mode, MODES)
    flags = [(module, module.training) for module in model.modules()]
    saved = _snapshot_buffers(model)
    try:
        if mode is not None:
            model.train(mode == "train")
            for module in model.modules():
                if _is_random_regulariser(module):
                    module.eval()
        yield model
    finally:
        _restore_buffers(saved)
        for module, training in flags:
            module.training = training


def _saliency_checked(
    model: nn.Module, x: Tensor, y: Tensor | None, score: str, squared: bool
) -> Tensor:
    """:func:`saliency`, turning PyTorch's size errors into a ``ValueError`` that names
    ``inputs``."""
    try:
        return saliency(model, x, y, score=score, squared=squared)
    except RuntimeError as err:
        if any(s in str(err) for s in _SIZE_ERRORS):
            raise ValueError(
                f"inputs of spatial size {tuple(x.shape[-2:])} are too small for the model ({err})"
            ) from err
        raise


def importance_landscape(
    model: nn.Module,
    inputs: Tensor | torch.utils.data.Dataset,
    targets: Tensor | None = None,
    *,
    score: str = "loss",
    squared: bool = False,
    batch_size: int = 256,
    normalize: bool = True,
    mode: str | None = None,
) -> Tensor:
    """The landscape ``L(u) = mean_x g_u(x)`` over a dataset, ``[H, W]`` (float64, on the CPU).

    ``inputs``: a tensor ``[N, C, H, W]`` (with ``targets`` ``[N]`` when the score needs labels)
    or a Dataset of ``(image [C, H, W], label)`` (an :class:`~pilcro_lib.data.ImageDataset`),
    whose labels are used. One backward pass per batch, no graph kept across batches; batches
    go to the model's device. ``mode``: ``"train"`` (BatchNorm with the statistics of each
    batch of ``batch_size`` images, as in a training step; dropout off), ``"eval"``, or
    ``None`` for the mode the model is in (see :func:`measurement_mode`). The model is left
    exactly as given: its buffers (BatchNorm running statistics) and training flags are
    restored and no parameter ``.grad`` is touched. With ``normalize`` the map is divided by
    its mean (``Lambda``).
    """
    check_type("model", model, nn.Module, "a torch.nn.Module")
    check_choice("score", score, SCORES)
    batch_size = check_positive_int("batch_size", batch_size)
    check_bool("squared", squared)
    check_bool("normalize", normalize)
    if isinstance(inputs, Tensor):
        _check_inputs(model, tuple(inputs.shape))
        check_image_batch("inputs", inputs)
        if targets is not None:
            check_labels("targets", targets, inputs.shape[0])
        if targets is None and score in ("loss", "logit"):
            raise ValueError(f"targets are required for score={score!r} when inputs is a tensor")
    elif isinstance(inputs, torch.utils.data.Dataset):
        if targets is not None:
            raise ValueError("targets must be None when inputs is a Dataset (its labels are used)")
        if len(inputs) == 0:
            raise ValueError("inputs must hold at least one image")
        _check_inputs(model, (1, *tuple(torch.as_tensor(inputs[0][0]).shape)))
    else:
        raise TypeError(
            f"inputs must be a Tensor [N, C, H, W] or a Dataset, got {type(inputs).__name__}"
        )

    device = _model_device(model)
    total, count = None, 0
    with measurement_mode(model, mode):
        for x, y in _batches(inputs, targets, batch_size):
            x = x.to(device, non_blocking=True)
            y = (
                None
                if y is None or score in ("logsumexp", "readout")
                else y.to(device, non_blocking=True)
            )
            g = _saliency_checked(model, x, y, score, squared).sum(0, dtype=torch.float64)
            total = g if total is None else total + g
            count += x.shape[0]
    landscape = (total / count).cpu()
    return _normalize(landscape) if normalize else landscape


def _mc_batch(inputs, n_inputs: int, input_size: tuple[int, int, int], gen: torch.Generator):
    """One batch of Monte-Carlo inputs ``[n_inputs, C, H, W]`` and labels (``None`` for noise)."""
    if isinstance(inputs, str):
        draw = torch.randn if inputs == "gaussian" else torch.rand
        return draw(n_inputs, *input_size, generator=gen), None
    n = inputs.shape[0] if isinstance(inputs, Tensor) else len(inputs)
    idx = torch.randint(n, (n_inputs,), generator=gen)
    if isinstance(inputs, Tensor):
        return inputs[idx], None
    items = [inputs[int(i)] for i in idx]
    return torch.stack([torch.as_tensor(im) for im, _ in items]), torch.as_tensor(
        [int(t) for _, t in items]
    )


def monte_carlo_landscape(
    build_model,
    input_size: tuple[int, int, int],
    *,
    n_inits: int,
    squared: bool = True,
    inputs: str | Tensor | torch.utils.data.Dataset = "gaussian",
    n_inputs: int = 8,
    score: str = "readout",
    mode: str = "train",
    seed: int = 0,
    normalize: bool = True,
    return_per_init: bool = False,
    device: str | torch.device | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Mean landscape over ``n_inits`` random initialisations (and random inputs): ``E[g_u^2]``.

    ``build_model()`` returns a freshly initialised network; it is called under a forked RNG
    seeded with ``seed + i`` for init ``i`` (the global RNG is untouched). ``inputs``:
    ``"gaussian"`` (standard normal noise), ``"uniform"`` (noise in [0, 1]), a tensor
    ``[N, C, H, W]`` or a Dataset to draw ``n_inputs`` images from per init. Labels for
    ``score`` ``loss``/``logit`` come from the Dataset, else are drawn uniformly. ``mode``:
    ``train`` (default: the network as it takes its first training step, BatchNorm with the
    statistics of the ``n_inputs`` images, dropout off) or ``eval`` (BatchNorm with its
    running statistics, which at initialisation make it the identity; see
    :func:`measurement_mode`). Returns the mean map ``[H, W]``
    (float64, normalised to mean 1 if ``normalize``) and, with ``return_per_init``, also the raw
    per-init maps ``[n_inits, H, W]`` (see :func:`running_cv`).
    """
    check_model_builder("build_model", build_model)
    n_inits = check_positive_int("n_inits", n_inits)
    n_inputs = check_positive_int("n_inputs", n_inputs)
    check_choice("score", score, SCORES)
    check_choice("mode", mode, MODES)
    seed = check_positive_int(
        "seed", seed, minimum=0, maximum=(MAX_SEED - n_inits) // MC_SEED_STRIDE
    )
    input_size = check_int_tuple("input_size", input_size, 3, dims="(channels, height, width)")
    for flag, value in (
        ("squared", squared),
        ("normalize", normalize),
        ("return_per_init", return_per_init),
    ):
        check_bool(flag, value)
    if isinstance(inputs, str):
        check_choice("inputs", inputs, MC_INPUTS)
    elif isinstance(inputs, Tensor):
        check_image_batch("inputs", inputs)
        if tuple(inputs.shape[1:]) != input_size:
            raise ValueError(f"inputs must have shape [N, {input_size}], got {tuple(inputs.shape)}")
    elif isinstance(inputs, torch.utils.data.Dataset):
        if len(inputs) == 0:
            raise ValueError("inputs must hold at least one image, got an empty Dataset")
    else:
        raise TypeError(
            f"inputs must be one of {MC_INPUTS}, a Tensor or a Dataset, got {type(inputs).__name__}"
        )
    device = get_device(device) if device is not None else torch.device("cpu")

    maps = []
    for i in range(n_inits):
        gen = torch.Generator().manual_seed(seed * MC_SEED_STRIDE + i)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            model = check_type("build_model()", build_model(), nn.Module, "an nn.Module").to(device)
        if i == 0:
            _check_inputs(model, (1, *input_size), name="input_size")
        x, y = _mc_batch(inputs, n_inputs, input_size, gen)
        with measurement_mode(model, mode):
            if score in ("loss", "logit") and y is None:
                with torch.no_grad():
                    num_classes = model(x.to(device)).shape[1]
                y = torch.randint(num_classes, (n_inputs,), generator=gen)
            y = None if score in ("logsumexp", "readout") else y.to(device)
            maps.append(
                _saliency_checked(model, x.to(device), y, score, squared).mean(0).double().cpu()
            )
    per_init = torch.stack(maps)
    mean = per_init.mean(0)
    mean = _normalize(mean) if normalize else mean
    return (mean, per_init) if return_per_init else mean


def running_cv(per_init: Tensor) -> Tensor:
    """``cv`` of the normalised running mean of per-init maps ``[n, H, W]`` after 1..n inits:
    ``[n]``."""
    check_tensor(
        "per_init",
        per_init,
        ndim=3,
        dims="[n_inits, H, W]",
        dtype_kind="float",
        nonempty=True,
        finite=True,
    )
    counts = torch.arange(1, per_init.shape[0] + 1, dtype=per_init.dtype).view(-1, 1, 1)
    return cv(normalize(per_init.cumsum(0) / counts))


# --- how sure a Monte-Carlo map is, and the period-s grid of strided shortcuts --------------------


def _check_per_init(per_init: Tensor, minimum: int = 2) -> Tensor:
    """Per-init maps ``[n_inits, H, W]`` (float, finite), at least ``minimum`` of them."""
    if not isinstance(per_init, Tensor) or per_init.dim() != 3 or not per_init.is_floating_point():
        what = tuple(per_init.shape) if isinstance(per_init, Tensor) else type(per_init).__name__
        raise ValueError(f"per_init must be a float tensor [n_inits, H, W], got {what}")
    if per_init.shape[0] < minimum or not torch.isfinite(per_init).all():
        raise ValueError(
            f"per_init must hold at least {minimum} finite maps, got {per_init.shape[0]}"
        )
    return per_init.detach().double().cpu()


def standard_error(per_init: Tensor) -> Tensor:
    """Monte-Carlo standard error of the normalised mean map, per pixel: ``[n, H, W]`` ->
    ``[H, W]``.

    ``per_init``: the raw per-init maps of :func:`monte_carlo_landscape`
    (``return_per_init=True``). The mean map is ``m(u) = mean_i m_i(u)``; its standard error
    ``std_i m_i(u) / sqrt(n)`` is divided by ``mean_u m(u)``, so it is in the units of
    ``Lambda`` (a pixel with ``Lambda = 1.2 +- 0.1`` has a standard error of 0.1).
    """
    per_init = _check_per_init(per_init)
    n = per_init.shape[0]
    return (
        per_init.std(0, unbiased=True)
        / math.sqrt(n)
        / per_init.mean().clamp_min(torch.finfo(torch.float64).tiny)
    )


def bootstrap_flatness(
    per_init: Tensor, *, n_boot: int = 200, seed: int = 0, **figure_kwargs
) -> dict[str, float]:
    """Bootstrap standard error of each :func:`flatness` figure of the mean map over the inits.

    ``per_init``: ``[n_inits, H, W]`` raw per-init maps. The initialisations are resampled with
    replacement ``n_boot`` times (a seeded generator); the result maps each figure's name to
    the standard deviation of that figure over the resampled mean maps. ``figure_kwargs``
    (``border``, ``stride``) go to :func:`flatness`.
    """
    per_init = _check_per_init(per_init)
    n_boot = check_positive_int("n_boot", n_boot, minimum=2)
    gen = torch.Generator().manual_seed(check_positive_int("seed", seed, minimum=0))
    n = per_init.shape[0]
    draws = [
        flatness(per_init[torch.randint(n, (n,), generator=gen)].mean(0), **figure_kwargs)
        for _ in range(n_boot)
    ]
    return {
        key: float(torch.tensor([d[key] for d in draws], dtype=torch.float64).std())
        for key in draws[0]
    }


def grid_ratio(lam: Tensor, period: int = 8, offset: int = 0) -> Tensor:
    """Mean of the map on a grid over its mean off the grid. ``[..., H, W]`` -> ``[...]``.

    The grid holds the pixels ``(i, j)`` with ``i % period == j % period == offset``: the
    positions that ``log2(period)`` stride-2 1x1 convolutions in a row read (offset 0). 1 for a
    map with no such grid; large where those positions dominate.
    """
    if not isinstance(lam, Tensor) or lam.dim() < 2 or not lam.is_floating_point():
        raise ValueError(f"lam must be a float map [..., H, W], got {type(lam).__name__}")
    h, w = lam.shape[-2:]
    period = check_positive_int("period", period, minimum=2)
    if period > min(h, w):
        raise ValueError(
            f"period={period} is larger than the {h}x{w} map; it must be in [2, {min(h, w)}]"
        )
    offset = check_positive_int("offset", offset, minimum=0)
    if offset >= period:
        raise ValueError(f"offset={offset} must be in [0, {period - 1}] for period={period}")
    rows = torch.arange(h, device=lam.device) % period == offset
    cols = torch.arange(w, device=lam.device) % period == offset
    grid = rows[:, None] & cols[None, :]
    return lam[..., grid].mean(-1) / lam[..., ~grid].mean(-1)


# --- the network as it trains, for the analytic maps; how a landscape scales with a path count ----


def with_batch_statistics(model: nn.Module, inputs: Tensor) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are those of the batch ``inputs``.

    ``inputs``: ``[B, C, H, W]`` (e.g. the noise images of a Monte-Carlo landscape). Every
    BatchNorm's running mean and variance are reset and then set, by one forward pass in
    train mode (``momentum=None``: a plain average), to the statistics of the batch reaching
    it. The copy's eval mode then normalises as the original does in a training step on
    ``inputs``, so ``path_count(copy, ..., weighting="variance")`` (which reads the running
    variances, :mod:`pilcro_lib.paths`) is the analytic map of the network as it trains.
    ``model`` is not changed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inputs, Tensor) or inputs.dim() != 4:
        what = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(
            f"inputs must be a 4-D tensor [batch, channels, height, width], got {what}"
        )
    copy = deepcopy(model).eval()
    norms = [m for m in copy.modules() if isinstance(m, BATCH_NORMS)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    device = next(iter(copy.parameters()), inputs).device
    with torch.no_grad():
        copy(inputs.to(device))
    return copy.eval()


def power_law_fit(count: Tensor, landscape: Tensor) -> tuple[float, float]:
    """Exponent ``p`` of ``landscape ~ count^p``: least squares of ``log landscape`` on
    ``log count``.

    ``count``, ``landscape``: positive maps of the same shape (e.g. ``[H, W]``). Returns
    ``(p, r)``, ``r`` the Pearson correlation of the two logarithms (how straight the log-log
    cloud is). For a linear net the squared landscape follows ``p = 1``; the L1 landscape
    ``p = 1/2`` when the input gradient is Gaussian at every pixel.
    """
    for name, m in (("count", count), ("landscape", landscape)):
        if not isinstance(m, Tensor) or m.numel() < 2 or not bool((m > 0).all()):
            raise ValueError(f"{name} must be a map of at least 2 positive values")
    if count.shape != landscape.shape:
        raise ValueError(
            f"count and landscape must have the same shape, got {tuple(count.shape)} "
            f"and {tuple(landscape.shape)}"
        )
    x = count.detach().double().flatten().cpu().log()
    y = landscape.detach().double().flatten().cpu().log()
    if x.std() == 0:
        raise ValueError("count is constant: the exponent is undefined on a flat path count")
    xc, yc = x - x.mean(), y - y.mean()
    slope = (xc @ yc / (xc @ xc)).item()
    return slope, (xc @ yc / (xc.norm() * yc.norm()).clamp_min(1e-300)).item()
