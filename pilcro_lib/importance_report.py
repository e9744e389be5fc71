"""Figures and tables of importance landscapes, sized for the book's text column.

:func:`shared_maps` draws maps that are compared on one colour scale with one colour bar;
:func:`maps_row` draws up to three maps of different quantities, each with its own colour bar;
:func:`flatness_frame` and :func:`flatness_display` tabulate the flatness figures of
:func:`pilcro_lib.landscape.flatness`, one row per map. Fonts are 8 pt or larger.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import torch

from pilcro_lib.landscape import FLATNESS_FIGURES, flatness
from pilcro_lib.plotting import COLUMN_LABEL, LANDSCAPE_UNIT, ROW_LABEL, new_figure
from pilcro_lib.results import StyledTable, format_number, table_style

__all__ = [
    "FONT",
    "captum_landscape",
    "MAX_PANELS_A_ROW",
    "flatness_display",
    "flatness_frame",
    "maps_row",
    "shared_maps",
]

FONT = 8  # points: the smallest text of a figure
MAX_PANELS_A_ROW = 3


def _array(name: str, value) -> np.ndarray:
    array = value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else value
    array = np.asarray(array, dtype=float)
    if array.ndim != 2 or not array.size:
        raise ValueError(f"maps[{name!r}] must be a non-empty [H, W] map, got shape {array.shape}")
    return array


def _draw(ax, array: np.ndarray, title: str, *, vmin=None, vmax=None, cmap="viridis"):
    image = ax.imshow(array, vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
    ax.set_title(title, fontsize=FONT + 1)
    ax.set_xlabel(COLUMN_LABEL, fontsize=FONT)
    ax.set_ylabel(ROW_LABEL, fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    return image


def _colour_bar(fig, image, axes, label: str) -> None:
    bar = fig.colorbar(image, ax=axes, fraction=0.046, pad=0.04, shrink=0.9)
    bar.set_label(label, fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT)


def shared_maps(
    maps: Mapping[str, object],
    *,
    ncols: int = 2,
    cbar_label: str = LANDSCAPE_UNIT,
    cmap: str = "viridis",
    panel: float = 3.2,
    suptitle: str | None = None,
):
    """Maps that are compared (name -> ``[H, W]``), on one colour scale with one colour bar.

    ``ncols`` (at most :data:`MAX_PANELS_A_ROW`) panels a row, each ``panel`` inches wide; the
    colour bar spans the figure's right side. Every map has labelled axes (pixel row, column).
    """
    if not isinstance(maps, Mapping) or not maps:
        raise ValueError(f"maps must be a non-empty mapping name -> [H, W] map, got {maps!r}")
    if not isinstance(ncols, int) or not 1 <= ncols <= MAX_PANELS_A_ROW:
        raise ValueError(f"ncols must be 1 to {MAX_PANELS_A_ROW} panels a row, got {ncols!r}")
    arrays = {name: _array(name, m) for name, m in maps.items()}
    vmin = min(a.min() for a in arrays.values())
    vmax = max(a.max() for a in arrays.values())
    ncols = min(ncols, len(arrays))
    nrows = math.ceil(len(arrays) / ncols)
    fig, axes = new_figure(nrows, ncols, width=panel, height=0.9 * panel, layout="constrained")
    for ax, (name, array) in zip(axes.flat, arrays.items()):
        image = _draw(ax, array, name, vmin=vmin, vmax=vmax, cmap=cmap)
    for ax in list(axes.flat)[len(arrays) :]:
        ax.axis("off")
    _colour_bar(fig, image, axes, cbar_label)
    if suptitle:
        fig.suptitle(suptitle, fontsize=FONT + 2)
    return fig


def maps_row(panels: Mapping[str, tuple[object, str, str]], *, panel: float = 2.7):
    """Up to three maps of different quantities side by side, each with its own colour bar.

    panels: title -> (``[H, W]`` map, colour-bar label, colour map name); ``panel`` inches a map.
    """
    if not isinstance(panels, Mapping) or not 1 <= len(panels) <= MAX_PANELS_A_ROW:
        raise ValueError(
            f"panels must map 1 to {MAX_PANELS_A_ROW} titles to (map, label, cmap), got {panels!r}"
        )
    fig, axes = new_figure(1, len(panels), width=panel, height=0.9 * panel, layout="constrained")
    for ax, (title, (array, label, cmap)) in zip(axes.flat, panels.items()):
        image = _draw(ax, _array(title, array), title, cmap=cmap)
        _colour_bar(fig, image, ax, label)
    return fig


def flatness_frame(maps: Mapping[str, object]):
    """The flatness figures (:func:`pilcro_lib.landscape.flatness`) of each map
    (name -> ``[H, W]``): one row per map, one column per figure, named in words
    (``border ratio``, not ``border_ratio``)."""
    import pandas as pd

    if not isinstance(maps, Mapping) or not maps:
        raise ValueError(f"maps must be a non-empty mapping name -> [H, W] map, got {maps!r}")
    rows = {
        name: flatness(torch.as_tensor(_array(name, m), dtype=torch.float64))
        for name, m in maps.items()
    }
    frame = pd.DataFrame.from_dict(rows, orient="index")[list(FLATNESS_FIGURES)]
    return frame.rename(columns=lambda figure: figure.replace("_", " ")).rename_axis("map")


def flatness_display(frame, *, digits: int = 3, caption: str | None = None) -> StyledTable:
    """A :func:`flatness_frame` in the book's table style: a first column ``map``, each figure
    to ``digits`` significant digits."""
    shown = frame.reset_index()
    formats = {c: (lambda v: format_number(v, digits=digits)) for c in frame.columns}
    return table_style(shown, formats, caption=caption)


def captum_landscape(forward, images: torch.Tensor, **kwargs) -> torch.Tensor:
    """Captum's ``Saliency(forward).attribute(images, abs=True, **kwargs)``, the per-image
    absolute input gradient ``[N, C, H, W]``, summed over channels and averaged over the images:
    a landscape ``[H, W]`` (float64) computed independently of :mod:`pilcro_lib.landscape`.

    forward: a model, or a function of the images (and ``additional_forward_args``) returning one
    score per image; kwargs: Captum's ``target``, ``additional_forward_args``. Needs ``captum``.
    """
    with warnings.catch_warnings():  # captum imports tqdm.auto, which warns without widgets
        warnings.filterwarnings("ignore", message="IProgress not found")
        from captum.attr import Saliency

    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a [N, C, H, W] tensor, got {images!r:.80}")
    attribution = Saliency(forward).attribute(
        images.clone().requires_grad_(True), abs=True, **kwargs
    )
    return attribution.sum(1).mean(0).double()
