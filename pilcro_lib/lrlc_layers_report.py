"""Tables and figures of the LRLC layers: parameter counts, a trained layer, what the layers cost.

:func:`example_layers` builds the layers the chapter compares and :func:`parameter_table` sets
their parameter counts against closed forms; :func:`ladder_display` shows a run-length ladder;
:func:`combining_figure`, :func:`mixing_figure` and :func:`kernel_figure` draw what a trained
LRLC layer learned (its combining weights ``[H_out, W_out, K]``, its bases and per-position
kernels); :func:`route_ratios` and :func:`cost_display` read the table of
:func:`pilcro_lib.measure.benchmark_layers`. Every table is in the book's one style
(:func:`pilcro_lib.results.table_style`); every figure fits the text column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from torch import Tensor, nn

from pilcro_lib.init_report import COLUMN_INCHES, colour_bar, shared_scale_grid
from pilcro_lib.layers import CoordConv2d, LocallyConnected2d, LowRankLocallyConnected2d
from pilcro_lib.lrlc_experiments import combining_entropy
from pilcro_lib.models import count_parameters
from pilcro_lib.plotting import heatmap
from pilcro_lib.results import StyledTable, table_style
from pilcro_lib.utils import check_positive_int, check_tensor, check_type

__all__ = [
    "OUTPUT_AXES",
    "combining_figure",
    "cost_display",
    "example_layers",
    "kernel_figure",
    "kernel_mosaic",
    "ladder_display",
    "mixing_figure",
    "parameter_table",
    "route_ratios",
]

OUTPUT_AXES = ("output row", "output column")  # the axes of a map over a layer's outputs


def example_layers(
    channels: int, size: int, ranks: Sequence[int] = (1, 2, 4, 8, 16), *, rank: int = 4
) -> dict[str, nn.Module]:
    """The 3x3 valid ``channels -> channels`` layers on ``[channels, size, size]`` inputs, by name.

    ``conv (no bias)``, ``CoordConv (no bias)``, ``LC (per-position bias)``, ``LRLC K=k row+col``
    for each of ``ranks`` (no channel bias), and at rank ``rank`` ``LRLC K=<rank> free`` and
    ``LRLC K=<rank> input-dependent``.
    """
    c = check_positive_int("channels", channels)
    size = check_positive_int("size", size, minimum=3)
    rank = check_positive_int("rank", rank)
    layers: dict[str, nn.Module] = {
        "conv (no bias)": nn.Conv2d(c, c, 3, bias=False),
        "CoordConv (no bias)": CoordConv2d(c, c, 3, bias=False),
        "LC (per-position bias)": LocallyConnected2d(c, c, 3, size),
    }
    for k in ranks:
        k = check_positive_int("ranks", k)
        layers[f"LRLC K={k} row+col"] = LowRankLocallyConnected2d(c, c, 3, size, k, bias=False)
    for combining, label in (("free", "free"), ("input", "input-dependent")):
        layers[f"LRLC K={rank} {label}"] = LowRankLocallyConnected2d(
            c, c, 3, size, rank, combining=combining, bias=False
        )
    return layers


def parameter_table(
    closed_forms: Callable[[int, int], Mapping[str, int]],
    channels: int,
    sizes: Sequence[int] = (28, 32),
    ranks: Sequence[int] = (1, 2, 4, 8, 16),
) -> StyledTable:
    """The parameter count of every :func:`example_layers` layer beside its closed form.

    ``closed_forms(h_out, w_out)`` maps layer names to their count in closed form (a layer it
    leaves out reads "–"). One row per input size and layer: ``input``, ``layer``,
    ``parameters`` (counted on the built layer), ``closed form`` and ``vs conv`` (the count
    over the convolution's, two decimals).
    """
    import pandas as pd

    rows = []
    for size in sizes:
        closed = closed_forms(size - 2, size - 2)
        layers = example_layers(channels, size, ranks)
        conv = count_parameters(layers["conv (no bias)"])
        for name, layer in layers.items():
            count = count_parameters(layer)
            rows.append(
                {
                    "input": f"{size}x{size}",
                    "layer": name,
                    "parameters": count,
                    "closed form": closed.get(name, "–"),
                    "vs conv": count / conv,
                }
            )
        del layers
    return table_style(pd.DataFrame(rows), {"vs conv": "{:.2f}"}, left=["input", "layer"])


def ladder_display(ladder) -> StyledTable:
    """A run-length ladder (:func:`pilcro_lib.protocol.ladder_table`, any extra columns kept) as a
    table: validation accuracy in % and its gain in points (one decimal), other columns to three
    decimals."""
    import pandas as pd

    check_type("ladder", ladder, pd.DataFrame, "a ladder_table DataFrame")
    shown = ladder.reset_index()
    shown["validation accuracy"] = 100 * shown["validation accuracy"]
    shown["gain"] = 100 * shown["gain"]
    shown = shown.rename(
        columns={"validation accuracy": "validation accuracy (%)", "gain": "gain (points)"}
    )
    formats = {
        column: "{:.3f}" for column in shown.columns[3:] if column not in ("steps", "epochs")
    }
    formats["validation accuracy (%)"] = "{:.1f}"
    formats["gain (points)"] = lambda v: "–" if math.isnan(v) else f"{v:+.1f}"
    return table_style(shown, formats)


def combining_figure(alpha: Tensor, *, width: float = 5.6) -> Figure:
    """The combining weight of each basis ``alpha[..., k]`` over the output positions, from
    ``alpha`` ``[H_out, W_out, K]``: one map per basis, two a row, on one colour scale with one
    colour bar."""
    check_tensor("alpha", alpha, ndim=3, dims="[H_out, W_out, K]", dtype_kind="float")
    maps = {f"basis {k}": alpha[..., k] for k in range(alpha.shape[-1])}
    return shared_scale_grid(
        maps,
        ncols=min(2, len(maps)),
        width=width,
        cbar_label="combining weight",
        axis_labels=OUTPUT_AXES,
    )


def mixing_figure(alpha: Tensor, *, width: float = COLUMN_INCHES) -> Figure:
    """Which basis dominates at each output position, and how evenly each position mixes the
    bases (entropy over ``log K``: 0 one basis, 1 uniform), from ``alpha`` ``[H_out, W_out, K]``."""
    check_tensor("alpha", alpha, ndim=3, dims="[H_out, W_out, K]", dtype_kind="float")
    rank = alpha.shape[-1]
    fig, axes = plt.subplots(
        1, 2, figsize=(width, width / 2.2), facecolor="white", layout="constrained"
    )
    colours = ListedColormap(plt.get_cmap("tab10").colors[:rank])
    image = axes[0].imshow(
        alpha.argmax(-1).numpy(),
        cmap=colours,
        norm=BoundaryNorm(np.arange(rank + 1) - 0.5, rank),
        interpolation="nearest",
    )
    colour_bar(fig, image, axes[0], "basis", ticks=range(rank), fraction=0.046, pad=0.04)
    axes[0].set_title("dominant basis", fontsize=9)
    heatmap(
        axes[1],
        combining_entropy(alpha),
        title="mixing entropy / log K",
        vmin=0,
        vmax=1,
        cbar_label="0: one basis, 1: uniform",
    )
    for ax in axes:
        ax.set_ylabel(OUTPUT_AXES[0], fontsize=8)
        ax.set_xlabel(OUTPUT_AXES[1], fontsize=8)
        ax.tick_params(labelsize=8)
    return fig


def kernel_mosaic(tiles: Tensor, gap: int = 1) -> Tensor:
    """Kernels ``[n, m, kh, kw]`` (one per sampled output position) tiled into one image
    ``[n * (kh + gap) - gap, m * (kw + gap) - gap]``, with NaN in the gaps."""
    check_tensor("tiles", tiles, ndim=4, dims="[n, m, kh, kw]", dtype_kind="float")
    gap = check_positive_int("gap", gap, minimum=0)
    n, m, kh, kw = tiles.shape
    mosaic = torch.full((n * (kh + gap) - gap, m * (kw + gap) - gap), float("nan"))
    for i in range(n):
        for j in range(m):
            top, left = i * (kh + gap), j * (kw + gap)
            mosaic[top : top + kh, left : left + kw] = tiles[i, j]
    return mosaic


def kernel_figure(
    bases: Tensor, tiles: Tensor, *, step: int, filter_index: int, width: float = COLUMN_INCHES
) -> Figure:
    """One output filter of a trained LRLC layer: its ``K`` bases ``[K, kh, kw]`` (left, two a
    row) and its per-position kernel at every ``step``-th output row and column, ``tiles``
    ``[n, m, kh, kw]`` (right, :func:`kernel_mosaic`); one colour scale, symmetric about 0, and
    one colour bar for both."""
    check_tensor("bases", bases, ndim=3, dims="[K, kh, kw]", dtype_kind="float")
    check_tensor("tiles", tiles, ndim=4, dims="[n, m, kh, kw]", dtype_kind="float")
    step = check_positive_int("step", step)
    lim = float(max(bases.abs().max(), tiles.abs().max()))
    style = dict(cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    rank, kh, kw = bases.shape
    rows = math.ceil(rank / 2)
    fig = plt.figure(figsize=(width, width * 0.5), facecolor="white", layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1.5])
    axes = left.subplots(rows, 2, squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= rank:
            ax.axis("off")
            continue
        ax.imshow(bases[k].numpy(), **style)
        ax.set_title(f"basis {k}", fontsize=9)
        ax.set_xticks(range(kw))
        ax.set_yticks(range(kh))
        ax.tick_params(labelsize=8)
        if k % 2 == 0:
            ax.set_ylabel("kernel row", fontsize=8)
        if k >= rank - 2:
            ax.set_xlabel("kernel column", fontsize=8)
    left.suptitle(f"filter {filter_index}: its bases", fontsize=9)
    ax = right.subplots()
    n, m = tiles.shape[:2]
    image = ax.imshow(kernel_mosaic(tiles).numpy(), **style)
    ax.set_xticks(np.arange(m) * (kw + 1) + kw // 2, [str(step * j) for j in range(m)])
    ax.set_yticks(np.arange(n) * (kh + 1) + kh // 2, [str(step * i) for i in range(n)])
    ax.set_xlabel(OUTPUT_AXES[1], fontsize=8)
    ax.set_ylabel(OUTPUT_AXES[0], fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_title(f"its kernel at every {step}th output position", fontsize=9)
    colour_bar(right, image, ax, "weight", fraction=0.046, pad=0.04)
    return fig


def route_ratios(table):
    """LRLC time over ``K`` convolutions' time, per input and rank, from a
    :func:`pilcro_lib.measure.benchmark_layers` table run with every route.

    Returns a DataFrame indexed by (``input``, ``K``) with the columns ``as picked`` (the
    layer as it runs by itself), ``conv route``, ``kernel route`` and ``route picked``.
    """
    lrlc = table[table.layer.str.startswith("lrlc K=")]
    way = lrlc.layer.str.extract(r"(conv route|kernel route)$", expand=False).fillna("as picked")
    ratios = lrlc.assign(way=way, ratio=lrlc.time_vs_conv / lrlc["rank"]).pivot_table(
        index=["input", "rank"], columns="way", values="ratio"
    )
    picked = lrlc[way == "as picked"].set_index(["input", "rank"]).route
    ratios = ratios[["as picked", "conv route", "kernel route"]]
    ratios = ratios.assign(**{"route picked": picked}).rename_axis(columns=None)
    return ratios.rename_axis(index=["input", "K"])


COST_HEADERS = {  # benchmark_layers column -> header, format
    "input": ("input", None),
    "layer": ("layer", None),
    "rank": ("K", "{:d}"),
    "route": ("route", None),
    "params": ("parameters", "{:,d}"),
    "time_ms": ("time (ms)", "{:.1f}"),
    "time_vs_conv": ("time / conv", "{:.2f}"),
    "peak_MB": ("peak memory (MB)", "{:.1f}"),
    "peak_vs_conv": ("memory / conv", "{:.2f}"),
}


def cost_display(table) -> StyledTable:
    """A :func:`pilcro_lib.measure.benchmark_layers` table in the book's style: readable headers,
    times in ms to one decimal, ratios to two (the LC patch-buffer column is left out)."""
    shown = table[[c for c in COST_HEADERS if c in table.columns]]
    formats = {COST_HEADERS[c][0]: COST_HEADERS[c][1] for c in shown if COST_HEADERS[c][1]}
    shown = shown.rename(columns={c: COST_HEADERS[c][0] for c in shown})
    return table_style(shown, formats, left=["input", "layer", "route"])
