import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from pilcro_lib.plotting import FOREST_WIDTH, VERDICT_MARKS, forest_plot, ladder_curves


def test_ladder_curves_draw_each_runs_validation_accuracy_by_epoch():
    histories = {
        2: [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.7}],
        4: [{"epoch": e, "val_acc": 0.1 * e} for e in range(1, 5)],
    }
    fig = ladder_curves(histories)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["2 epochs", "4 epochs"]
    assert lines[0].get_xdata().tolist() == [1, 2] and lines[0].get_ydata().tolist() == [0.5, 0.7]
    assert lines[1].get_ydata().tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "validation accuracy")
    plt.close(fig)


def test_ladder_curves_refuse_an_empty_ladder():
    with pytest.raises(ValueError, match="histories must be a non-empty mapping"):
        ladder_curves({})


# --- forest_plot ----------------------------------------------------------------------------------

VERDICT_ROWS = pd.DataFrame(
    {
        "claim": [
            "flatter: curvature κ",
            "more accurate: test accuracy",
            "faster: a claim whose words need more than one line to fit",
            "more robust: drop",
            "position: never measured",
        ],
        "difference": [-0.057, 0.004, -150.4, 0.094, math.nan],
        "ci_low": [-0.082, 0.002, -606.7, 0.053, math.nan],
        "ci_high": [-0.032, 0.007, 305.9, 0.134, math.nan],
        "detectable": [0.035, 0.004, 628.4, 0.054, math.nan],
        "p_holm": [0.012, 0.07, 1.0, 0.03, math.nan],
        "verdict": ["supported", "not resolved", "not resolved", "contradicted", "not measured"],
    }
).set_index("claim")


def _artist(fig, gid):
    found = [
        a for ax in fig.axes for a in [*ax.lines, *ax.patches, *ax.texts] if a.get_gid() == gid
    ]
    assert len(found) == 1, f"{gid}: {len(found)} artists"
    return found[0]


