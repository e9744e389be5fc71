"""Landscapes of whole architectures at initialisation: measured, tabulated and drawn.

:func:`measure_landscapes` measures the Monte-Carlo landscape of each untrained network (with
the bootstrap error of every figure and the per-pixel standard error) and, where
:func:`pilcro_lib.paths.path_count` models the network, its variance-weighted path count;
:func:`grid_ratios` adds the period-8 grid figure; :func:`landscape_table` shows the figures in
the book's one table style; :func:`shared_scale_grid` draws maps that are compared on one
colour scale with one colour bar, :func:`column_comparison` maps compared column by column, both
sized for the text column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure, FigureBase
from torch import Tensor, nn

from pilcro_lib import landscape, paths
from pilcro_lib.plotting import COLUMN_LABEL, LANDSCAPE_UNIT, ROW_LABEL, new_figure
from pilcro_lib.results import StyledTable, table_style
from pilcro_lib.utils import check_choice, check_number, check_positive_int, check_type

__all__ = [
    "COLUMN_INCHES",
    "FIGURES",
    "HEADERS",
    "Landscapes",
    "analytic_map",
    "colour_bar",
    "column_comparison",
    "grid_ratios",
    "landscape_table",
    "measure_landscapes",
    "shared_scale_grid",
]

COLUMN_INCHES = 7.8  # a figure's widest: the ~676-px text column at 100 dpi, with a margin
FIGURES = ("cv", "border_ratio", "checkerboard")  # the flatness figures given with their error
HEADERS = {  # column of a landscape frame -> its header in a table
    "cv": "cv",
    "border_ratio": "border ratio",
    "checkerboard": "checkerboard share",
    "pixel_se": "pixel s.e. (median)",
    "cv_analytic": "cv, analytic",
    "r_analytic": "r, analytic vs measured",
    "grid_ratio": "grid ratio",
    "grid_ratio_interior": "grid ratio, interior",
    "grid_ratio_analytic": "grid ratio, analytic",
    "cv_true": "cv without noise (estimate)",
    "r_ceiling": "ceiling of r",
}
DIGITS = {"pixel_se": 3, "r_analytic": 3, "r_ceiling": 3}  # decimals shown; every other column: 2
NOT_MODELLED = "not modelled"  # the analytic columns of a network path_count does not model


@dataclass
class Landscapes:
    """What :func:`measure_landscapes` measured, per network name.

    maps: the normalised Monte-Carlo mean map ``[H, W]`` (mean 1); analytic: the normalised
    variance-weighted path count ``[H, W]``, only for the networks it models; figures: a pandas
    DataFrame indexed by name with ``cv``, ``border_ratio``, ``checkerboard``, each with its
    bootstrap standard error (``cv_se``, ...; NaN with one initialisation), ``pixel_se`` (the
    median per-pixel standard error) and ``cv_analytic``, ``r_analytic`` (NaN where not
    modelled).
    """

    maps: dict[str, Tensor]
    analytic: dict[str, Tensor]
    figures: object


def analytic_map(
    builder: Callable[[], nn.Module],
    size: int,
    n_images: int,
    *,
    mode: str = "train",
    seed: int = 0,
) -> Tensor | None:
    """The normalised variance-weighted path count ``[size, size]`` of one initialisation.

    ``builder()`` is drawn under ``seed`` (the global random state is left as it was). For
    ``mode="train"`` the BatchNorms take the statistics of a batch of ``n_images`` noise
    images ``[n_images, 3, size, size]`` (:func:`pilcro_lib.landscape.with_batch_statistics`);
    for ``"eval"`` they keep their running statistics. ``None`` where
    :func:`pilcro_lib.paths.path_count` does not model the network.
    """
    check_choice("mode", mode, landscape.MODES)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder()
        noise = torch.randn(n_images, 3, size, size)
    if mode == "train":
        model = landscape.with_batch_statistics(model, noise)
    try:
        count = paths.path_count(model, (3, size, size), weighting="variance")
    except TypeError:
        return None
    return landscape.normalize(count)


def measure_landscapes(
    builders: Mapping[str, Callable[[], nn.Module]],
    size: int,
    *,
    n_inits: int,
    n_inputs: int,
    mode: str | Mapping[str, str] = "train",
    seed: int = 0,
) -> Landscapes:
    """Monte-Carlo landscapes of untrained networks on ``[3, size, size]`` noise, with errors.

    builders: name -> a function that builds a fresh, randomly initialised network. Each map is
    :func:`pilcro_lib.landscape.monte_carlo_landscape` over ``n_inits`` initialisations of
    ``n_inputs`` standard-normal images; ``mode`` (one for all, or name -> mode) is ``"train"``
    (BatchNorm with batch statistics, as in a training step) or ``"eval"``. The bootstrap and
    per-pixel errors need ``n_inits > 1`` (NaN otherwise). Returns :class:`Landscapes`.
    """
    import pandas as pd

    check_type("builders", builders, Mapping, "a mapping of name -> network builder")
    size = check_positive_int("size", size)
    n_inits = check_positive_int("n_inits", n_inits)
    n_inputs = check_positive_int("n_inputs", n_inputs)
    modes = mode if isinstance(mode, Mapping) else dict.fromkeys(builders, mode)
    for name in builders:
        if name not in modes:
            raise ValueError(f"mode has no entry for {name!r}; it has {list(modes)}")
        check_choice(f"mode[{name!r}]", modes[name], landscape.MODES)
    maps, analytic, rows = {}, {}, {}
    for name, builder in builders.items():
        maps[name], per_init = landscape.monte_carlo_landscape(
            builder,
            (3, size, size),
            n_inits=n_inits,
            n_inputs=n_inputs,
            mode=modes[name],
            seed=seed,
            return_per_init=True,
        )
        figures = landscape.flatness(maps[name])
        several = n_inits > 1
        errors = landscape.bootstrap_flatness(per_init) if several else {}
        row = {}
        for key in FIGURES:
            row[key] = figures[key]
            row[f"{key}_se"] = errors.get(key, math.nan)
        row["pixel_se"] = (
            landscape.standard_error(per_init).median().item() if several else math.nan
        )
        count = analytic_map(builder, size, n_inputs, mode=modes[name], seed=seed)
        if count is not None:
            analytic[name] = count
        row["cv_analytic"] = math.nan if count is None else landscape.cv(count).item()
        row["r_analytic"] = math.nan if count is None else landscape.pearson(count, maps[name])
        rows[name] = row
    return Landscapes(maps, analytic, pd.DataFrame.from_dict(rows, orient="index"))


def grid_ratios(maps: Mapping[str, Tensor], *, margin: int = 8, period: int = 8):
    """:func:`pilcro_lib.landscape.grid_ratio` of each map ``[H, W]``, whole and inside a margin.

    Returns a pandas DataFrame indexed by name: ``grid_ratio`` of the whole map and
    ``grid_ratio_interior`` of ``map[margin:-margin, margin:-margin]`` (a multiple of ``period``
    keeps the grid's phase).
    """
    import pandas as pd

    margin = check_positive_int("margin", margin)
    if margin % period:
        raise ValueError(
            f"margin={margin} must be a multiple of period={period} (the grid's phase)"
        )
    return pd.DataFrame(
        {
            "grid_ratio": [landscape.grid_ratio(m, period).item() for m in maps.values()],
            "grid_ratio_interior": [
                landscape.grid_ratio(m[margin:-margin, margin:-margin], period).item()
                for m in maps.values()
            ],
        },
        index=list(maps),
    )


def _with_error(value: float, error: float, digits: int) -> str:
    if math.isnan(value):
        return NOT_MODELLED
    return (
        f"{value:.{digits}f}" if math.isnan(error) else f"{value:.{digits}f} ± {error:.{digits}f}"
    )


def landscape_table(
    figures,
    columns: Sequence[str],
    *,
    label: str = "model",
    caption: str | None = None,
) -> StyledTable:
    """The landscape figures of :func:`measure_landscapes` (and :func:`grid_ratios`) as a table.

    figures: a DataFrame indexed by name; columns: which of its columns to show (keys of
    :data:`HEADERS`), in order. A column with a ``<column>_se`` companion reads
    ``value ± error``; NaN reads "not modelled"; ``label`` heads the names' column.
    """
    import pandas as pd

    unknown = [c for c in columns if c not in HEADERS or c not in figures.columns]
    if unknown:
        raise ValueError(
            f"columns {unknown} are not landscape columns of figures; it has "
            f"{list(figures.columns)} and the table knows {list(HEADERS)}"
        )
    shown = pd.DataFrame({label: [str(name) for name in figures.index]})
    for column in columns:
        errors = figures.get(f"{column}_se", pd.Series(math.nan, index=figures.index))
        digits = DIGITS.get(column, 2)
        shown[HEADERS[column]] = [
            _with_error(float(v), float(e), digits) for v, e in zip(figures[column], errors)
        ]
    return table_style(shown, caption=caption)


def colour_bar(fig: FigureBase, image, ax, label: str | None = None, **kwargs):
    """A colour bar for ``image`` beside ``ax`` (one Axes or an array of them), its ticks and
    ``label`` at 8 pt; ``kwargs`` go to ``fig.colorbar``. Returns the colour bar."""
    cbar = fig.colorbar(image, ax=ax, **kwargs)
    if label:
        cbar.set_label(label, fontsize=8)
    cbar.ax.tick_params(labelsize=8)
    return cbar


def shared_scale_grid(
    maps: Mapping[str, object],
    *,
    ncols: int = 3,
    width: float = COLUMN_INCHES,
    quantile: float | None = None,
    cbar_label: str = LANDSCAPE_UNIT,
    cmap: str = "viridis",
    suptitle: str | None = None,
    axis_labels: tuple[str, str] = (ROW_LABEL, COLUMN_LABEL),
) -> Figure:
    """Maps ``[H, W]`` that are compared, on one colour scale with one colour bar, ``width`` wide.

    The scale runs from the smallest to the largest value of all maps, or, with ``quantile``
    (e.g. 0.995), up to that quantile of all their pixels pooled: larger values are drawn in the
    top colour and the colour bar says so with an arrow. At most ``ncols`` (up to 3) maps a row;
    the outer panels' axes are labelled ``axis_labels`` (rows, columns).
    """
    check_type("maps", maps, Mapping, "a mapping of name -> [H, W] map")
    if not maps:
        raise ValueError("maps is empty: give at least one [H, W] map")
    ncols = min(check_positive_int("ncols", ncols, maximum=3), len(maps))
    width = check_number("width", width, minimum=1.0)
    arrays = {
        k: v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v)
        for k, v in maps.items()
    }
    pooled = np.concatenate([a.ravel() for a in arrays.values()])
    vmin, top = float(pooled.min()), float(pooled.max())
    vmax = top
    if quantile is not None:
        vmax = float(
            np.quantile(pooled, check_number("quantile", quantile, minimum=0.5, maximum=1.0))
        )
    nrows = math.ceil(len(arrays) / ncols)
    panel = (width - 1.2) / ncols  # the maps' side: the width less the colour bar and labels
    fig, axes = new_figure(
        nrows,
        ncols,
        width=width / ncols,
        height=panel + 0.35 + (0.3 if suptitle else 0) / nrows,
        layout="constrained",
    )
    names = list(arrays)
    for index, ax in enumerate(axes.flat):
        if index >= len(names):  # an empty place in the last row
            ax.axis("off")
            continue
        image = ax.imshow(
            arrays[names[index]], vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest"
        )
        ax.set_title(names[index], fontsize=9)
        ax.tick_params(labelsize=8)
        if index % ncols == 0:
            ax.set_ylabel(axis_labels[0], fontsize=8)
        if index + ncols >= len(names):  # nothing below it
            ax.set_xlabel(axis_labels[1], fontsize=8)
    extend = "max" if vmax < top else "neither"
    colour_bar(fig, image, axes, cbar_label, fraction=0.04, aspect=30, extend=extend)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def column_comparison(
    columns: Mapping[str, Mapping[str, object]],
    *,
    width: float = COLUMN_INCHES,
    min_span: float = 0.2,
    cbar_label: str = LANDSCAPE_UNIT,
    cmap: str = "viridis",
    suptitle: str | None = None,
) -> Figure:
    """Maps compared within a column, ``columns[setting][method] = [H, W]``, at most ``width``
    wide (and at most 3 inches a column).

    One column per setting (at most 3, named above it), one row per method (named above each
    map; keep the names short). Each column is one group: its maps
    share a colour scale, at least ``min_span`` wide (so that float noise on a flat map is not
    stretched over the whole scale), and one colour bar beside the column.
    """
    check_type("columns", columns, Mapping, "a mapping of setting -> {method: [H, W] map}")
    if not 1 <= len(columns) <= 3:
        raise ValueError(f"columns must hold 1 to 3 settings, got {len(columns)}")
    width = check_number("width", width, minimum=1.0)
    min_span = check_number("min_span", min_span, minimum=0.0)
    methods = list(dict.fromkeys(m for column in columns.values() for m in column))
    column = min(width / len(columns), 3.0)  # inches per column
    side = column - 0.9  # a map's side: the column less its colour bar and labels
    fig, axes = new_figure(
        len(methods),
        len(columns),
        width=column,
        height=side + 0.55 + (0.3 if suptitle else 0) / len(methods),
        layout="constrained",
    )
    for j, (setting, maps) in enumerate(columns.items()):
        arrays = {
            m: a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)
            for m, a in maps.items()
        }
        vmin = min(float(a.min()) for a in arrays.values())
        vmax = max(float(a.max()) for a in arrays.values())
        if vmax - vmin < min_span:
            centre = (vmax + vmin) / 2
            vmin, vmax = centre - min_span / 2, centre + min_span / 2
        image = None
        for i, method in enumerate(methods):
            ax = axes[i, j]
            if method not in arrays:
                ax.axis("off")
                continue
            image = ax.imshow(
                arrays[method], vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest"
            )
            ax.set_title(f"{setting}\n{method}" if i == 0 else method, fontsize=9)
            ax.tick_params(labelsize=8)
            if j == 0:
                ax.set_ylabel(ROW_LABEL, fontsize=8)
            if i == len(methods) - 1:
                ax.set_xlabel(COLUMN_LABEL, fontsize=8)
        label = cbar_label if j == len(columns) - 1 else None
        colour_bar(fig, image, axes[:, j], label, fraction=0.08, aspect=25)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig
