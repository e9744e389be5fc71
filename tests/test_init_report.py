import io
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from pilcro_lib import landscape, paths
from pilcro_lib.init_report import (
    COLUMN_INCHES,
    analytic_map,
    column_comparison,
    grid_ratios,
    landscape_table,
    measure_landscapes,
    shared_scale_grid,
)


def conv_net():
    """A net that path_count models: conv, BatchNorm, ReLU, global average, linear readout."""
    features = [nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()]
    return nn.Sequential(*features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))


class Gated(nn.Module):
    """A net that path_count does not model (its own forward)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        y = self.conv(x)
        return self.head((y * torch.sigmoid(y)).mean((2, 3)))


def test_measure_landscapes_agrees_with_the_pieces_it_is_made_of():
    run = measure_landscapes({"conv": conv_net, "gated": Gated}, 8, n_inits=3, n_inputs=2, seed=4)
    mean, per_init = landscape.monte_carlo_landscape(
        conv_net, (3, 8, 8), n_inits=3, n_inputs=2, mode="train", seed=4, return_per_init=True
    )
    torch.testing.assert_close(run.maps["conv"], mean)
    row = run.figures.loc["conv"]
    assert row.cv == pytest.approx(np.std(mean.numpy()), rel=1e-5)
    pixel_se = per_init.numpy().std(0, ddof=1) / math.sqrt(3) / per_init.numpy().mean()
    lower_median = np.sort(pixel_se.ravel())[(pixel_se.size - 1) // 2]  # torch's median
    assert row.pixel_se == pytest.approx(lower_median, rel=1e-5)
    assert row.cv_se == pytest.approx(landscape.bootstrap_flatness(per_init)["cv"])
    count = run.analytic["conv"]
    assert row.r_analytic == pytest.approx(
        np.corrcoef(count.numpy().ravel(), mean.numpy().ravel())[0, 1]
    )
    assert "gated" not in run.analytic and math.isnan(run.figures.loc["gated", "r_analytic"])


def test_analytic_map_uses_the_batch_statistics_in_train_mode_only():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = conv_net()
        noise = torch.randn(2, 3, 8, 8)
    train = paths.path_count(
        landscape.with_batch_statistics(model, noise), (3, 8, 8), weighting="variance"
    )
    evaluated = paths.path_count(model, (3, 8, 8), weighting="variance")
    torch.testing.assert_close(analytic_map(conv_net, 8, 2, seed=0), train / train.mean())
    torch.testing.assert_close(
        analytic_map(conv_net, 8, 2, mode="eval", seed=0), evaluated / evaluated.mean()
    )
    assert analytic_map(Gated, 8, 2) is None


def test_measure_landscapes_refuses_a_mode_it_lacks_or_does_not_know():
    with pytest.raises(ValueError, match="mode has no entry for 'b'"):
        measure_landscapes(
            {"a": conv_net, "b": conv_net}, 8, n_inits=1, n_inputs=1, mode={"a": "eval"}
        )
    with pytest.raises(ValueError, match="mode"):
        measure_landscapes({"a": conv_net}, 8, n_inits=1, n_inputs=1, mode="test")


def test_one_initialisation_has_no_error_bars():
    run = measure_landscapes({"conv": conv_net}, 8, n_inits=1, n_inputs=1)
    assert math.isnan(run.figures.loc["conv", "cv_se"])
    assert math.isnan(run.figures.loc["conv", "pixel_se"])


def test_grid_ratios_match_a_direct_count():
    g = torch.Generator().manual_seed(0)
    lam = torch.rand(32, 32, generator=g, dtype=torch.float64)
    lam[::8, ::8] += 3
    on = np.zeros((32, 32), bool)
    on[::8, ::8] = True
    a = lam.numpy()
    inner, inner_on = a[8:-8, 8:-8], on[8:-8, 8:-8]
    table = grid_ratios({"m": lam})
    assert table.loc["m", "grid_ratio"] == pytest.approx(a[on].mean() / a[~on].mean())
    assert table.loc["m", "grid_ratio_interior"] == pytest.approx(
        inner[inner_on].mean() / inner[~inner_on].mean()
    )
    with pytest.raises(ValueError, match="multiple of period"):
        grid_ratios({"m": lam}, margin=4)


def test_landscape_table_shows_errors_and_what_is_not_modelled():
    figures = pd.DataFrame(
        {
            "cv": [0.5012, 0.88],
            "cv_se": [0.0123, math.nan],
            "r_analytic": [0.98765, math.nan],
        },
        index=["VGG", "MobileNet"],
    )
    table = landscape_table(figures, ["cv", "r_analytic"], caption="32x32")
    assert list(table.frame.columns) == ["model", "cv", "r, analytic vs measured"]
    assert table.frame.values.tolist() == [
        ["VGG", "0.50 ± 0.01", "0.988"],
        ["MobileNet", "0.88", "not modelled"],
    ]
    assert "32x32" in table.html
    with pytest.raises(ValueError, match="not landscape columns"):
        landscape_table(figures, ["cv", "ci_low"])


def _png_width(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Image.open(buffer).size[0]


def _images(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def test_shared_scale_grid_puts_every_map_on_one_scale_with_one_colour_bar():
    g = torch.Generator().manual_seed(0)
    maps = {f"m{i}": torch.rand(16, 16, generator=g) * (i + 1) for i in range(5)}
    fig = shared_scale_grid(maps, suptitle="five maps")
    images = _images(fig)
    assert len(images) == 5 and len(fig.axes) == 6 + 1  # 6 panels (one off) and a colour bar
    pooled = torch.cat([m.flatten() for m in maps.values()])
    assert {im.get_clim() for im in images} == {(pooled.min().item(), pooled.max().item())}
    assert _png_width(fig) <= COLUMN_INCHES * 100 + 20
    clipped = shared_scale_grid(maps, quantile=0.9)
    top = float(np.quantile(pooled.numpy(), 0.9))
    assert _images(clipped)[0].get_clim()[1] == pytest.approx(top)
    plt.close(clipped)
    with pytest.raises(ValueError, match="ncols"):
        shared_scale_grid(maps, ncols=4)


def test_column_comparison_shares_a_scale_within_each_column_only():
    flat = torch.ones(8, 8)
    columns = {
        "a": {"measured": torch.rand(8, 8), "analytic": 5 * torch.rand(8, 8)},
        "flat": {"measured": flat, "analytic": flat},
    }
    fig = column_comparison(columns)
    images = _images(fig)
    assert len(images) == 4 and len(fig.axes) == 4 + 2  # a colour bar per column
    vmax_a = max(columns["a"]["measured"].max(), columns["a"]["analytic"].max()).item()
    clims = [im.get_clim() for im in images]  # row by row: a, flat, a, flat
    assert clims[0] == clims[2] and clims[0][1] == pytest.approx(vmax_a)
    assert clims[1] == clims[3] == pytest.approx((0.9, 1.1))  # min_span around a flat map
    assert _png_width(fig) <= COLUMN_INCHES * 100 + 20
    with pytest.raises(ValueError, match="1 to 3 settings"):
        column_comparison({str(i): {"m": flat} for i in range(4)})
