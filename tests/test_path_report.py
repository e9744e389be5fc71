"""The path-count chapters' loops, tables and figures, against independent computations:
brute-force enumeration of paths, explicit window counts, NumPy fits and closed forms."""

import itertools
import math
from functools import partial

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from pilcro_lib import landscape, path_report, paths


@pytest.mark.parametrize("length, depth", [(6, 2), (5, 3), (7, 1)])
def test_paths_from_enumerates_every_walk_and_matches_the_path_count(length, depth):
    profile = paths.conv_profile_1d(length, 3, depth)
    for start in range(length):
        walks = path_report.paths_from(length, 3, depth, start)
        brute = [
            (start, *steps)
            for steps in itertools.product(range(length), repeat=depth)
            if all(abs(b - a) <= 1 for a, b in zip((start, *steps), steps))
        ]
        assert sorted(walks) == sorted(brute)
        assert len(walks) == profile[start]


def test_paths_from_refuses_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        path_report.paths_from(6, 2, 1, 0)
    with pytest.raises(ValueError, match="start"):
        path_report.paths_from(6, 3, 1, 6)


def _np_slope(count, landscape_map):
    x, y = np.log(count.numpy().ravel()), np.log(landscape_map.numpy().ravel())
    return np.polyfit(x, y, 1)[0]


def test_power_law_fits_are_exact_for_a_gradient_of_one_shape():
    count = torch.arange(1.0, 17.0, dtype=torch.float64).view(4, 4)
    z = torch.tensor([0.3, -1.2, 2.0, 0.7, -0.1, 1.5], dtype=torch.float64)
    per_init = count.sqrt() * z.abs().view(-1, 1, 1)  # |g| = sqrt(N) |z_i|
    fits = path_report.power_law_fits(count, -per_init, n_blocks=3)
    assert fits["p, L1"] == pytest.approx(0.5) and fits["p, squared"] == pytest.approx(1.0)
    assert fits["SE p, L1"] == pytest.approx(0, abs=1e-12)
    ratio = z.abs().mean() / z.pow(2).mean().sqrt()
    assert fits["ratio min"] == pytest.approx(ratio.item())
    assert fits["ratio max"] == pytest.approx(ratio.item())


def test_power_law_fits_spread_over_blocks_matches_numpy():
    gen = torch.Generator().manual_seed(0)
    count = torch.arange(1.0, 26.0, dtype=torch.float64).view(5, 5)
    per_init = (count.sqrt() * torch.randn(40, 5, 5, generator=gen, dtype=torch.float64)).abs()
    fits = path_report.power_law_fits(count, per_init, n_blocks=4)
    blocks = [per_init[10 * b : 10 * (b + 1)] for b in range(4)]
    l1 = [_np_slope(count, b.mean(0)) for b in blocks]
    sq = [_np_slope(count, b.pow(2).mean(0)) for b in blocks]
    assert fits["p, L1"] == pytest.approx(_np_slope(count, per_init.mean(0)))
    assert fits["SE p, L1"] == pytest.approx(np.std(l1, ddof=1) / 2)
    assert fits["SE p, squared"] == pytest.approx(np.std(sq, ddof=1) / 2)
    assert (fits["min p, L1"], fits["max p, L1"]) == pytest.approx((min(l1), max(l1)))
    ratio = per_init.mean(0) / per_init.pow(2).mean(0).sqrt()
    assert fits["ratio median"] == pytest.approx(ratio.median().item())
    with pytest.raises(ValueError, match="multiple"):
        path_report.power_law_fits(count, per_init, n_blocks=3)


def test_power_law_table_follows_the_square_root_for_a_linear_net():
    builds = {("valid", 2): partial(paths.toy_net, 2, width=4, padding=0)}
    table, clouds = path_report.power_law_table(builds, (1, 8, 8), n_inits=20, n_blocks=2)
    row = table.loc[("valid", 2)]
    assert abs(row["p, L1"] - 0.5) < 0.1 and abs(row["p, squared"] - 1.0) < 0.2
    count, l1, squared = clouds[("valid", 2)]
    assert torch.allclose(
        count, landscape.normalize(paths.path_count(builds[("valid", 2)](), (1, 8, 8)))
    )
    mc = landscape.monte_carlo_landscape(builds[("valid", 2)], (1, 8, 8), n_inits=40, squared=True)
    assert torch.allclose(squared, mc, rtol=1e-4)  # the gradient does not depend on the input
    shown = path_report.power_law_display(table)
    assert " ± " in shown.text and "[" in shown.text and "nan" not in shown.text