def test_forest_plot_draws_each_claims_difference_interval_band_and_verdict():
    fig = forest_plot(VERDICT_ROWS.iloc[:2])
    ax = fig.axes[0]
    for claim, row in VERDICT_ROWS.iloc[:2].iterrows():
        ci = _artist(fig, f"ci:{claim}")
        assert ci.get_xdata().tolist() == [row["ci_low"], row["ci_high"]]
        point = _artist(fig, f"point:{claim}")
        assert point.get_xdata().tolist() == [row["difference"]]
        assert point.get_ydata()[0] == ci.get_ydata()[0]  # the point sits on its interval
        band = _artist(fig, f"band:{claim}")
        assert (band.get_x(), band.get_width()) == pytest.approx(
            (-row["detectable"], 2 * row["detectable"])
        )
        word = _artist(fig, f"verdict:{claim}")
        assert word.get_text() == row["verdict"]
        assert (
            to_hex(word.get_color())
            == to_hex(point.get_markerfacecolor())
            == VERDICT_MARKS[row["verdict"]]
        )
    assert list(_artist(fig, "zero").get_xdata()) == [0, 0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [
        "flatter: curvature κ",
        "more accurate: test accuracy",
    ]  # top to bottom in table order
    assert ax.get_yticks()[0] > ax.get_yticks()[1]
    plt.close(fig)


def test_forest_plot_colours_each_verdict_and_draws_nan_rows_as_not_measured():
    rows = VERDICT_ROWS.copy()
    rows.loc["more robust: drop", "difference"] = np.nan  # a NaN effect under a stated verdict
    fig = forest_plot(rows)
    words = {t.get_gid(): t.get_text() for t in fig.axes[0].texts}
    assert words["verdict:more robust: drop"] == "not measured"
    assert words["verdict:position: never measured"] == "not measured"
    gids = {a.get_gid() for a in fig.axes[0].lines}
    assert (
        "point:position: never measured" not in gids and "ci:position: never measured" not in gids
    )
    assert (
        to_hex(_artist(fig, "verdict:position: never measured").get_color())
        == VERDICT_MARKS["not measured"]
    )
    colours = {
        to_hex(_artist(fig, f"point:{c}").get_markerfacecolor()) for c in VERDICT_ROWS.index[:3]
    }
    assert colours == {VERDICT_MARKS["supported"], VERDICT_MARKS["not resolved"]}
    assert all(math.isfinite(v) for v in fig.axes[0].get_xlim())
    plt.close(fig)


def test_forest_plot_fits_the_text_column_and_grows_with_the_rows():
    small, large = forest_plot(VERDICT_ROWS.iloc[:1]), forest_plot(VERDICT_ROWS)
    for fig in (small, large):
        assert fig.get_size_inches()[0] <= 6.8 == FOREST_WIDTH and fig.get_facecolor()[:3] == (
            1,
            1,
            1,
        )
        texts = [t for ax in fig.axes for t in [*ax.texts, *ax.get_yticklabels(), ax.xaxis.label]]
        assert min(t.get_fontsize() for t in texts) >= 9
    assert large.get_size_inches()[1] > small.get_size_inches()[1]
    wrapped = [t.get_text() for t in large.axes[0].get_yticklabels() if "one line" in t.get_text()]
    assert (
        wrapped and "\n" in wrapped[0] and all(len(line) <= 34 for line in wrapped[0].splitlines())
    )
    plt.close("all")


def test_forest_plot_gives_each_group_its_own_panel_and_x_axis():
    groups = {
        "landscape": ["flatter: curvature κ"],
        "accuracy": ["more accurate: test accuracy", "more robust: drop"],
        "steps": [VERDICT_ROWS.index[2], "position: never measured"],
    }
    fig = forest_plot(
        VERDICT_ROWS, groups=groups, units={"steps": "steps"}, title="P-objective against plain"
    )
    axes = fig.axes
    assert [ax.get_title(loc="left") for ax in axes] == ["landscape", "accuracy", "steps"]
    assert axes[2].get_xlabel().endswith("(steps)") and not axes[0].get_xlabel().endswith(")")
    assert (
        axes[2].get_xlim()[1] > 600 and axes[0].get_xlim()[1] < 1
    )  # each panel scaled to its own claims
    assert fig.axes[0].get_position().y0 > fig.axes[1].get_position().y0  # stacked top to bottom
    plt.close(fig)
    by_list = forest_plot(
        [VERDICT_ROWS.iloc[:1], VERDICT_ROWS.iloc[1:2]], groups=["first", "second"], margin=0.01
    )
    assert [ax.get_title(loc="left") for ax in by_list.axes] == ["first", "second"]
    band = [
        p for p in by_list.axes[1].patches if p.get_gid() == "band"
    ]  # one margin band, no per-row bands
    assert len(band) == 1 and not any(
        p.get_gid().startswith("band:") for p in by_list.axes[1].patches
    )
    assert (band[0].get_x(), band[0].get_width()) == pytest.approx((-0.01, 0.02))
    plt.close(by_list)


def test_forest_plot_reads_chapter_8s_two_level_table_with_short_headers():
    table = pd.DataFrame(
        {
            "diff.": [1.75],
            "CI low": [0.86],
            "CI high": [2.64],
            "p Holm": [0.0139],
            "detect.": [1.22],
            "verdict": ["supported"],
        },
        index=pd.MultiIndex.from_tuples([("aligned", "LRLC beats conv")], names=["task", "claim"]),
    )
    fig = forest_plot(table, units="points")
    assert _artist(fig, "ci:aligned: LRLC beats conv").get_xdata().tolist() == [0.86, 2.64]
    plt.close(fig)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"groups": {"a": ["no such claim"]}}, "groups\\['a'\\] names claims"),
        ({"groups": {"a": ["flatter: curvature κ"]}}, "groups leaves out the claims"),
        ({"margin": -1.0}, "margin must be"),
        ({"units": {"nope": "s"}}, "units names groups"),
    ],
)
def test_forest_plot_refuses_bad_arguments_naming_them(kwargs, error):
    with pytest.raises((ValueError, TypeError), match=error):
        forest_plot(VERDICT_ROWS, **kwargs)
    with pytest.raises(ValueError, match="lacks the verdict columns"):
        forest_plot(VERDICT_ROWS.drop(columns="ci_low"))
    with pytest.raises(TypeError, match="table must be"):
        forest_plot(3)


def test_figure_html_embeds_the_png_drawn_at_100_dpi_with_its_alt_text():
    import base64
    import io
    import re

    from PIL import Image

    from pilcro_lib.plotting import figure_html, new_figure

    fig, axes = new_figure(width=5.0, height=2.0)
    axes[0, 0].plot([0, 1], [0, 1])
    html = figure_html(fig, alt='a "line"', caption="x < y")
    assert not plt.fignum_exists(fig.number)
    data = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.format == "PNG" and 400 < image.width <= 500  # 5 in at 100 dpi, cropped tight
    assert 'alt="a &quot;line&quot;"' in html and "<figcaption>x &lt; y</figcaption>" in html


@pytest.mark.parametrize(
    "fig, alt, error",
    [(3, "x", "fig must be a matplotlib Figure, got int"), (None, " ", "alt: describe")],
)
def test_figure_html_refuses_bad_arguments_naming_them(fig, alt, error):
    from pilcro_lib.plotting import figure_html, new_figure

    fig = new_figure()[0] if fig is None else fig
    with pytest.raises((TypeError, ValueError), match=error):
        figure_html(fig, alt=alt)
