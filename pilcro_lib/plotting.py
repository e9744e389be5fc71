"""Figure helpers: white backgrounds (readable in dark mode), labelled axes, a colour bar on every
heat map."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pilcro_lib.utils import check_number, check_type

LANDSCAPE_UNIT = "importance Λ (mean = 1)"
ROW_LABEL = "pixel row"
COLUMN_LABEL = "pixel column"


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    width: float = 4.0,
    height: float = 3.4,
    layout: str | None = None,
    **kwargs,
):
    """``plt.subplots`` with a white face colour and a size of ``width x height`` inches per panel.

    ``layout="constrained"`` lets matplotlib place titles, labels and colour bars so that none
    overlaps another (then do not call ``tight_layout``).
    """
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(width * ncols, height * nrows),
        facecolor="white",
        squeeze=False,
        layout=layout,
        **kwargs,
    )
    return fig, axes


def _as_array(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def heatmap(
    ax: Axes,
    array,
    *,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    cbar_label: str | None = None,
    axis_labels: bool = True,
):
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


def landscape_grid(
    maps: dict[str, object],
    *,
    shared_scale: bool = True,
    ncols: int = 4,
    cbar_label: str = LANDSCAPE_UNIT,
    cmap: str = "viridis",
    suptitle: str | None = None,
) -> Figure:
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
    for ax in list(axes.flat)[len(arrays) :]:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def comparison_grid(
    columns: dict[str, dict[str, object]],
    *,
    cbar_label: str = LANDSCAPE_UNIT,
    cmap: str = "viridis",
    suptitle: str | None = None,
    min_span: float = 0.2,
) -> Figure:
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
            heatmap(
                ax,
                arrays[method],
                title=f"{setting}\n{method}",
                vmin=vmin,
                vmax=vmax,
                cmap=cmap,
                cbar_label=cbar_label,
            )
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def ladder_curves(histories: Mapping[int, Sequence[Mapping[str, float]]]) -> Figure:
    """Validation accuracy per epoch of each run of a run-length ladder, one line per run.

    ``histories`` maps a run's length in epochs to its history, the per-epoch dicts (``epoch``,
    ``val_acc``, ...) of :attr:`pilcro_lib.train.History.records`.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError(
            f"histories must be a non-empty mapping of epochs -> history records, got {histories!r}"
        )
    fig, axes = new_figure(1, 1, width=5.5, height=3.4)
    ax = axes[0, 0]
    for epochs, records in histories.items():
        ax.plot(
            [r["epoch"] for r in records],
            [r["val_acc"] for r in records],
            marker=".",
            label=f"{epochs} epochs",
        )
    ax.set(
        xlabel="epoch", ylabel="validation accuracy", title="Each run of the ladder, epoch by epoch"
    )
    ax.legend()
    return fig


# --- Forest plots of verdict tables ------------------------------------------------------------

VERDICT_MARKS = {  # verdict -> colour of its point, interval and word
    "supported": "#1a7f37",
    "contradicted": "#c62828",
    "not resolved": "#6e7781",
    "not measured": "#afb8c1",
}
FOREST_WIDTH = 6.8  # inches: the book's ~680-px text column at 100 dpi
FOREST_FONT = 9  # points, every text of the figure
LABEL_CHARS = 34  # claim labels are wrapped at this many characters
TITLE_CHARS = 60  # panel titles too
ROW_INCHES = 0.3  # height of a one-line row; each further line of its label adds half of it


