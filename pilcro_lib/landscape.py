"""Importance landscapes and their flatness figures (theory notes, sections 1 and 2).

A landscape is a map over pixel locations ``u = (i, j)``: how strongly a score of the network
reacts to the input at ``u``. Everything here is differentiable, so the P-objective
(:mod:`pilcro_lib.objective`) can penalise these figures by double backpropagation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pilcro_lib.utils import check_choice

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