def test_block_asymmetry_sees_a_tilt_but_not_a_checkerboard():
    columns = torch.tensor([1.0, 2.0] * 4, dtype=torch.float64)
    board = torch.outer(columns, columns)
    assert landscape.asymmetry(board).item() == pytest.approx(2 / 3)  # 2|a - b| / (a + b)
    assert path_report.block_asymmetry(board) == pytest.approx(0.0)
    tilt = torch.linspace(2.0, 1.0, 8, dtype=torch.float64).expand(8, 8)
    blocks = tilt.numpy().reshape(4, 2, 4, 2).mean((1, 3))
    expected = np.abs(blocks - blocks[:, ::-1]).sum() / np.abs(blocks).sum()
    assert path_report.block_asymmetry(tilt) == pytest.approx(expected)
    assert math.isnan(path_report.block_asymmetry(torch.ones(7, 7)))


def test_compare_settings_repeats_each_comparison_with_its_own_options():
    build = partial(paths.toy_net, 2, width=4, stride=2)
    maps, table = path_report.compare_settings(
        {"odd": build, "even": (build, {"input_size": (1, 8, 8)})},
        (1, 9, 9),
        n_inits=4,
        figures={"cv": landscape.cv, "asymmetry": landscape.asymmetry},
        label="input",
    )
    direct = paths.compare_with_monte_carlo(build, (1, 8, 8), n_inits=4, seed=0)
    assert maps["even"]["Monte Carlo"].shape == (8, 8) and maps["odd"]["path count"].shape == (9, 9)
    assert torch.equal(maps["even"]["Monte Carlo"], direct.maps["Monte Carlo"])
    assert table.loc["even", "r, path count"] == pytest.approx(direct.r["path count"])
    cv = landscape.cv(direct.maps["second moment"]).item()
    assert table.loc["even", "cv, second moment"] == pytest.approx(cv)
    assert table.loc["odd", "asymmetry, path count"] == pytest.approx(0, abs=1e-12)
    assert table.index.name == "input"


def test_closed_form_checks_hold_and_count_the_border():
    kinds = [("valid", "zeros"), ("same", "zeros"), ("same", "circular"), ("full", "zeros")]
    table = path_report.closed_form_checks((1, 2), kinds, side=6)
    assert table["N = outer(n, n)"].all()
    flat = table.xs("same, circular", level="padding")["N = k^(2L) everywhere"]
    assert flat.all() and not table.loc[(1, "same, zeros"), "N = k^(2L) everywhere"]
    # one zero-padded 3x3 conv: a corner is read by 2 x 2 windows, the interior by 3 x 3
    assert table.loc[(1, "same, zeros"), ["smallest N", "largest N"]].tolist() == [4, 9]


def test_floor_mode_table_drops_the_last_rows_only_in_floor_mode():
    cases = {"10, floor": (10, False), "10, ceil": (10, True), "16, floor": (16, False)}
    maps, table = path_report.floor_mode_table(3, cases)
    assert table.loc["10, floor", "map sides"] == "10 → 5 → 2 → 1"
    assert table.loc["10, ceil", "map sides"] == "10 → 5 → 3 → 2"
    quarters = table.loc["16, floor", ["top-left quarter", "bottom-right quarter"]]
    assert quarters.tolist() == pytest.approx([1.0, 1.0])
    assert (
        table.loc["10, floor", "top-left quarter"] > table.loc["10, floor", "bottom-right quarter"]
    )
    assert maps["10, floor"].mean().item() == pytest.approx(1.0)


def _reads_1d(n):
    """How many windows of a stride-2, 3-tap, padding-1 conv read each of n positions."""
    out = (n + 2 - 3) // 2 + 1
    counts = np.zeros(n)
    for o in range(out):
        for p in (2 * o - 1, 2 * o, 2 * o + 1):
            if 0 <= p < n:
                counts[p] += 1
    return counts