def forest_plot(table, *, groups=None, margin=None, units="", title: str | None = None) -> Figure:
    """A forest plot of verdict tables: one row per claim, one panel per group, stacked.

    Each row shows the claim (wrapped), its ``difference`` (treated - control) as a point, its
    95% CI ``[ci_low, ci_high]`` as a bar, and its verdict as the colour of both
    (:data:`VERDICT_MARKS`) and as a word at the right. A grey band around the zero line marks
    what the design could not tell from zero: ± ``detectable`` of each row, or ± ``margin`` over
    the whole panel when an equivalence margin is given. A row without a difference or interval
    is drawn as "not measured": its label and word only (hollow marker if it has a point).

    table: a verdict table (:func:`pilcro_lib.results.as_verdict_frame`), a list of them, or a
    mapping label -> table. groups: for one table, label -> list of its claims (every claim in
    exactly one group); for a list, one label per table. Each group gets its own panel with its
    own x-axis (claims in different units never share one); panels are stacked vertically and
    the figure grows with the rows. margin: a number, or label -> number (or ``None``); units:
    the x-axis unit, a string or label -> string. The figure is 6.8 inches wide (the text
    column at 100 dpi), its fonts 9 pt, its face white.
    """
    panels = _forest_panels(table, groups)
    labels = [label for label, _ in panels]
    margins = _per_panel("margin", margin, labels)
    unit_names = _per_panel("units", units, labels)
    for label, value in margins.items():
        if value is not None:
            check_number(
                f"margin[{label!r}]" if isinstance(margin, Mapping) else "margin", value, minimum=0
            )
    heights = [0.75 + ROW_INCHES * _row_centres(frame)[1] for _, frame in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(FOREST_WIDTH, sum(heights) + (0.35 if title else 0)),
        facecolor="white",
        layout="constrained",
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (label, frame) in zip(axes[:, 0], panels):
        _forest_panel(ax, frame, label=label, margin=margins[label], unit=unit_names[label])
    if title:
        fig.suptitle(title, fontsize=FOREST_FONT + 1)
    return fig


def _forest_panels(table, groups) -> list[tuple[str, object]]:
    """(label, verdict frame) per panel; labels are ``""`` when the caller gave none."""
    import pandas as pd

    from pilcro_lib.results import as_verdict_frame

    if isinstance(table, pd.DataFrame):
        frame = as_verdict_frame(table)
        if groups is None:
            return [("", frame)]
        check_type("groups", groups, Mapping, "a mapping label -> list of claims of the table")
        return _split_groups(frame, groups)
    if isinstance(table, Mapping):
        if groups is not None:
            raise ValueError(
                "groups must be None when table is a mapping label -> table (its keys are the "
                "labels)"
            )
        items = list(table.items())
    elif isinstance(table, Sequence) and not isinstance(table, str):
        labels = [""] * len(table) if groups is None else list(groups)
        if len(labels) != len(table) or not all(isinstance(g, str) for g in labels):
            raise ValueError(
                f"groups must be one label (str) per table: {len(table)} labels, got {groups!r}"
            )
        items = list(zip(labels, table))
    else:
        raise TypeError(
            f"table must be a verdict DataFrame, a list of them or a mapping label -> DataFrame, "
            f"got {type(table).__name__}"
        )
    if not items:
        raise ValueError("table must hold at least one verdict table, got none")
    return [(str(label), as_verdict_frame(frame)) for label, frame in items]


def _split_groups(frame, groups: Mapping) -> list[tuple[str, object]]:
    """Split one verdict frame into panels: ``groups`` maps a label to its claims."""
    seen: dict[str, str] = {}
    panels = []
    for label, claims in groups.items():
        if isinstance(claims, str) or not isinstance(claims, Sequence) or not claims:
            raise ValueError(
                f"groups[{label!r}] must be a non-empty list of claims, got {claims!r}"
            )
        unknown = [c for c in claims if c not in frame.index]
        if unknown:
            raise ValueError(
                f"groups[{label!r}] names claims {unknown} that the table lacks; "
                f"it has {list(frame.index)}"
            )
        twice = [c for c in claims if c in seen]
        if twice:
            raise ValueError(
                f"groups[{label!r}] repeats claims {twice} of group {seen[twice[0]]!r}"
            )
        seen.update(dict.fromkeys(claims, label))
        panels.append((str(label), frame.loc[list(claims)]))
    left = [c for c in frame.index if c not in seen]
    if left:
        raise ValueError(
            f"groups leaves out the claims {left}: put every claim of the table in one group"
        )
    return panels


def _per_panel(name: str, value, labels: list[str]) -> dict:
    """``value`` for each panel label: one value for all, or a mapping label -> value."""
    if not isinstance(value, Mapping):
        return dict.fromkeys(labels, value)
    unknown = [k for k in value if k not in labels]
    if unknown:
        raise ValueError(f"{name} names groups {unknown}; the groups are {labels}")
    return {label: value.get(label) for label in labels}


def _wrap(claim: str) -> str:
    return textwrap.fill(str(claim), LABEL_CHARS, break_long_words=False)


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _forest_panel(ax: Axes, frame, *, label: str, margin: float | None, unit: str | None) -> None:
    """Draw one panel of :func:`forest_plot`: rows top to bottom in the table's order."""
    from matplotlib.patches import Rectangle
    from matplotlib.transforms import blended_transform_factory

    centres, _ = _row_centres(frame)
    ax.set_facecolor("white")
    if margin is not None:
        ax.axvspan(-margin, margin, color="#eaeef2", zorder=0, lw=0, gid="band")
    ax.axvline(0, color="#24292f", lw=0.9, zorder=1, gid="zero")
    words = blended_transform_factory(ax.transAxes, ax.transData)
    extent = [0.0] if margin is None else [-margin, margin]
    for y, (claim, row) in zip(centres, frame.iterrows()):
        d, lo, hi = (_float(row.get(c)) for c in ("difference", "ci_low", "ci_high"))
        det = _float(row.get("detectable"))
        verdict = str(row["verdict"]) if _finite(d, lo, hi) else "not measured"
        colour = VERDICT_MARKS.get(verdict, VERDICT_MARKS["not resolved"])
        if margin is None and _finite(det):
            ax.add_patch(
                Rectangle(
                    (-abs(det), y - 0.38),
                    2 * abs(det),
                    0.76,
                    facecolor="#eaeef2",
                    lw=0,
                    zorder=0,
                    gid=f"band:{claim}",
                )
            )
            extent += [-abs(det), abs(det)]
        if _finite(lo, hi):
            ax.plot(
                [lo, hi],
                [y, y],
                color=colour,
                lw=2.2,
                solid_capstyle="butt",
                zorder=2,
                gid=f"ci:{claim}",
            )
            extent += [lo, hi]
        if _finite(d):
            hollow = verdict == "not measured"
            ax.plot(
                [d],
                [y],
                marker="o",
                ms=6.5,
                linestyle="none",
                mec=colour,
                mew=1.4,
                zorder=3,
                mfc="white" if hollow else colour,
                gid=f"point:{claim}",
            )
            extent.append(d)
        ax.text(
            1.02,
            y,
            verdict,
            transform=words,
            color=colour,
            fontsize=FOREST_FONT,
            va="center",
            ha="left",
            fontweight="normal" if verdict in ("not resolved", "not measured") else "bold",
            gid=f"verdict:{claim}",
        )
    _forest_axes(ax, frame, extent, label=label, unit=unit)


def _row_centres(frame) -> tuple[list[float], float]:
    """The y centre of each row (top row highest; a row's height grows with its label's lines)
    and the total height, in units of a one-line row."""
    sizes = [1 + 0.5 * _wrap(claim).count("\n") for claim in frame.index]
    total = sum(sizes)
    tops = [total - sum(sizes[:i]) for i in range(len(sizes))]
    return [top - size / 2 for top, size in zip(tops, sizes)], total


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _forest_axes(ax: Axes, frame, extent: list[float], *, label: str, unit: str | None) -> None:
    """Limits, the claim labels, the x label and the panel title of one forest panel."""
    centres, total = _row_centres(frame)
    low, high = min(extent), max(extent)
    pad = 0.08 * (high - low) if high > low else 1.0
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(-0.1, total + 0.1)
    ax.set_yticks(centres, [_wrap(c) for c in frame.index])
    ax.tick_params(labelsize=FOREST_FONT, length=0, axis="y")
    ax.tick_params(labelsize=FOREST_FONT, axis="x")
    ax.grid(axis="x", color="#d0d7de", lw=0.5, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel(
        "difference, treated − control" + (f" ({unit})" if unit else ""), fontsize=FOREST_FONT
    )
    if label:
        title = textwrap.fill(label, TITLE_CHARS, break_long_words=False)
        ax.set_title(title, fontsize=FOREST_FONT + 0.5, loc="left", fontweight="bold")


def figure_html(fig: Figure, *, alt: str, caption: str | None = None) -> str:
    """``fig`` as a self-contained HTML ``<figure>`` (a PNG data URI at 100 dpi, at most its own
    width in the column), with ``alt`` text and an optional caption; closes the figure.

    For showing a figure on another page of the book than the notebook that drew it (glued as
    HTML, it needs no image file of its own)."""
    import base64
    import io
    from html import escape

    check_type("fig", fig, Figure, "a matplotlib Figure")
    if not isinstance(alt, str) or not alt.strip():
        raise ValueError("alt: describe the figure in a sentence, for readers who cannot see it")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}" '
        f'style="max-width: 100%; height: auto">{caption_html}</figure>'
    )
