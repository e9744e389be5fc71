"""The path-count chapters' measurements, tables and figures (chapters 2 and 3).

Analytic maps against Monte-Carlo maps over several settings (:func:`compare_settings`),
power-law fits of the L1 and squared landscapes with their spread over blocks of
initialisations (:func:`power_law_table`), the exact checks of the closed forms and of
floor-mode pooling, the running ``cv`` of Monte-Carlo means, a picture of path counting
(:func:`path_graph`) and map grids drawn for the text column (:func:`map_grid`). Every map is
``[H, W]``; "normalised" means divided by its mean (:func:`pilcro_lib.landscape.normalize`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor, nn

from pilcro_lib import landscape, paths
from pilcro_lib.plotting import COLUMN_LABEL, LANDSCAPE_UNIT, ROW_LABEL, new_figure
from pilcro_lib.results import StyledTable, missing, table_style
from pilcro_lib.utils import check_choice, check_map, check_positive_int

__all__ = [
    "GAUSSIAN_RATIO",
    "MAX_COLUMNS",
    "PANEL_INCHES",
    "block_asymmetry",
    "closed_form_checks",
    "compare_settings",
    "fixed_table",
    "floor_mode_table",
    "map_grid",
    "path_graph",
    "paths_from",
    "power_law_display",
    "power_law_figure",
    "power_law_fits",
    "power_law_table",
    "running_cv_curves",
    "running_cv_figure",
    "stride_edge_table",
]

GAUSSIAN_RATIO = math.sqrt(2 / math.pi)  # E|Z| / sqrt(E[Z^2]) for a zero-mean Gaussian
MAX_COLUMNS = 3  # panels a row in the text column
PANEL_INCHES = 2.2  # side of one map panel (three a row and a colour bar fit 8 inches)
FONT = 9  # points, titles and labels
TICK_FONT = 8  # points, tick labels


# --- analytic against Monte Carlo, setting by setting -----------------------------------------


def compare_settings(
    settings: Mapping[str, Callable | tuple[Callable, Mapping[str, Any]]],
    input_size: tuple[int, int, int],
    *,
    n_inits: int,
    seed: int = 0,
    figures: Mapping[str, Callable[[Tensor], Any]] | None = None,
    label: str = "setting",
    **mc: Any,
):
    """:func:`pilcro_lib.paths.compare_with_monte_carlo` for each setting; maps and a table.

    settings: name -> ``build`` (a function returning a fresh model), or name ->
    ``(build, options)`` where ``options`` overrides ``input_size`` or any Monte-Carlo keyword
    (``inputs``, ``n_inputs``...) for that setting. ``mc`` goes to every comparison.
    figures: figure name -> function of a normalised map ``[H, W]`` (default ``{"cv": cv}``).
    Returns ``(maps, table)``: ``maps[name][method]`` the normalised ``[H, W]`` maps
    (``"path count"``, ``"second moment"`` when computed, ``"Monte Carlo"``); ``table`` a
    DataFrame indexed by ``label`` with the columns ``"r, <method>"`` (Pearson correlation of
    each analytic map with the Monte-Carlo map, NaN for a flat map) and
    ``"<figure>, <method>"`` for every map.
    """
    import pandas as pd

    figures = {"cv": landscape.cv} if figures is None else dict(figures)
    if not settings:
        raise ValueError("settings must name at least one setting, got none")
    maps, rows = {}, []
    for name, setting in settings.items():
        build, options = setting if isinstance(setting, tuple) else (setting, {})
        options = {"input_size": input_size, **mc, **options}
        size = options.pop("input_size")
        comparison = paths.compare_with_monte_carlo(
            build, size, n_inits=n_inits, seed=seed, **options
        )
        row = {label: name}
        row.update({f"r, {method}": r for method, r in comparison.r.items()})
        for figure, measure in figures.items():
            for method, lam in comparison.maps.items():
                row[f"{figure}, {method}"] = float(measure(lam))
        maps[name] = comparison.maps
        rows.append(row)
    return maps, pd.DataFrame(rows).set_index(label)


def block_asymmetry(lam: Tensor) -> float:
    """Left/right :func:`~pilcro_lib.landscape.asymmetry` of the 2x2 block means of ``[H, W]``.

    Averaging 2x2 blocks removes a period-2 pattern, so what remains is a tilt of the map. NaN
    when a side is odd (the blocks do not tile the map).
    """
    lam = check_map("lam", lam)
    if lam.dim() != 2:
        raise ValueError(f"lam must be one map [H, W], got shape {tuple(lam.shape)}")
    if lam.shape[0] % 2 or lam.shape[1] % 2:
        return math.nan
    return landscape.asymmetry(F.avg_pool2d(lam[None, None], 2)[0, 0]).item()


# --- exact checks ------------------------------------------------------------------------------

PAD_OF = {"valid": lambda k: 0, "same": lambda k: (k - 1) // 2, "full": lambda k: k - 1}


def closed_form_checks(
    depths: Sequence[int],
    paddings: Sequence[tuple[str, str]],
    side: int,
    kernel_size: int = 3,
):
    """Each closed form of the chapter against :func:`pilcro_lib.paths.path_count`, exactly.

    For every depth ``L`` and ``(padding, padding_mode)`` (padding ``valid``, ``same`` or
    ``full``): the path count ``N`` ``[side, side]`` of ``L`` stacked convs, the 1-D profile
    ``n`` (the closed form for ``valid``, the dynamic programme otherwise). Returns a DataFrame
    indexed by (depth, padding): whether ``N`` equals the outer product of ``n`` with itself,
    whether ``N`` is ``k^(2L)`` everywhere, and ``N``'s smallest and largest values.
    """
    import pandas as pd

    k = check_positive_int("kernel_size", kernel_size)
    rows = []
    for depth in depths:
        for padding, mode in paddings:
            check_choice("padding", padding, tuple(PAD_OF))
            net = paths.toy_net(depth, kernel_size=k, padding=PAD_OF[padding](k), padding_mode=mode)
            count = paths.path_count(net, (1, side, side))
            if padding == "valid":
                n = paths.valid_profile_closed_form(side, k, depth)
            else:
                n = paths.conv_profile_1d(side, k, depth, padding=padding, padding_mode=mode)
            rows.append(
                {
                    "depth": depth,
                    "padding": f"{padding}, {mode}",
                    "N = outer(n, n)": torch.equal(count, torch.outer(n, n)),
                    "N = k^(2L) everywhere": bool(torch.all(count == float(k) ** (2 * depth))),
                    "smallest N": int(count.min()),
                    "largest N": int(count.max()),
                }
            )
    return pd.DataFrame(rows).set_index(["depth", "padding"])


def floor_mode_table(depth: int, cases: Mapping[str, tuple[int, bool]]):
    """Path counts of ``depth`` [3x3 conv, ReLU, 2x2 max pooling] blocks, case by case.

    cases: name -> ``(side, ceil_mode)`` of a square input and of the pooling. Returns
    ``(maps, table)``: ``maps[name]`` the normalised variance-weighted path count
    ``[side, side]``; ``table`` indexed by ``input`` with the map sides after each pooling
    (``"28 → 14 → 7 → 3 → 1"``) and the mean of the map over its top-left and bottom-right
    quarters (1 for a map with no tilt).
    """
    import pandas as pd

    depth = check_positive_int("depth", depth)
    maps, rows = {}, []
    for name, (side, ceil) in cases.items():
        net = paths.toy_net(
            depth, padding=1, relu=True, pool=lambda c=ceil: nn.MaxPool2d(2, ceil_mode=c)
        )
        sides = [side]
        for _ in range(depth):
            sides.append(
                nn.MaxPool2d(2, ceil_mode=ceil)(torch.zeros(1, sides[-1], sides[-1])).shape[-1]
            )
        count = landscape.normalize(paths.path_count(net, (1, side, side), weighting="variance"))
        half = side // 2
        maps[name] = count
        rows.append(
            {
                "input": name,
                "map sides": " → ".join(map(str, sides)),
                "top-left quarter": count[:half, :half].mean().item(),
                "bottom-right quarter": count[half:, half:].mean().item(),
            }
        )
    return maps, pd.DataFrame(rows).set_index("input")


def stride_edge_table(layers: Sequence[int], sides: Sequence[int]):
    """Where stride-2 3x3 convs (zero padding 1) read the first and last columns of the input.

    For ``L`` in ``layers`` stride-2 layers and each square input side: the number of paths
    summed over the first and over the last column, the mean of the normalised path count over
    the left and the right half, its left/right asymmetry and that of its 2x2 block means
    (:func:`block_asymmetry`, NaN for an odd side). Returns a DataFrame indexed by
    (stride-2 layers, input).
    """
    import pandas as pd

    rows = []
    for depth in layers:
        for n in sides:
            count = paths.path_count(paths.toy_net(depth, stride=2), (1, n, n))
            lam = landscape.normalize(count)
            rows.append(
                {
                    "stride-2 layers": depth,
                    "input": f"{n}x{n}",
                    "paths, first column": int(count[:, 0].sum()),
                    "paths, last column": int(count[:, -1].sum()),
                    "left half": lam[:, : n // 2].mean().item(),
                    "right half": lam[:, -(n // 2) :].mean().item(),
                    "asymmetry": landscape.asymmetry(lam).item(),
                    "asymmetry, 2x2 blocks": block_asymmetry(lam),
                }
            )
    return pd.DataFrame(rows).set_index(["stride-2 layers", "input"])


# --- the L1 landscape against the path count: power laws in blocks of initialisations -----------


def power_law_fits(count: Tensor, per_init: Tensor, n_blocks: int) -> dict[str, float]:
    """Exponents ``p`` of ``L1 ~ N^p`` and ``squared ~ N^p``, pooled and over blocks of inits.

    count: the path count ``[H, W]``; per_init: ``|g|`` maps ``[n, H, W]``, one per
    initialisation and input (``n`` a multiple of ``n_blocks``), so that the L1 landscape is
    their mean and the squared landscape the mean of their squares. Each landscape is fitted
    with :func:`~pilcro_lib.landscape.power_law_fit` on all ``n`` maps (``"p, L1"``,
    ``"r, L1"``...) and on each of ``n_blocks`` consecutive blocks: ``"SE p, L1"`` is the
    standard deviation of the block exponents over ``sqrt(n_blocks)`` (the standard error of the
    pooled fit), ``"min p, L1"`` and ``"max p, L1"`` their range. ``"ratio min"``,
    ``"ratio median"``, ``"ratio max"`` summarise ``E|g| / sqrt(E[g^2])`` over the pixels
    (:data:`GAUSSIAN_RATIO` for a Gaussian gradient).
    """
    n_blocks = check_positive_int("n_blocks", n_blocks, minimum=2)
    if not isinstance(per_init, Tensor) or per_init.dim() != 3:
        raise ValueError(f"per_init must be a tensor [n, H, W] of |g| maps, got {per_init!r}")
    n = per_init.shape[0]
    if n % n_blocks:
        raise ValueError(f"per_init holds {n} maps, not a multiple of n_blocks={n_blocks}")
    per_init = per_init.detach().double().abs()
    blocks = per_init.view(n_blocks, n // n_blocks, *per_init.shape[1:])
    moments = {"L1": lambda m: m.mean(0), "squared": lambda m: m.pow(2).mean(0)}
    fits: dict[str, float] = {}
    for kind, moment in moments.items():
        fits[f"p, {kind}"], fits[f"r, {kind}"] = landscape.power_law_fit(count, moment(per_init))
        block_p = torch.tensor([landscape.power_law_fit(count, moment(b))[0] for b in blocks])
        fits[f"SE p, {kind}"] = block_p.std().item() / math.sqrt(n_blocks)
        fits[f"min p, {kind}"] = block_p.min().item()
        fits[f"max p, {kind}"] = block_p.max().item()
    ratio = moments["L1"](per_init) / moments["squared"](per_init).sqrt()
    fits.update(
        {
            "ratio min": ratio.min().item(),
            "ratio median": ratio.median().item(),
            "ratio max": ratio.max().item(),
        }
    )
    return fits


def power_law_table(
    builds: Mapping[tuple, Callable],
    input_size: tuple[int, int, int],
    *,
    n_inits: int,
    n_blocks: int,
    seed: int = 0,
    names: Sequence[str] = ("padding", "depth"),
):
    """:func:`power_law_fits` of linear nets, from ``n_blocks`` blocks of ``n_inits`` inits.

    builds: key (a tuple, one entry per name of ``names``) -> ``build`` of a linear net, whose
    input gradient does not depend on the input: one noise image per initialisation gives its
    ``|g|`` map (:func:`~pilcro_lib.landscape.monte_carlo_landscape` with ``n_inputs=1``; block
    ``b`` holds the inits ``seed + b n_inits`` onwards). Returns ``(table, clouds)``: a
    DataFrame indexed by ``names`` with the columns of :func:`power_law_fits`, and
    ``clouds[key] = (N, L1, squared)``, three normalised maps ``[H, W]`` for
    :func:`power_law_figure`.
    """
    import pandas as pd

    n_inits = check_positive_int("n_inits", n_inits)
    rows, clouds = [], {}
    for key, build in builds.items():
        count = paths.path_count(build(), input_size)
        _, per_init = landscape.monte_carlo_landscape(
            build,
            input_size,
            n_inits=n_inits * n_blocks,
            squared=False,
            n_inputs=1,
            seed=seed,
            normalize=False,
            return_per_init=True,
        )
        rows.append({**dict(zip(names, key)), **power_law_fits(count, per_init, n_blocks)})
        clouds[key] = tuple(
            landscape.normalize(m) for m in (count, per_init.mean(0), per_init.pow(2).mean(0))
        )
    return pd.DataFrame(rows).set_index(list(names)), clouds


def power_law_display(table, *, caption: str | None = None) -> StyledTable:
    """A :func:`power_law_table` as the book shows it: per row and landscape, the pooled
    exponent with its standard error (``0.497 ± 0.006``) and the range of the block exponents
    (``[0.465, 0.544]``), then the range of ``E|g| / sqrt(E[g^2])`` over the pixels."""
    import pandas as pd

    shown = pd.DataFrame(index=table.index)
    for kind in ("L1", "squared"):
        shown[f"{kind} exponent ± SE"] = [
            f"{p:.3f} ± {se:.3f}" for p, se in zip(table[f"p, {kind}"], table[f"SE p, {kind}"])
        ]
        shown[f"{kind}, range over blocks"] = [
            f"[{lo:.3f}, {hi:.3f}]"
            for lo, hi in zip(table[f"min p, {kind}"], table[f"max p, {kind}"])
        ]
    shown["E|g| / rms, over pixels"] = [
        f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(table["ratio min"], table["ratio max"])
    ]
    return table_style(shown.reset_index(), caption=caption)


def power_law_figure(clouds: Mapping[tuple, tuple[Tensor, Tensor, Tensor]]) -> Figure:
    """Log-log clouds of the L1 (left) and squared (right) landscapes against the path count.

    clouds: label tuple -> ``(N, L1, squared)`` normalised ``[H, W]`` maps (from
    :func:`power_law_table`), at most three; each is one series of points, with its prediction
    ``N^p / mean N^p`` (``p`` = 1/2 and 1) as a dashed line of its colour.
    """
    if not 1 <= len(clouds) <= 3:
        raise ValueError(f"clouds must hold 1 to 3 series (a readable legend), got {len(clouds)}")
    fig, axes = new_figure(1, 2, width=3.8, height=3.4, layout="constrained")
    for ax, index, kind, slope in ((axes[0, 0], 1, "L1", 0.5), (axes[0, 1], 2, "squared", 1.0)):
        for key, maps in clouds.items():
            count = maps[0].flatten()
            label = ", ".join(f"depth {v}" if isinstance(v, int) else str(v) for v in key)
            points = ax.loglog(count, maps[index].flatten(), ".", ms=3, label=label)
            grid = torch.sort(count).values
            ax.loglog(
                grid,
                grid**slope / (count**slope).mean(),
                "--",
                lw=1,
                color=points[0].get_color(),
            )
        law = "√N / mean √N" if slope == 0.5 else "N / mean N"
        ax.plot([], [], "--", lw=1, color="#57606a", label=f"prediction {law} (dashed)")
        ax.set_xlabel("path count N / mean N", fontsize=FONT)
        ax.set_ylabel(f"{kind} landscape Λ (mean = 1)", fontsize=FONT)
        ax.set_title(f"{kind} landscape", fontsize=FONT + 1)
        ax.tick_params(labelsize=TICK_FONT)
        ax.legend(fontsize=8)
    return fig


# --- Monte-Carlo error: the running cv of the mean map ------------------------------------------


def running_cv_curves(
    builds: Mapping[str, Callable],
    input_size: tuple[int, int, int],
    *,
    n_inits: int,
    seed: int = 0,
    tail_from: int = 10,
) -> dict[str, tuple[np.ndarray, float]]:
    """The ``cv`` of the mean map after 1..n inits, and its log-log slope, per architecture.

    builds: name -> ``build``. For each, :func:`~pilcro_lib.landscape.running_cv` of the
    Monte-Carlo per-init maps ``[n_inits, H, W]``: a curve ``[n_inits]``, and the least-squares
    slope of ``log cv`` on ``log n`` for ``n >= tail_from`` (-1/2 when the mean flattens like
    ``1/sqrt(n)``, 0 when it levels off). Returns name -> ``(curve, slope)``.
    """
    tail_from = check_positive_int("tail_from", tail_from)
    if tail_from > n_inits - 2:
        raise ValueError(f"tail_from={tail_from} leaves fewer than 3 points of {n_inits} inits")
    curves = {}
    for name, build in builds.items():
        _, per_init = landscape.monte_carlo_landscape(
            build, input_size, n_inits=n_inits, seed=seed, return_per_init=True
        )
        running = landscape.running_cv(per_init).numpy()
        n = np.arange(1, n_inits + 1)
        tail = n >= tail_from
        slope = np.polyfit(np.log(n[tail]), np.log(running[tail]), 1)[0]
        curves[name] = (running, float(slope))
    return curves


def running_cv_figure(
    curves: Mapping[str, tuple[np.ndarray, float]], reference: str, *, title: str = ""
) -> Figure:
    """The curves of :func:`running_cv_curves` on log-log axes, with ``1/sqrt(n)`` drawn from
    the first value of the curve named ``reference``."""
    check_choice("reference", reference, tuple(curves))
    fig, axes = new_figure(1, 1, width=5.5, height=3.6, layout="constrained")
    ax = axes[0, 0]
    for name, (running, slope) in curves.items():
        n = np.arange(1, len(running) + 1)
        ax.loglog(n, running, label=f"{name} (slope {slope:.2f})")
    first = curves[reference][0]
    n = np.arange(1, len(first) + 1)
    ax.loglog(n, first[0] / np.sqrt(n), "k--", lw=1, label=f"1/√n from the first {reference} init")
    ax.set_xlabel("random initialisations averaged, n", fontsize=FONT)
    ax.set_ylabel("cv of the mean landscape", fontsize=FONT)
    ax.tick_params(labelsize=TICK_FONT)
    if title:
        ax.set_title(title, fontsize=FONT + 1)
    ax.legend(fontsize=8)
    return fig


# --- a picture of path counting -----------------------------------------------------------------


def paths_from(length: int, kernel_size: int, depth: int, start: int) -> list[tuple[int, ...]]:
    """Every spatial path from input position ``start`` through ``depth`` stride-1 1-D convs.

    Zero "same" padding (odd ``kernel_size``): output ``o`` reads the inputs ``o - r .. o + r``,
    ``r = (k - 1) // 2``, that lie inside ``[0, length)``. A path lists one position per layer,
    ``(start, p_1, ..., p_depth)``; their number is
    ``paths.conv_profile_1d(length, k, depth)[start]``.
    """
    length = check_positive_int("length", length)
    k = check_positive_int("kernel_size", kernel_size)
    depth = check_positive_int("depth", depth, minimum=0)
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd for 'same' padding, got {k}")
    if not 0 <= start < length:
        raise ValueError(f"start must be in [0, {length - 1}], got {start}")
    r = (k - 1) // 2
    walks = [(start,)]
    for _ in range(depth):
        walks = [
            (*w, o) for w in walks for o in range(max(w[-1] - r, 0), min(w[-1] + r, length - 1) + 1)
        ]
    return walks


def path_graph(length: int = 6, depth: int = 2, kernel_size: int = 3) -> Figure:
    """The connectivity graph of ``depth`` 1-D convs with zero "same" padding, paths counted.

    Two panels, one per highlighted input position (the first and the middle one): nodes are
    the positions of each layer (input at the bottom), each labelled with its number of paths
    to the output (:func:`pilcro_lib.paths.conv_profile_1d` of the layers above it); grey edges
    join a position to the outputs whose windows read it; the paths from the highlighted
    position (:func:`paths_from`) are drawn in colour, their count in the title. The top layer
    feeds the global average pooling and the score (one sink).
    """
    length = check_positive_int("length", length, minimum=2)
    depth = check_positive_int("depth", depth)
    k = check_positive_int("kernel_size", kernel_size)
    counts = [paths.conv_profile_1d(length, k, depth - layer) for layer in range(depth + 1)]
    r = (k - 1) // 2
    fig, axes = new_figure(1, 2, width=3.6, height=3.0, layout="constrained")
    for ax, start, colour in zip(axes[0], (0, length // 2), ("#c62828", "#1f6feb")):
        walks = paths_from(length, k, depth, start)
        used = {(layer, w[layer], w[layer + 1]) for w in walks for layer in range(depth)}
        for layer in range(depth):
            for i in range(length):
                for o in range(max(i - r, 0), min(i + r, length - 1) + 1):
                    on = (layer, i, o) in used
                    ax.plot(
                        [i, o],
                        [layer, layer + 1],
                        color=colour if on else "#d0d7de",
                        lw=2.0 if on else 0.8,
                        zorder=2 if on else 1,
                    )
        for i in range(length):
            ax.plot([i, (length - 1) / 2], [depth, depth + 0.8], color="#d0d7de", lw=0.8)
        for layer, count in enumerate(counts):
            for i, value in enumerate(count.long().tolist()):
                lit = layer == 0 and i == start
                ax.scatter(
                    i, layer, s=330, color=colour if lit else "white", ec="#24292f", zorder=3
                )
                ax.text(
                    i,
                    layer,
                    str(value),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if lit else "#24292f",
                    zorder=4,
                )
        ax.scatter((length - 1) / 2, depth + 0.8, s=330, marker="s", color="#eaeef2", ec="#24292f")
        ax.text((length - 1) / 2, depth + 1.15, "pooling + score", ha="center", fontsize=8)
        ax.set_title(f"{len(walks)} paths from pixel {start}", fontsize=FONT + 1, color=colour)
        ax.set_yticks(range(depth + 1), ["input"] + [f"conv {layer + 1}" for layer in range(depth)])
        ax.set_xticks(range(length))
        ax.set_xlabel("position", fontsize=FONT)
        ax.tick_params(labelsize=TICK_FONT, length=0)
        ax.set_ylim(-0.5, depth + 1.45)
        ax.set_xlim(-0.6, length - 0.4)
        for side in ("top", "right", "left", "bottom"):
            ax.spines[side].set_visible(False)
    return fig


# --- maps and tables for the text column ---------------------------------------------------------


def map_grid(
    rows: Mapping[str, Mapping[str, Any]],
    *,
    scale: str = "row",
    cbar_label: str = LANDSCAPE_UNIT,
    min_span: float = 0.2,
    cmap: str = "viridis",
) -> Figure:
    """Maps ``[H, W]`` in rows of at most three, with one colour bar per compared group.

    rows: row label -> {panel title -> map}. ``scale="row"``: each row has its own colour scale,
    shared by its maps, and one colour bar (maps compared within a row); ``"shared"``: one
    scale and one colour bar for the whole figure (identical quantities compared across rows).
    A scale is at least ``min_span`` wide around its centre, so that float noise on a flat map
    is not stretched over the whole colour bar. The left panel of a row names the row; axes
    read pixel row and pixel column. 2.2-inch panels: at most 7.6 inches wide.
    """
    check_choice("scale", scale, ("row", "shared"))
    arrays = {
        label: {title: np.asarray(torch.as_tensor(a).detach().cpu()) for title, a in row.items()}
        for label, row in rows.items()
    }
    widest = max((len(row) for row in arrays.values()), default=0)
    if not 1 <= widest <= MAX_COLUMNS:
        raise ValueError(f"every row must hold 1 to {MAX_COLUMNS} maps, got up to {widest}")

    def limits(maps) -> tuple[float, float]:
        low = min(float(a.min()) for a in maps)
        high = max(float(a.max()) for a in maps)
        if high - low < min_span:
            centre = (high + low) / 2
            low, high = centre - min_span / 2, centre + min_span / 2
        return low, high

    everything = limits([a for row in arrays.values() for a in row.values()])
    fig, axes = plt.subplots(
        len(arrays),
        widest,
        figsize=(PANEL_INCHES * widest + 1.0, PANEL_INCHES * len(arrays)),
        facecolor="white",
        squeeze=False,
        layout="constrained",
    )
    image = None
    for i, (label, row) in enumerate(arrays.items()):
        low, high = everything if scale == "shared" else limits(row.values())
        for j in range(widest):
            ax = axes[i, j]
            if j >= len(row):
                ax.axis("off")
                continue
            title, array = list(row.items())[j]
            image = ax.imshow(array, vmin=low, vmax=high, cmap=cmap, interpolation="nearest")
            ax.set_title(title, fontsize=FONT)
            ax.tick_params(labelsize=TICK_FONT)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
            ax.set_ylabel(f"{label}\n{ROW_LABEL}" if j == 0 and label else "", fontsize=FONT)
            ax.set_xlabel(COLUMN_LABEL if i == len(arrays) - 1 else "", fontsize=FONT)
        if scale == "row":
            _colour_bar(fig, image, axes[i, :], cbar_label)
    if scale == "shared":
        _colour_bar(fig, image, axes, cbar_label)
    return fig


def _colour_bar(fig: Figure, image, axes, label: str) -> None:
    bar = fig.colorbar(image, ax=axes, fraction=0.05, pad=0.03, shrink=0.9)
    bar.set_label(label, fontsize=FONT)
    bar.ax.tick_params(labelsize=TICK_FONT)


def fixed_table(frame, digits: int = 3, *, caption: str | None = None) -> StyledTable:
    """``frame`` in the book's table style, every float with ``digits`` decimals.

    The index becomes the first columns; NaN shows as a dash, booleans as yes/no, integers
    with thousands separators (:func:`pilcro_lib.results.table_style`).
    """
    digits = check_positive_int("digits", digits, minimum=0)
    shown = frame.reset_index()

    def fixed(value) -> str:
        return "–" if missing(value) else f"{value:.{digits}f}"

    formats = {c: fixed for c in shown.columns if shown[c].dtype.kind == "f"}
    return table_style(shown, formats, caption=caption)
