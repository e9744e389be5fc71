"""Figure helpers: white backgrounds (readable in dark mode), labelled axes, a colour bar on every heat map."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

LANDSCAPE_UNIT = "importance Λ (mean = 1)"
ROW_LABEL = "pixel row"
COLUMN_LABEL = "pixel column"


def new_figure(
    nrows: int = 1, ncols: int = 1, *, width: float = 4.0, height: float = 3.4, layout: str | None = None, **kwargs
):
    """``plt.subplots`` with a white face colour and a size of ``width x height`` inches per panel.

    ``layout="constrained"`` lets matplotlib place titles, labels and colour bars so that none
    overlaps another (then do not call ``tight_layout``).
    """
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), facecolor="white", squeeze=False,
                             layout=layout, **kwargs)
    return fig, axes


def _as_array(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def heatmap(ax: Axes, array, *, title: str | None = None, vmin: float | None = None, vmax: float | None = None,
            cmap: str = "viridis", cbar_label: str | None = None, axis_labels: bool = True):
    """Draw a 2-D map ``[H, W]`` on ``ax`` with a colour bar; returns the image.

    With ``axis_labels`` the axes read "pixel row" and "pixel column" (row 0 at the top).
    """
    im = ax.imshow(_as_array(array), vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
    cbar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if cbar_label:
        cbar.set_label(cbar_label, fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    if axis_labels:
        ax.set_xlabel(COLUMN_LABEL, fontsize=8)
        ax.set_ylabel(ROW_LABEL, fontsize=8)
    ax.tick_params(labelsize=7)
    return im


def landscape_grid(maps: dict[str, object], *, shared_scale: bool = True, ncols: int = 4,
                   cbar_label: str = LANDSCAPE_UNIT, cmap: str = "viridis", suptitle: str | None = None) -> Figure:
    """One heat map per entry of ``maps`` (name -> ``[H, W]``), on a shared colour scale by default.

    Every map has labelled axes (pixel row and column) and a colour bar labelled ``cbar_label``.
    """
    arrays = {k: _as_array(v) for k, v in maps.items()}
    vmin = min(a.min() for a in arrays.values()) if shared_scale else None
    vmax = max(a.max() for a in arrays.values()) if shared_scale else None
    ncols = min(ncols, len(arrays))
    nrows = math.ceil(len(arrays) / ncols)
    fig, axes = new_figure(nrows, ncols, width=3.3, height=3.0, layout="constrained")
    for ax, (name, a) in zip(axes.flat, arrays.items()):
        heatmap(ax, a, title=name, vmin=vmin, vmax=vmax, cmap=cmap, cbar_label=cbar_label)
    for ax in list(axes.flat)[len(arrays):]:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def comparison_grid(columns: dict[str, dict[str, object]], *, cbar_label: str = LANDSCAPE_UNIT,
                    cmap: str = "viridis", suptitle: str | None = None, min_span: float = 0.2) -> Figure:
    """Maps compared within a column: ``columns[setting][method] = [H, W]`` map.

    One column per setting, one row per method; each column has its own colour scale, shared by
    its rows (so methods compare within a setting), at least ``min_span`` wide (so float noise on
    a flat map is not stretched over the whole colour bar). Every map has labelled axes (pixel
    row and column) and a colour bar labelled ``cbar_label``.
    """
    settings = list(columns)
    methods = list(dict.fromkeys(m for col in columns.values() for m in col))
    fig, axes = new_figure(len(methods), len(settings), width=2.9, height=2.6, layout="constrained")
    for j, setting in enumerate(settings):
        arrays = {m: _as_array(a) for m, a in columns[setting].items()}
        vmin = min(a.min() for a in arrays.values())
        vmax = max(a.max() for a in arrays.values())
        if vmax - vmin < min_span:
            centre = (vmax + vmin) / 2
            vmin, vmax = centre - min_span / 2, centre + min_span / 2
        for i, method in enumerate(methods):
            ax = axes[i, j]
            if method not in arrays:
                ax.axis("off")
                continue
            heatmap(ax, arrays[method], title=f"{setting}\n{method}", vmin=vmin, vmax=vmax, cmap=cmap,
                    cbar_label=cbar_label)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def ladder_curves(histories: Mapping[int, Sequence[Mapping[str, float]]]) -> Figure:
    """Validation accuracy per epoch of each run of a run-length ladder, one line per run.

    ``histories`` maps a run's length in epochs to its history, the per-epoch dicts (``epoch``,
    ``val_acc``, ...) of :attr:`pilcro_lib.train.History.records`.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError(f"histories must be a non-empty mapping of epochs -> history records, got {histories!r}")
    fig, axes = new_figure(1, 1, width=5.5, height=3.4)
    ax = axes[0, 0]
    for epochs, records in histories.items():
        ax.plot([r["epoch"] for r in records], [r["val_acc"] for r in records], marker=".", label=f"{epochs} epochs")
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Each run of the ladder, epoch by epoch")
    ax.legend()
    return fig
