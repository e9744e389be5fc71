"""Importance landscapes and their flatness figures (theory notes, sections 1 and 2).

A landscape is a map over pixel locations ``u = (i, j)``: how strongly a score of the network
reacts to the input at ``u``. Everything here is differentiable, so the P-objective
(:mod:`pilcro_lib.objective`) can penalise these figures by double backpropagation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pilcro_lib.utils import check_choice, check_positive_int, get_device

SCORES = ("loss", "logit", "logsumexp", "readout")
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
    if outputs.dim() != 2:
        raise ValueError(f"the model's outputs must be [batch, classes], got shape {tuple(outputs.shape)}")
    if score in ("loss", "logit") and targets is None:
        raise ValueError(f"targets are required for score={score!r}; pass class indices of shape [batch]")
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
    if not isinstance(inputs, Tensor) or inputs.dim() != 4:
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must be a 4-D tensor [batch, channels, height, width], got {shape}")
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        s = score_sum(model(x), targets, score)
        (grad,) = torch.autograd.grad(s, x, create_graph=create_graph)
    return grad.pow(2).sum(1) if squared else grad.abs().sum(1)


def normalize(landscape: Tensor) -> Tensor:
    """``Lambda = L / mean_u L(u)`` over the last two dimensions (``[..., H, W]`` -> same shape)."""
    mean = landscape.mean(dim=(-2, -1), keepdim=True)
    return landscape / mean.clamp_min(torch.finfo(landscape.dtype).tiny)


_normalize = normalize  # functions below take a ``normalize`` flag that shadows the name


def cv(lam: Tensor) -> Tensor:
    """Coefficient of variation of a normalised landscape: ``std_u(Lambda)``. ``[..., H, W]`` -> ``[...]``."""
    return lam.flatten(-2).std(dim=-1, unbiased=False)


def laplacian(lam: Tensor) -> Tensor:
    """5-point discrete Laplacian with replicate padding (zero on a constant map). Same shape."""
    shape = lam.shape
    x = lam.reshape(-1, 1, *shape[-2:])
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    lap = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:] - 4 * x
    return lap.reshape(shape)


def curvature(lam: Tensor) -> Tensor:
    """``mean_u (Delta Lambda)(u)^2``. ``[..., H, W]`` -> ``[...]``."""
    return laplacian(lam).pow(2).mean(dim=(-2, -1))


def gradient_energy(lam: Tensor) -> Tensor:
    """``mean_u |grad Lambda|^2`` with forward differences (replicate edge). ``[..., H, W]`` -> ``[...]``."""
    dy = torch.diff(lam, dim=-2, append=lam[..., -1:, :])
    dx = torch.diff(lam, dim=-1, append=lam[..., :, -1:])
    return (dx.pow(2) + dy.pow(2)).mean(dim=(-2, -1))


def border_ratio(lam: Tensor, width: int = 2) -> Tensor:
    """Mean of ``Lambda`` on the outer ring of ``width`` pixels over the mean inside it."""
    h, w = lam.shape[-2:]
    if not 1 <= width < min(h, w) / 2:
        raise ValueError(f"width must be >= 1 and leave an interior in a {h}x{w} map, got {width}")
    ring = torch.ones(h, w, dtype=torch.bool, device=lam.device)
    ring[width:-width, width:-width] = False
    return lam[..., ring].mean(-1) / lam[..., ~ring].mean(-1)


def max_over_min(lam: Tensor) -> Tensor:
    """Largest over smallest value of the map. ``[..., H, W]`` -> ``[...]``."""
    flat = lam.flatten(-2)
    return flat.max(-1).values / flat.min(-1).values.clamp_min(torch.finfo(lam.dtype).tiny)


def asymmetry(lam: Tensor, dim: int = -1) -> Tensor:
    """Mirror asymmetry ``|Lambda - flip(Lambda)|_1 / |Lambda|_1`` along ``dim`` (-1: left/right,
    -2: top/bottom). ``[..., H, W]`` -> ``[...]``; 0 for a mirror-symmetric map."""
    if dim not in (-1, -2):
        raise ValueError(f"dim must be -1 (left/right) or -2 (top/bottom), got {dim}")
    return (lam - lam.flip(dim)).abs().sum(dim=(-2, -1)) / lam.abs().sum(dim=(-2, -1))


def checkerboard(lam: Tensor, stride: int = 2) -> Tensor:
    """Share of the landscape's non-constant power at the stride frequencies.

    The power of the 2-D FFT of ``Lambda`` summed over the frequencies ``(a H / s, b W / s)``
    (``a, b = 0..s-1``, not both 0; the Nyquist frequencies for ``s = 2``), over the power at all
    non-zero frequencies. 0 for a smooth map, 1 for a pure period-``s`` pattern.
    """
    h, w = lam.shape[-2:]
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


def flatness(landscape: Tensor, *, border: int = 2, stride: int = 2) -> dict[str, float]:
    """All flatness figures of one landscape ``[H, W]`` (normalised to mean 1 first).

    Keys: ``cv``, ``border_ratio``, ``curvature``, ``gradient_energy``, ``max_over_min``,
    ``checkerboard``. A perfectly flat landscape gives 0, 1, 0, 0, 1 and 0.
    """
    if landscape.dim() != 2:
        raise ValueError(f"landscape must be a 2-D map [H, W], got shape {tuple(landscape.shape)}")
    lam = normalize(landscape.detach().double())
    return {
        "cv": cv(lam).item(),
        "border_ratio": border_ratio(lam, border).item(),
        "curvature": curvature(lam).item(),
        "gradient_energy": gradient_energy(lam).item(),
        "max_over_min": max_over_min(lam).item(),
        "checkerboard": checkerboard(lam, stride).item(),
    }


# --- landscapes over datasets and over random initialisations -------------------------------------

MC_INPUTS = ("gaussian", "uniform")
MODES = ("eval", "train")
_SIZE_ERRORS = ("too small", "greater than actual input size", "Output size is", "non-positive")


def pearson(a: Tensor, b: Tensor, *, flat_tol: float = 1e-9) -> float:
    """Pearson correlation of two maps of the same shape (flattened, in float64).

    Undefined for a constant map: returns ``nan`` when either map's relative standard deviation
    (``std / |mean|``) is at most ``flat_tol``.
    """
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
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
        raise ValueError(f"{name} have {shape[1]} channels but the model's first spatial layer expects {expected}")


def _batches(inputs, targets, batch_size: int):
    """Yield ``(x [B,C,H,W], y [B] or None)`` from a tensor (+ targets) or a Dataset of (image, label)."""
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


def _saliency_checked(model: nn.Module, x: Tensor, y: Tensor | None, score: str, squared: bool) -> Tensor:
    """:func:`saliency`, turning PyTorch's size errors into a ``ValueError`` that names ``inputs``."""
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
) -> Tensor:
    """The landscape ``L(u) = mean_x g_u(x)`` over a dataset, ``[H, W]`` (float64, on the CPU).

    ``inputs``: a tensor ``[N, C, H, W]`` (with ``targets`` ``[N]`` when the score needs labels)
    or a Dataset of ``(image [C, H, W], label)`` (an :class:`~pilcro_lib.data.ImageDataset`),
    whose labels are used. One backward pass per batch, no graph kept across batches; batches
    go to the model's device. The model runs in the mode it is in (``eval()`` is the usual
    choice; in ``train()`` BatchNorm uses batch statistics) and is left exactly as given: its
    buffers (BatchNorm running statistics) are restored and no parameter ``.grad`` is touched.
    With ``normalize`` the map is divided by its mean (``Lambda``).
    """
    check_choice("score", score, SCORES)
    batch_size = check_positive_int("batch_size", batch_size)
    if isinstance(inputs, Tensor):
        _check_inputs(model, tuple(inputs.shape))
        if inputs.shape[0] == 0:
            raise ValueError("inputs must hold at least one image")
        if targets is not None and (targets.dim() != 1 or targets.shape[0] != inputs.shape[0]):
            raise ValueError(f"targets must have shape [{inputs.shape[0]}], got {tuple(targets.shape)}")
        if targets is None and score in ("loss", "logit"):
            raise ValueError(f"targets are required for score={score!r} when inputs is a tensor")
    elif isinstance(inputs, torch.utils.data.Dataset):
        if targets is not None:
            raise ValueError("targets must be None when inputs is a Dataset (its labels are used)")
        if len(inputs) == 0:
            raise ValueError("inputs must hold at least one image")
        _check_inputs(model, (1, *tuple(torch.as_tensor(inputs[0][0]).shape)))
    else:
        raise TypeError(f"inputs must be a Tensor [N, C, H, W] or a Dataset, got {type(inputs).__name__}")

    device = _model_device(model)
    saved = _snapshot_buffers(model)
    total, count = None, 0
    try:
        for x, y in _batches(inputs, targets, batch_size):
            x = x.to(device, non_blocking=True)
            y = None if y is None or score in ("logsumexp", "readout") else y.to(device, non_blocking=True)
            g = _saliency_checked(model, x, y, score, squared).sum(0, dtype=torch.float64)
            total = g if total is None else total + g
            count += x.shape[0]
    finally:
        _restore_buffers(saved)
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
    return torch.stack([torch.as_tensor(im) for im, _ in items]), torch.as_tensor([int(t) for _, t in items])


def monte_carlo_landscape(
    build_model,
    input_size: tuple[int, int, int],
    *,
    n_inits: int,
    squared: bool = True,
    inputs: str | Tensor | torch.utils.data.Dataset = "gaussian",
    n_inputs: int = 8,
    score: str = "readout",
    mode: str = "eval",
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
    ``eval`` or ``train`` (BatchNorm with batch statistics). Returns the mean map ``[H, W]``
    (float64, normalised to mean 1 if ``normalize``) and, with ``return_per_init``, also the raw
    per-init maps ``[n_inits, H, W]`` (see :func:`running_cv`).
    """
    n_inits = check_positive_int("n_inits", n_inits)
    n_inputs = check_positive_int("n_inputs", n_inputs)
    check_choice("score", score, SCORES)
    check_choice("mode", mode, MODES)
    seed = check_positive_int("seed", seed, minimum=0)
    if len(tuple(input_size)) != 3:
        raise ValueError(f"input_size must be (channels, height, width), got {input_size!r}")
    input_size = tuple(int(s) for s in input_size)
    if isinstance(inputs, str):
        check_choice("inputs", inputs, MC_INPUTS)
    elif isinstance(inputs, Tensor):
        if tuple(inputs.shape[1:]) != input_size:
            raise ValueError(f"inputs must have shape [N, {input_size}], got {tuple(inputs.shape)}")
    elif not isinstance(inputs, torch.utils.data.Dataset):
        raise TypeError(f"inputs must be one of {MC_INPUTS}, a Tensor or a Dataset, got {type(inputs).__name__}")
    device = get_device(device) if device is not None else torch.device("cpu")

    maps = []
    for i in range(n_inits):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            model = build_model().to(device).train(mode == "train")
        if i == 0:
            _check_inputs(model, (1, *input_size), name="input_size")
        x, y = _mc_batch(inputs, n_inputs, input_size, gen)
        if score in ("loss", "logit") and y is None:
            with torch.no_grad():
                num_classes = model(x[:1].to(device)).shape[1]
            y = torch.randint(num_classes, (n_inputs,), generator=gen)
        y = None if score in ("logsumexp", "readout") else y.to(device)
        maps.append(_saliency_checked(model, x.to(device), y, score, squared).mean(0).double().cpu())
    per_init = torch.stack(maps)
    mean = per_init.mean(0)
    mean = _normalize(mean) if normalize else mean
    return (mean, per_init) if return_per_init else mean


def running_cv(per_init: Tensor) -> Tensor:
    """``cv`` of the normalised running mean of per-init maps ``[n, H, W]`` after 1..n inits: ``[n]``."""
    if per_init.dim() != 3:
        raise ValueError(f"per_init must be [n_inits, H, W], got shape {tuple(per_init.shape)}")
    counts = torch.arange(1, per_init.shape[0] + 1, dtype=per_init.dtype).view(-1, 1, 1)
    return cv(normalize(per_init.cumsum(0) / counts))
