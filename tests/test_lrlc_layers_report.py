import io
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
from PIL import Image

from pilcro_lib.init_report import COLUMN_INCHES
from pilcro_lib.lrlc_layers_report import (
    combining_figure,
    cost_display,
    example_layers,
    kernel_figure,
    kernel_mosaic,
    ladder_display,
    mixing_figure,
    parameter_table,
    route_ratios,
)
from pilcro_lib.models import count_parameters


def by_hand(c, size, k):
    """Parameter counts of 3x3 valid c -> c layers, written out tap by tap."""
    ho = wo = size - 2
    return {
        "conv (no bias)": c * c * 3 * 3,
        "CoordConv (no bias)": (c + 2) * c * 3 * 3,
        "LC (per-position bias)": ho * wo * (c * c * 9 + c),
        f"LRLC K={k} row+col": k * c * c * 9 + k * ho + k * wo + ho + wo,
    }


def test_example_layers_have_the_parameters_counted_by_hand():
    layers = example_layers(5, 9, ranks=(3,), rank=2)
    assert list(layers)[-2:] == ["LRLC K=2 free", "LRLC K=2 input-dependent"]
    for name, count in by_hand(5, 9, 3).items():
        assert count_parameters(layers[name]) == count, name


def test_parameter_table_sets_each_count_beside_its_closed_form():
    table = parameter_table(lambda ho, wo: by_hand(4, ho + 2, 2), 4, sizes=(6,), ranks=(2,))
    rows = table.frame.set_index("layer")
    assert list(table.frame.columns) == ["input", "layer", "parameters", "closed form", "vs conv"]
    assert rows.loc["LC (per-position bias)", "parameters"] == f"{16 * (16 * 9 + 4):,}"
    assert rows.loc["LC (per-position bias)", "closed form"] == f"{16 * (16 * 9 + 4):,}"
    assert rows.loc["LRLC K=4 input-dependent", "closed form"] == "–"
    assert rows.loc["LRLC K=2 row+col", "vs conv"] == f"{(2 * 144 + 2 * 8 + 8) / 144:.2f}"


def test_ladder_display_shows_accuracy_in_percent_and_gains_in_points():
    ladder = pd.DataFrame(
        {"validation accuracy": [0.856, 0.872], "gain": [math.nan, 0.016], "entropy": [0.97, 0.9]},
        index=pd.Index([32, 64], name="epochs"),
    )
    shown = ladder_display(ladder).frame
    assert list(shown.columns) == [
        "epochs",
        "validation accuracy (%)",
        "gain (points)",
        "entropy",
    ]
    assert shown.values.tolist() == [["32", "85.6", "–", "0.970"], ["64", "87.2", "+1.6", "0.900"]]


def test_kernel_mosaic_places_each_kernel_between_gaps():
    tiles = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    mosaic = kernel_mosaic(tiles)
    assert mosaic.shape == (2 * 3 - 1, 3 * 3 - 1)
    for i in range(2):
        for j in range(3):
            assert torch.equal(mosaic[3 * i : 3 * i + 2, 3 * j : 3 * j + 2], tiles[i, j])
    assert torch.isnan(mosaic).sum() == mosaic.numel() - tiles.numel()


def benchmark_like():
    rows = [("conv", 1, "", 10.0)]
    for k, picked in ((1, "conv"), (8, "kernel")):
        rows += [
            (f"lrlc K={k}", k, picked, 1.1 * k),
            (f"lrlc K={k} conv route", k, "conv", 1.2 * k),
            (f"lrlc K={k} kernel route", k, "kernel", 6.0),
        ]
    rows.append(("lc", 1, "", 4.0))
    frame = pd.DataFrame(rows, columns=["layer", "rank", "route", "time_vs_conv"])
    return frame.assign(
        input="28x28",
        params=100,
        time_ms=frame.time_vs_conv * 10,
        peak_MB=1.5,
        peak_vs_conv=1.0,
        unfold_plus_weights_MB=math.nan,
    )


def test_route_ratios_divide_each_route_by_k_convolutions():
    ratios = route_ratios(benchmark_like())
    assert ratios.index.names == ["input", "K"]
    columns = ["as picked", "conv route", "kernel route"]
    assert ratios.loc[("28x28", 8), columns].tolist() == pytest.approx([1.1, 1.2, 0.75])
    assert ratios["route picked"].tolist() == ["conv", "kernel"]
    assert ratios.loc[("28x28", 1), "kernel route"] == pytest.approx(6.0)


def test_cost_display_has_readable_headers():
    shown = cost_display(benchmark_like()).frame
    assert list(shown.columns) == [
        "input",
        "layer",
        "K",
        "route",
        "parameters",
        "time (ms)",
        "time / conv",
        "peak memory (MB)",
        "memory / conv",
    ]
    assert shown.loc[0, "time (ms)"] == "100.0"


def _png_width(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Image.open(buffer).size[0]


def alpha_maps():
    g = torch.Generator().manual_seed(0)
    return torch.softmax(torch.randn(6, 5, 4, generator=g), -1)  # [H_out, W_out, K]


def test_combining_figure_draws_each_basis_on_one_scale():
    alpha = alpha_maps()
    fig = combining_figure(alpha)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 4
    assert {im.get_clim() for im in images} == {(alpha.min().item(), alpha.max().item())}
    assert torch.equal(torch.as_tensor(images[2].get_array().data), alpha[..., 2])
    assert _png_width(fig) <= COLUMN_INCHES * 100 + 20


def test_mixing_figure_shows_the_dominant_basis_and_the_entropy():
    alpha = alpha_maps()
    fig = mixing_figure(alpha)
    dominant, entropy = [im for ax in fig.axes for im in ax.get_images()]
    assert torch.equal(torch.as_tensor(dominant.get_array().data), alpha.argmax(-1))
    by_hand = -(alpha * alpha.log()).sum(-1) / math.log(4)
    torch.testing.assert_close(torch.as_tensor(entropy.get_array().data), by_hand)
    assert _png_width(fig) <= COLUMN_INCHES * 100 + 20


def test_kernel_figure_puts_bases_and_kernels_on_one_symmetric_scale():
    g = torch.Generator().manual_seed(1)
    bases, tiles = torch.randn(4, 3, 3, generator=g), 0.5 * torch.randn(6, 6, 3, 3, generator=g)
    fig = kernel_figure(bases, tiles, step=5, filter_index=9)
    images = [im for ax in fig.axes for im in ax.get_images()]
    lim = bases.abs().max().item()
    assert len(images) == 5 and {im.get_clim() for im in images} == {(-lim, lim)}
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 1
    assert _png_width(fig) <= COLUMN_INCHES * 100 + 20