@pytest.mark.parametrize("n", [8, 9])
def test_stride_edge_table_counts_what_the_windows_read(n):
    table = path_report.stride_edge_table((1,), (n,))
    row = table.loc[(1, f"{n}x{n}")]
    c = _reads_1d(n)
    assert row["paths, first column"] == c[0] * c.sum()
    assert row["paths, last column"] == c[-1] * c.sum()
    lam = np.outer(c, c) / np.outer(c, c).mean()
    asym = np.abs(lam - lam[:, ::-1]).sum() / lam.sum()
    assert row["asymmetry"] == pytest.approx(asym)
    assert math.isnan(row["asymmetry, 2x2 blocks"]) == (n % 2 == 1)


def test_running_cv_curves_end_at_the_cv_of_the_mean_map():
    build = partial(paths.toy_net, 2, width=4, padding=1, relu=True)
    curves = path_report.running_cv_curves({"zeros": build}, (1, 8, 8), n_inits=8, tail_from=2)
    running, slope = curves["zeros"]
    mean = landscape.monte_carlo_landscape(build, (1, 8, 8), n_inits=8, squared=True)
    assert running.shape == (8,) and running[-1] == pytest.approx(landscape.cv(mean).item())
    n = np.arange(2, 9)
    assert slope == pytest.approx(np.polyfit(np.log(n), np.log(running[1:]), 1)[0])
    fig = path_report.running_cv_figure(curves, "zeros")
    assert fig.get_figwidth() <= 8.45
    plt.close(fig)
    with pytest.raises(ValueError, match="reference"):
        path_report.running_cv_figure(curves, "circular")


def _colour_bars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_map_grid_draws_one_colour_bar_per_compared_group_and_fits_the_column():
    a, b = torch.rand(6, 6, dtype=torch.float64) + 0.5, torch.rand(6, 6, dtype=torch.float64) * 3
    rows = {"first": {"x": a, "y": b, "z": a}, "second": {"x": b}}
    by_row = path_report.map_grid(rows)
    shared = path_report.map_grid(rows, scale="shared")
    assert len(_colour_bars(by_row)) == 2 and len(_colour_bars(shared)) == 1
    limits = {im.get_clim() for ax in shared.axes for im in ax.get_images()}
    assert limits == {(float(min(a.min(), b.min())), float(max(a.max(), b.max())))}
    flat = path_report.map_grid({"flat": {"x": torch.ones(4, 4)}}, min_span=0.2)
    assert flat.axes[0].get_images()[0].get_clim() == pytest.approx((0.9, 1.1))
    for fig in (by_row, shared, flat):
        assert fig.get_figwidth() * 100 <= 845 and fig.get_facecolor()[:3] == (1, 1, 1)
        plt.close(fig)
    with pytest.raises(ValueError, match="1 to 3"):
        path_report.map_grid({"wide": {str(i): a for i in range(4)}})


def test_path_graph_titles_the_counted_paths():
    fig = path_report.path_graph(length=6, depth=2)
    titles = [ax.get_title() for ax in fig.axes]
    profile = paths.conv_profile_1d(6, 3, 2).long().tolist()
    assert titles == [f"{profile[0]} paths from pixel 0", f"{profile[3]} paths from pixel 3"]
    assert fig.get_figwidth() * 100 <= 845
    plt.close(fig)


def test_power_law_figure_limits_its_series():
    maps = (torch.arange(1.0, 10.0).view(3, 3),) * 3
    fig = path_report.power_law_figure({("valid", 2): maps, ("zeros", 2): maps})
    assert len(fig.axes) == 2 and fig.get_figwidth() * 100 <= 845
    plt.close(fig)
    with pytest.raises(ValueError, match="1 to 3"):
        path_report.power_law_figure({(str(i),): maps for i in range(4)})


def test_fixed_table_formats_floats_nan_and_booleans():
    frame = pd.DataFrame(
        {"name": ["a", "b"], "r": [0.12345, float("nan")], "ok": [True, False], "n": [1200, 3]}
    ).set_index("name")
    text = path_report.fixed_table(frame, digits=2).text
    assert "0.12" in text and "–" in text and "yes" in text and "1,200" in text
    assert "nan" not in text
