"""The reports of a run-length ladder and of a confusion matrix, against hand computations."""

import io
import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from pilcro_lib.runs.records import Record
from pilcro_lib.training_report import (
    PLATEAU_WORDS,
    confusion_errors,
    confusion_figure,
    error_share,
    ladder_display,
    ladder_figure,
    ladder_frame,
    plateau_rows,
    plateau_run,
)

MAX_FIGURE_PX = 845  # tests/test_page_debt.py: the widest figure the text column shows well


def _record(epochs: int, times: list[float], val: list[float], test_acc: float, threads=2):
    history = [
        {"epoch": i + 1, "epoch_time_s": t, "val_acc": a}
        for i, (t, a) in enumerate(zip(times, val))
    ]
    metrics = {"history": history, "test": {"accuracy": test_acc, "loss": 0.4}}
    provenance = {"threads": threads}
    return Record(f"k{epochs}", "ladder", metrics, provenance, Path("."), reused=True)


LADDER = {
    4: _record(4, [10.0, 30.0, 11.0, 12.0], [0.5, 0.6, 0.7, 0.8], 0.79, threads=1),
    2: _record(2, [9.0, 10.0], [0.6, 0.75], 0.74),
    8: _record(8, [10.0] * 7 + [50.0], [0.5] * 7 + [0.82], 0.80),
}


def test_ladder_frame_sums_times_takes_the_median_and_the_last_epoch():
    frame = ladder_frame(LADDER)
    assert frame.index.tolist() == [2, 4, 8]
    assert frame["training time (s)"].tolist() == [19.0, 63.0, 120.0]
    assert frame["s per epoch"].tolist() == [9.5, statistics.median([10, 30, 11, 12]), 10.0]
    assert frame["threads"].tolist() == [2, 1, 2]
    assert frame["validation accuracy"].tolist() == [0.75, 0.8, 0.82]
    assert frame["test accuracy"].tolist() == [0.74, 0.79, 0.80]
    gain = frame["gain"].tolist()
    assert math.isnan(gain[0]) and gain[1:] == pytest.approx([0.05, 0.02])


def test_ladder_frame_refuses_an_empty_ladder():
    with pytest.raises(ValueError, match="records must be a non-empty mapping"):
        ladder_frame({})


def test_plateau_rows_apply_the_books_one_rule_by_hand():
    frame = ladder_frame(LADDER)  # validation accuracy 0.75, 0.80, 0.82 at 2, 4, 8 epochs
    rows = plateau_rows(frame, n_val=400)
    se = {b: math.sqrt(a * (1 - a) / 400) for b, a in ((2, 0.75), (4, 0.80), (8, 0.82))}
    assert rows["standard error"].tolist() == pytest.approx([se[2], se[4], se[8]])
    assert rows["gain to 2x"].tolist()[:2] == pytest.approx([0.05, 0.02])
    # 2 -> 4 gains 5 points against a 2.2-point SE; 4 -> 8 gains 2 points against 2.0 points
    assert rows["plateau"].tolist() == [PLATEAU_WORDS[False], PLATEAU_WORDS[True], "–"]
    assert math.isnan(rows.loc[8, "gain to 2x"]) and plateau_run(rows) == 4
    # a smaller validation split is noisier: its rule accepts the shorter run
    assert plateau_run(plateau_rows(frame, n_val=50)) == 2


def test_a_ladder_without_a_flat_doubling_has_no_plateau_run():
    rows = plateau_rows(ladder_frame(LADDER), n_val=100_000)
    assert plateau_run(rows) is None
    with pytest.raises(ValueError, match="n_val"):
        plateau_rows(ladder_frame(LADDER), n_val=0)


def test_ladder_display_writes_whole_seconds_points_and_words():
    frame = ladder_frame(LADDER).join(plateau_rows(ladder_frame(LADDER), n_val=50))
    table = ladder_display(frame, columns=["training time (s)", "test accuracy", "plateau"])
    shown = table.frame
    assert list(shown.columns) == [
        "run (epochs)",
        "training time (s)",
        "test accuracy (%)",
        "plateau",
    ]
    assert shown["training time (s)"].tolist() == ["19", "63", "120"]
    assert shown["test accuracy (%)"].tolist() == ["74.0", "79.0", "80.0"]
    assert shown["plateau"].tolist() == [PLATEAU_WORDS[True], PLATEAU_WORDS[True], "–"]
    assert "background-color: #1a7f37" in table.html  # the verdict's colour
    gains = ladder_display(frame, columns=["gain"]).frame["gain (points)"].tolist()
    assert gains == ["–", "+5.0", "+2.0"]
    with pytest.raises(ValueError, match="not ladder columns"):
        ladder_display(frame, columns=["ci_low"])


def _width_px(fig) -> int:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Image.open(buffer).size[0]


def _smallest_font(fig) -> float:
    fig.canvas.draw()
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
    return min(t.get_fontsize() for t in texts)


def test_ladder_figure_fits_the_column_and_plots_percent():
    fig = ladder_figure(LADDER, n_val=400)
    left, right = fig.axes
    assert left.get_lines()[1].get_ydata().tolist() == pytest.approx([50, 60, 70, 80])
    assert left.get_lines()[1].get_xdata().tolist() == pytest.approx(
        np.cumsum([10, 30, 11, 12]) / 60
    )
    assert right.get_lines()[0].get_ydata().tolist() == pytest.approx([75, 80, 82])
    assert _smallest_font(fig) >= 8
    assert _width_px(fig) <= MAX_FIGURE_PX


def _naive_errors(matrix):
    """Every confusion (i != j) as (rate of the true class, i, j), by loops."""
    rows = []
    for i in range(len(matrix)):
        total = sum(matrix[i])
        for j in range(len(matrix)):
            if i != j:
                rows.append((matrix[i][j] / total, i, j))
    return sorted(rows, reverse=True)


def test_confusion_errors_and_error_share_match_loops():
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 20, size=(5, 5)) + np.diag([100] * 5)
    names = list("abcde")
    errors = matrix.sum() - np.trace(matrix)
    top = confusion_errors(matrix, names, top=4)
    for (rate, i, j), row in zip(_naive_errors(matrix.tolist()), top.itertuples(index=False)):
        assert (row[0], row[1]) == (names[i], names[j])
        assert row[2] == pytest.approx(rate) and row[3] == pytest.approx(matrix[i, j] / errors)
    within = sum(matrix[i, j] for i in (0, 2, 3) for j in (0, 2, 3) if i != j)
    assert error_share(matrix, names, ["a", "c", "d"]) == pytest.approx(within / errors)
    assert error_share(matrix, names, names) == pytest.approx(1.0)


def test_confusion_helpers_refuse_bad_matrices_and_names():
    with pytest.raises(ValueError, match="square"):
        confusion_errors(np.ones((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="counts"):
        error_share(-np.ones((2, 2)), ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="name the 2 classes"):
        confusion_errors(np.ones((2, 2)), ["a"])
    with pytest.raises(ValueError, match="not among"):
        error_share(np.ones((2, 2)), ["a", "b"], ["z"])


def test_confusion_figure_shows_row_shares_in_percent():
    matrix = np.array([[8, 2], [1, 9]])
    fig = confusion_figure(matrix, ["cat", "dog"])
    image = fig.axes[0].get_images()[0]
    assert np.asarray(image.get_array()).tolist() == [[80, 20], [10, 90]]
    labels = sorted(t.get_text() for t in fig.axes[0].texts)
    assert labels == ["10", "20", "80", "90"]
    assert _smallest_font(fig) >= 8
    assert _width_px(fig) <= MAX_FIGURE_PX
