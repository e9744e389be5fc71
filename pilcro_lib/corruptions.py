"""Test-time corruptions of images in [0, 1], for robustness measured against clean accuracy.

:func:`corrupt` applies one corruption of a given severity to a batch ``[N, C, H, W]``;
:func:`corrupted` returns a corrupted copy of an :class:`~pilcro_lib.data.ImageDataset`.
Every result stays in [0, 1] (Gaussian noise is clipped), so a corrupted test set is an
ordinary dataset. The kinds and what ``severity`` means for each:

- ``gaussian_noise``: add i.i.d. normal noise of standard deviation ``severity`` (seeded), clip;
- ``blur``: Gaussian blur of standard deviation ``severity`` pixels (kernel radius ``3 sigma``,
  replicate edges);
- ``contrast``: ``mean + severity * (x - mean)`` with each image's own mean (``severity < 1``
  lowers the contrast);
- ``shift``: translate down and right by ``severity`` pixels, filling with 0 (the background);
- ``border_occlusion``: set the outer ring of ``severity`` pixels to 0;
- ``corner_occlusion``: set the top-left ``severity x severity`` square to 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from pilcro_lib.data import ImageDataset
from pilcro_lib.utils import (
    MAX_SEED,
    check_choice,
    check_image_batch,
    check_number,
    check_positive_int,
    check_type,
)

CORRUPTIONS = (
    "gaussian_noise",
    "blur",
    "contrast",
    "shift",
    "border_occlusion",
    "corner_occlusion",
)
_PIXELS = ("shift", "border_occlusion", "corner_occlusion")  # severities that count pixels


def _check_severity(kind: str, severity: float, h: int, w: int) -> float:
    if kind in _PIXELS:
        limit = (min(h, w) - 1) // 2 if kind == "border_occlusion" else min(h, w)
        return check_positive_int("severity", severity, minimum=0, maximum=limit)
    return check_number("severity", severity, minimum=0)


def _blur(images: Tensor, sigma: float) -> Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    n, c, h, w = images.shape
    x = F.pad(images.reshape(n * c, 1, h, w), (radius,) * 4, mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x.reshape(n, c, h, w)


def corrupt(images: Tensor, kind: str, severity: float, *, seed: int = 0) -> Tensor:
    """``images [N, C, H, W]`` in [0, 1] with corruption ``kind`` of ``severity`` (see the module):
    a new float tensor of the same shape, in [0, 1]. ``seed`` draws the Gaussian noise."""
    check_image_batch("images", images)
    check_choice("kind", kind, CORRUPTIONS)
    h, w = images.shape[-2:]
    severity = _check_severity(kind, severity, h, w)
    seed = check_positive_int("seed", seed, minimum=0, maximum=MAX_SEED)
    x = images.float()
    if severity == 0 and kind != "contrast":
        return x.clone()
    if kind == "gaussian_noise":
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
        return (x + severity * noise).clamp(0, 1)
    if kind == "blur":
        return _blur(x, severity).clamp(0, 1)
    if kind == "contrast":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (mean + severity * (x - mean)).clamp(0, 1)
    out = x.clone()
    if kind == "shift":
        out.zero_()
        out[..., severity:, severity:] = x[..., : h - severity, : w - severity]
    elif kind == "border_occlusion":
        inner = out[..., severity : h - severity, severity : w - severity].clone()
        out.zero_()
        out[..., severity : h - severity, severity : w - severity] = inner
    else:
        out[..., :severity, :severity] = 0
    return out


def corrupted(dataset: ImageDataset, kind: str, severity: float, *, seed: int = 0) -> ImageDataset:
    """A copy of ``dataset`` whose images have corruption ``kind`` of ``severity`` (float
    images)."""
    check_type("dataset", dataset, ImageDataset)
    images = corrupt(dataset.float_images(), kind, severity, seed=seed)
    return ImageDataset(
        images, dataset.labels, dataset.classes, f"{dataset.name}_{kind}_{severity:g}"
    )
