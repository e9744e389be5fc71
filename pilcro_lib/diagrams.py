"""Pictures of the book's ideas, drawn from the library's own numbers.

- :func:`window_counts` and :func:`window_diagram`: the windows of one convolution or pooling
  layer over a small grid (padding and stride included) and how many windows read each pixel,
  the path count of that one layer (chapter 3);
- :func:`measurement_steps` and :func:`measurement_diagram`: how an importance landscape is
  measured, from a batch of images to the averaged map (chapter 1).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from torch import Tensor, nn

from pilcro_lib import landscape
from pilcro_lib.plotting import new_figure
from pilcro_lib.utils import check_positive_int

__all__ = [
    "measurement_diagram",
    "measurement_steps",
    "window_counts",
    "window_diagram",
    "windows_1d",
]


def windows_1d(size: int, kernel_size: int, stride: int, padding: int) -> list[range]:
    """The input positions (``-padding .. size + padding - 1``) each output of one axis reads.

    Output ``o`` reads ``stride * o - padding + a`` for ``a`` in ``0 .. kernel_size - 1``;
    there are ``(size + 2 * padding - kernel_size) // stride + 1`` outputs (PyTorch's floor).
    """
    size, kernel_size = (
        check_positive_int("size", size),
        check_positive_int("kernel_size", kernel_size),
    )
    stride = check_positive_int("stride", stride)
    if not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    if size + 2 * padding < kernel_size:
        raise ValueError(
            f"size {size} + 2 * padding {padding} is smaller than kernel_size {kernel_size}"
        )
    n_out = (size + 2 * padding - kernel_size) // stride + 1
    return [range(stride * o - padding, stride * o - padding + kernel_size) for o in range(n_out)]


def window_counts(size: int, kernel_size: int, stride: int, padding: int) -> Tensor:
    """How many windows of a square ``kernel_size`` layer read each pixel of a ``size x size``
    input, ``[size, size]`` float64, counted by enumerating the windows (padding is read but not
    counted). For a net of that one layer and a global pooling this is its path count."""
    counts = torch.zeros(size, dtype=torch.float64)
    for window in windows_1d(size, kernel_size, stride, padding):
        for p in window:
            if 0 <= p < size:
                counts[p] += 1
    return torch.outer(counts, counts)


def window_diagram(
    size: int = 6, kernel_size: int = 3, stride: int = 2, padding: int = 1
) -> Figure:
    """Two panels: left, the input grid with its padding ring and the window of every output
    (one colour each, labelled with the output's position); right, :func:`window_counts`, the
    number of windows that read each pixel, written in its cell. Padding no window reads is
    hatched."""
    rows = windows_1d(size, kernel_size, stride, padding)
    counts = window_counts(size, kernel_size, stride, padding).numpy()
    read = {p for w in rows for p in w}
    fig, axes = new_figure(1, 2, width=3.8, height=3.8, layout="constrained")
    left, right = axes[0]
    lo, hi = -padding - 0.5, size + padding - 0.5
    for ax in (left, right):
        for i in range(-padding, size + padding):
            for j in range(-padding, size + padding):
                inside = 0 <= i < size and 0 <= j < size
                unread = i not in read or j not in read
                face = "white" if inside else "0.85"
                ax.add_patch(
                    Rectangle(
                        (j - 0.5, i - 0.5),
                        1,
                        1,
                        facecolor=face,
                        edgecolor="0.6",
                        lw=0.6,
                        hatch="///" if (not inside and unread) else None,
                    )
                )
        ax.set_xlim(lo, hi)
        ax.set_ylim(hi, lo)
        ax.set_aspect("equal")
        ax.set_xticks(range(-padding, size + padding))
        ax.set_yticks(range(-padding, size + padding))
        ax.tick_params(labelsize=8)
        ax.set_xlabel("column $j$ (padding outside 0..%d)" % (size - 1), fontsize=9)
    left.set_ylabel("row $i$", fontsize=9)
    colours = plt.get_cmap("tab10").colors
    n_out = len(rows)
    for a, wi in enumerate(rows):
        for b, wj in enumerate(rows):
            colour = colours[(a * n_out + b) % len(colours)]
            inset = 0.1 + 0.08 * ((a + b) % 2)
            left.add_patch(
                Rectangle(
                    (wj[0] - 0.5 + inset, wi[0] - 0.5 + inset),
                    len(wj) - 2 * inset,
                    len(wi) - 2 * inset,
                    fill=False,
                    edgecolor=colour,
                    lw=1.8,
                )
            )
            centre_i, centre_j = (wi[0] + wi[-1]) / 2, (wj[0] + wj[-1]) / 2
            left.text(
                centre_j,
                centre_i,
                f"{a},{b}",
                color=colour,
                ha="center",
                va="center",
                fontsize=8,
                fontweight="bold",
            )
    left.set_title(
        f"windows of a {kernel_size}x{kernel_size}/{stride} layer, padding {padding}\n"
        f"(labelled by their output position)",
        fontsize=9,
    )
    right.imshow(
        counts,
        cmap="Blues",
        vmin=0,
        vmax=counts.max() * 1.6,
        extent=(-0.5, size - 0.5, size - 0.5, -0.5),
        zorder=2,
    )
    for i in range(size):
        for j in range(size):
            right.text(j, i, f"{counts[i, j]:.0f}", ha="center", va="center", fontsize=9, zorder=3)
    right.set_title("windows reading each pixel\n(the path count $N$ of this layer)", fontsize=9)
    right.set_xlim(lo, hi)
    right.set_ylim(hi, lo)
    return fig


def measurement_steps(
    model: nn.Module,
    images: Tensor,
    labels: Tensor | None = None,
    *,
    score: str = "loss",
    mode: str | None = "train",
) -> dict[str, Tensor]:
    """Every stage of measuring a landscape on one batch, for :func:`measurement_diagram`.

    images: ``[B, C, H, W]``; labels: ``[B]``. Returns ``images``, ``gradient`` (the input
    gradient of each image's score, ``[B, C, H, W]``), ``saliency`` (``landscape.saliency``,
    ``[B, H, W]``), ``landscape`` (their mean over the batch, ``[H, W]``) and ``normalised``
    (``landscape.normalize`` of it). The model is measured in ``mode`` and left as it was.
    """
    x = images.detach().clone().requires_grad_(True)
    with landscape.measurement_mode(model, mode), torch.enable_grad():
        score_sum = landscape.score_sum(model(x), labels, score)
        (gradient,) = torch.autograd.grad(score_sum, x)
        saliency = landscape.saliency(model, images, labels, score=score)
    mean = saliency.double().mean(dim=0)
    return {
        "images": images.detach(),
        "gradient": gradient.detach(),
        "saliency": saliency.detach(),
        "landscape": mean,
        "normalised": landscape.normalize(mean),
    }


def _stack(ax, maps: np.ndarray, x0: float, *, cmap: str, vmin: float, vmax: float):
    """Draw ``maps`` ``[B, H, W]`` as a deck of cards from ``x0`` (unit-high cards)."""
    n = len(maps)
    shift = 0.12
    for k in reversed(range(n)):
        left, bottom = x0 + k * shift, 0.2 - k * shift
        ax.imshow(
            maps[k],
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            extent=(left, left + 1, bottom, bottom + 1),
            zorder=10 - k,
        )
        ax.add_patch(
            Rectangle((left, bottom), 1, 1, fill=False, lw=0.8, edgecolor="0.2", zorder=10 - k)
        )
    return x0 + 1 + (n - 1) * shift


def measurement_diagram(steps: dict[str, Tensor], *, shown: int = 3) -> Figure:
    """The measurement of a landscape as a pipeline over the real numbers of
    :func:`measurement_steps`: a batch of images, the network and score, the input gradient of
    each image (signed, one symmetric scale), ``|gradient|`` summed over channels (the saliency,
    one scale), their mean over the batch (the landscape ``L``) and ``Lambda = L / mean L``.
    ``shown`` images of each stage are drawn as a deck of cards."""
    batch = len(steps["images"])
    shown = min(check_positive_int("shown", shown), batch)
    images = steps["images"][:shown, 0].numpy()
    gradient = steps["gradient"][:shown, 0].numpy()
    saliency = steps["saliency"][:shown].numpy()
    lam = steps["normalised"].numpy()
    g_max = float(np.abs(gradient).max())
    fig, axes = new_figure(1, 1, width=8.0, height=1.9)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1)
    ax = axes[0, 0]
    x = 0.0
    label_y = -0.25
    labels = []

    def arrow(start, end, text=None):
        ax.add_patch(
            FancyArrowPatch(
                (start, 0.7), (end, 0.7), arrowstyle="-|>", mutation_scale=12, lw=1.2, color="0.3"
            )
        )
        if text:
            ax.text((start + end) / 2, 0.6, text, ha="center", va="top", fontsize=8)

    end = _stack(ax, images, x, cmap="gray", vmin=0, vmax=1)
    labels.append(((x + end) / 2, f"a batch of {batch}\nimages $x$"))
    arrow(end + 0.1, end + 0.6)
    box = end + 0.7
    ax.add_patch(Rectangle((box, 0.25), 1.1, 0.9, facecolor="#fde9c9", edgecolor="0.3"))
    ax.text(box + 0.55, 0.7, "network $f$\nscore $s(x, y)$", ha="center", va="center", fontsize=8)
    labels.append((box + 0.55, "one backward\npass"))
    arrow(box + 1.15, box + 1.65)
    x = box + 1.75
    end = _stack(ax, gradient, x, cmap="RdBu_r", vmin=-g_max, vmax=g_max)
    labels.append(((x + end) / 2, "input gradient\n$\\partial s / \\partial x$ (signed)"))
    arrow(end + 0.1, end + 0.75, "$|\\cdot|$, $\\Sigma_c$")
    x = end + 0.85
    end = _stack(ax, saliency, x, cmap="viridis", vmin=0, vmax=float(saliency.max()))
    labels.append(((x + end) / 2, "saliency $g_u(x)$\nper image"))
    arrow(end + 0.1, end + 0.75, "mean over\nthe batch")
    x = end + 0.85
    ax.imshow(lam, cmap="viridis", extent=(x, x + 1, 0.2, 1.2))
    ax.add_patch(Rectangle((x, 0.2), 1, 1, fill=False, lw=0.8, edgecolor="0.2"))
    labels.append((x + 0.5, "landscape $L$, drawn\nnormalised: $\\Lambda = L / \\bar L$"))
    for centre, text in labels:
        ax.text(centre, label_y, text, ha="center", va="top", fontsize=8)
    ax.set_xlim(-0.1, x + 1.35)
    ax.set_ylim(-0.75, 1.3)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig
