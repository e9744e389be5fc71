"""Reports of trained runs: a run-length ladder as one table, its plateau, its training curves,
and the errors of a confusion matrix.

A *ladder* is a set of runs of one recipe that differ only in length (``epochs -> record``, each
a :class:`pilcro_lib.runs.records.Record` whose metrics hold the per-epoch ``history`` and the
``test`` metrics). :func:`ladder_frame` makes it one table, :func:`plateau_rows` applies the
book's one plateau rule (:func:`pilcro_lib.protocol.plateau_verdict`) to each run,
:func:`ladder_display` shows the table in the book's style and
:func:`ladder_figure` draws it. :func:`confusion_errors`, :func:`error_share` and
:func:`confusion_figure` read a confusion matrix ``[K, K]`` (rows: true class, columns:
predicted class).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import median
from typing import Any

import numpy as np

from pilcro_lib.plotting import heatmap, new_figure
from pilcro_lib.protocol import plateau_verdict
from pilcro_lib.results import VERDICT_COLOURS, StyledTable, format_number, table_style
from pilcro_lib.utils import check_positive_int

__all__ = [
    "LADDER_HEADERS",
    "PLATEAU_WORDS",
    "confusion_errors",
    "confusion_figure",
    "error_share",
    "ladder_display",
    "ladder_figure",
    "ladder_frame",
    "plateau_rows",
    "plateau_run",
]

PLATEAU_WORDS = {True: "at the plateau", False: "not at the plateau"}


def _points(value: Any, sign: str = "") -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:{sign}.1f}"


LADDER_HEADERS = {  # column of ladder_frame / plateau_rows -> (header, how a cell is written)
    "training time (s)": ("training time (s)", lambda v: format_number(v, "seconds")),
    "s per epoch": ("median epoch (s)", lambda v: format_number(v, "seconds")),
    "threads": ("threads", lambda v: f"{int(v)}"),
    "validation accuracy": ("validation accuracy (%)", _points),
    "gain": ("gain (points)", lambda v: _points(v, "+")),
    "test accuracy": ("test accuracy (%)", _points),
    "test loss": ("test loss", lambda v: format_number(v, digits=3)),
    "gain to 2x": ("validation gain of the 2x run (points)", lambda v: _points(v, "+")),
    "standard error": ("standard error (points)", _points),
    "plateau": ("plateau", str),
}


def ladder_frame(records: Mapping[int, Any]):
    """One row per run of a ladder, indexed by ``epochs`` (increasing).

    records: epochs -> record (``.metrics["history"]``: per-epoch dicts with ``epoch_time_s``
    and ``val_acc``; ``.metrics["test"]``: ``accuracy`` and ``loss``; ``.provenance["threads"]``).
    Columns: ``training time (s)`` (the sum of the epoch times), ``s per epoch`` (the median
    epoch: a busy spell on a shared machine slows a few epochs, not the median), ``threads``,
    ``validation accuracy`` (last epoch), ``gain`` (over the next shorter run; NaN for the
    shortest), ``test accuracy``, ``test loss``.
    """
    import pandas as pd

    if not isinstance(records, Mapping) or not records:
        raise ValueError(f"records must be a non-empty mapping epochs -> record, got {records!r}")
    rows = {}
    for epochs in sorted(records):
        record = records[epochs]
        times = [h["epoch_time_s"] for h in record.metrics["history"]]
        rows[epochs] = {
            "training time (s)": float(sum(times)),
            "s per epoch": float(median(times)),
            "threads": record.provenance.get("threads"),
            "validation accuracy": float(record.metrics["history"][-1]["val_acc"]),
            "test accuracy": float(record.metrics["test"]["accuracy"]),
            "test loss": float(record.metrics["test"]["loss"]),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("epochs")
    frame.insert(4, "gain", frame["validation accuracy"].diff())
    return frame


def plateau_rows(frame, *, n_val: int):
    """The book's plateau rule (:func:`pilcro_lib.protocol.plateau_verdict`) applied to each run
    of a ladder: a run of ``B`` epochs is at the plateau when the run of ``2B`` epochs gains less
    validation accuracy than one standard error of ``B``'s, ``sqrt(a (1 - a) / n_val)``.

    frame: a :func:`ladder_frame` (its ``validation accuracy``); n_val: validation images. Returns
    one row per run (index ``epochs``): ``gain to 2x`` (NaN where the ladder lacks ``2B``),
    ``standard error`` and ``plateau`` (:data:`PLATEAU_WORDS`, or "–" without a ``2B`` run).
    """
    import pandas as pd

    n_val = check_positive_int("n_val", n_val)
    rows = {}
    for b in frame.index:
        accuracy = float(frame.loc[b, "validation accuracy"])
        row = {"standard error": math.sqrt(accuracy * (1 - accuracy) / n_val)}
        if 2 * b in frame.index:
            flat, _ = plateau_verdict(frame, int(b), n_val)
            gain = float(frame.loc[2 * b, "validation accuracy"]) - accuracy
            rows[b] = {"gain to 2x": gain, **row, "plateau": PLATEAU_WORDS[flat]}
        else:
            rows[b] = {"gain to 2x": math.nan, **row, "plateau": "–"}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("epochs")


def plateau_run(gaps) -> int | None:
    """The shortest run of :func:`plateau_rows` at the plateau, or ``None`` if there is none."""
    at = gaps.index[gaps["plateau"] == PLATEAU_WORDS[True]]
    return int(at[0]) if len(at) else None


def ladder_display(
    frame, *, columns: Sequence[str] | None = None, caption: str | None = None
) -> StyledTable:
    """A ladder table (:func:`ladder_frame`, optionally joined with :func:`plateau_rows`) in the
    book's table style: a first column ``run (epochs)``, whole seconds, accuracies in percent
    and gains in points with one decimal, the plateau in words on its colour.

    columns: which of :data:`LADDER_HEADERS` to show, in order (default: those the frame has).
    """
    import pandas as pd

    columns = [c for c in LADDER_HEADERS if c in frame.columns] if columns is None else columns
    unknown = [c for c in columns if c not in LADDER_HEADERS or c not in frame.columns]
    if unknown:
        raise ValueError(
            f"columns {unknown} are not ladder columns of this frame; it has "
            f"{[c for c in frame.columns if c in LADDER_HEADERS]}"
        )
    shown = pd.DataFrame({"run (epochs)": [f"{int(e)}" for e in frame.index]})
    for column in columns:
        header, write = LADDER_HEADERS[column]
        shown[header] = [write(v) for v in frame[column]]
    palette = {
        PLATEAU_WORDS[True]: VERDICT_COLOURS["supported"],
        PLATEAU_WORDS[False]: VERDICT_COLOURS["not resolved"],
    }
    colours = {"plateau": palette} if "plateau" in columns else None
    return table_style(shown, caption=caption, colours=colours)


def ladder_figure(records: Mapping[int, Any], *, n_val: int):
    """Two panels, 7.8 inches wide: each run's validation accuracy (%) per epoch against its
    cumulative training time (min), and where each run's validation accuracy ends against its
    length (epochs, log scale) with one standard error on ``n_val`` images either side: the
    plateau rule's yardstick (:func:`plateau_rows`)."""
    frame = ladder_frame(records).join(plateau_rows(ladder_frame(records), n_val=n_val))
    fig, axes = new_figure(1, 2, width=3.9, height=3.2, layout="constrained")
    left, right = axes[0]
    for epochs, record in sorted(records.items()):
        history = record.metrics["history"]
        minutes = np.cumsum([h["epoch_time_s"] for h in history]) / 60
        accuracy = [100 * h["val_acc"] for h in history]
        left.plot(minutes, accuracy, marker=".", ms=3, lw=1, label=f"{epochs} epochs")
    left.set(xlabel="training time (min)", ylabel="validation accuracy (%)", title="Each run")
    left.legend(fontsize=8)
    right.errorbar(
        frame.index,
        100 * frame["validation accuracy"],
        yerr=100 * frame["standard error"],
        marker="o",
        color="black",
        capsize=3,
        label="± one standard error",
    )
    right.set_xscale("log", base=2)
    right.set_xticks(list(frame.index), [str(e) for e in frame.index])
    right.minorticks_off()
    right.set(
        xlabel="run length (epochs)", ylabel="validation accuracy (%)", title="Where runs end"
    )
    right.legend(fontsize=8, loc="lower right")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    return fig


def _confusion(confusion) -> np.ndarray:
    matrix = np.asarray(confusion, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise ValueError(f"confusion must be a square [K, K] matrix, got shape {matrix.shape}")
    if (matrix < 0).any() or not np.isfinite(matrix).all():
        raise ValueError("confusion must hold counts (finite, not negative)")
    return matrix


def _check_classes(classes: Sequence[str], k: int) -> list[str]:
    if len(classes) != k:
        raise ValueError(f"classes must name the {k} classes of the matrix, got {len(classes)}")
    return list(classes)


def confusion_errors(confusion, classes: Sequence[str], *, top: int = 3):
    """The ``top`` most frequent confusions of a confusion matrix ``[K, K]`` (rows: true class).

    Returns a DataFrame with ``true class``, ``predicted as``, ``share of the true class`` (the
    count over the true class's images) and ``share of all errors``, largest share of the true
    class first.
    """
    import pandas as pd

    matrix = _confusion(confusion)
    names = _check_classes(classes, len(matrix))
    rates = matrix / matrix.sum(1, keepdims=True)
    errors = matrix.sum() - np.trace(matrix)
    pairs = [(i, j) for i in range(len(matrix)) for j in range(len(matrix)) if i != j]
    pairs.sort(key=lambda p: rates[p], reverse=True)
    return pd.DataFrame(
        [
            {
                "true class": names[i],
                "predicted as": names[j],
                "share of the true class": rates[i, j],
                "share of all errors": matrix[i, j] / errors,
            }
            for i, j in pairs[:top]
        ]
    )


def error_share(confusion, classes: Sequence[str], group: Sequence[str]) -> float:
    """The share of all errors of a confusion matrix ``[K, K]`` whose true and predicted classes
    both lie in ``group`` (class names)."""
    matrix = _confusion(confusion)
    names = _check_classes(classes, len(matrix))
    unknown = [g for g in group if g not in names]
    if unknown:
        raise ValueError(f"group names classes {unknown} that are not among {names}")
    inside = [names.index(g) for g in group]
    within = sum(matrix[i, j] for i in inside for j in inside if i != j)
    return float(within / (matrix.sum() - np.trace(matrix)))


def confusion_figure(confusion, classes: Sequence[str]):
    """A confusion matrix ``[K, K]`` as the share of each true class (rows) predicted as each
    class (columns), in percent, each cell of at least 1% labelled with its value."""
    matrix = _confusion(confusion)
    names = _check_classes(classes, len(matrix))
    rates = 100 * matrix / matrix.sum(1, keepdims=True)
    fig, axes = new_figure(1, 1, width=6.4, height=5.4, layout="constrained")
    ax = axes[0, 0]
    image = heatmap(
        ax,
        rates,
        vmin=0,
        vmax=100,
        cmap="Blues",
        cbar_label="share of the true class (%)",
        axis_labels=False,
    )
    image.colorbar.ax.tick_params(labelsize=8)
    for (i, j), rate in np.ndenumerate(rates):
        if rate >= 1:
            colour = "white" if rate > 50 else "black"
            ax.text(j, i, f"{rate:.0f}", ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel="predicted class", ylabel="true class")
    return fig
