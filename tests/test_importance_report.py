"""Figures and tables of importance landscapes, against hand computations."""

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from pilcro_lib.importance_report import (
    captum_landscape,
    flatness_display,
    flatness_frame,
    maps_row,
    shared_maps,
)

MAX_FIGURE_PX = 845  # tests/test_page_debt.py: the widest figure the text column shows well


def _width_px(fig) -> int:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Image.open(buffer).size[0]


def _maps(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {f"map {i}": 0.5 + torch.rand(8, 8, generator=generator) for i in range(n)}


def test_flatness_frame_matches_hand_computed_figures():
    maps = _maps(2)
    frame = flatness_frame(maps)
    assert frame.index.tolist() == ["map 0", "map 1"]
    assert "border ratio" in frame.columns and "border_ratio" not in frame.columns
    for name, m in maps.items():
        lam = m.double().numpy() / m.double().numpy().mean()
        ring = np.ones(lam.shape, dtype=bool)
        ring[2:-2, 2:-2] = False
        assert frame.loc[name, "cv"] == pytest.approx(lam.std())  # population std
        assert frame.loc[name, "border ratio"] == pytest.approx(
            lam[ring].mean() / lam[~ring].mean()
        )
        assert frame.loc[name, "max over min"] == pytest.approx(lam.max() / lam.min())


def test_flatness_display_shows_significant_digits_and_a_map_column():
    frame = flatness_frame({"flat": torch.ones(8, 8), **_maps(1)})
    shown = flatness_display(frame).frame
    assert shown.columns[0] == "map" and shown["map"].tolist() == ["flat", "map 0"]
    assert shown.loc[0, "cv"] == "0" and shown.loc[0, "max over min"] == "1.00"
    assert len(shown.loc[1, "cv"].replace("0.", "", 1).lstrip("0")) == 3


def test_shared_maps_use_one_scale_and_one_colour_bar():
    maps = _maps(4)
    fig = shared_maps(maps, ncols=2)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 4 and len(fig.axes) == 5  # four maps and one colour bar
    low = min(m.min().item() for m in maps.values())
    high = max(m.max().item() for m in maps.values())
    assert all(im.get_clim() == pytest.approx((low, high)) for im in images)
    assert _width_px(fig) <= MAX_FIGURE_PX


def test_shared_maps_refuse_more_than_three_panels_a_row():
    with pytest.raises(ValueError, match="ncols must be 1 to 3"):
        shared_maps(_maps(4), ncols=4)
    with pytest.raises(ValueError, match=r"\[H, W\] map"):
        shared_maps({"bad": torch.ones(2, 3, 4)})


def test_maps_row_gives_each_quantity_its_own_colour_bar():
    a, b = _maps(2).values()
    fig = maps_row({"a": (a, "pixel value", "gray"), "b": (10 * b, "gradient", "viridis")})
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(fig.axes) == 4  # two maps, two colour bars
    assert images[1].get_clim() == pytest.approx((10 * b.min().item(), 10 * b.max().item()))
    assert _width_px(fig) <= MAX_FIGURE_PX
    with pytest.raises(ValueError, match="1 to 3 titles"):
        maps_row({str(i): (a, "x", "gray") for i in range(4)})


def test_captum_landscape_matches_a_per_image_gradient_loop():
    pytest.importorskip("captum")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(48, 4)
    )
    images, targets = torch.randn(5, 2, 6, 6), torch.tensor([0, 3, 1, 2, 3])
    expected = torch.zeros(6, 6, dtype=torch.float64)
    for image, target in zip(images, targets):  # one backward pass per image
        x = image.unsqueeze(0).clone().requires_grad_(True)
        model(x)[0, target].backward()
        expected += x.grad[0].abs().sum(0).double() / len(images)
    ours = captum_landscape(model, images, target=targets)
    assert ours.dtype == torch.float64 and ours.shape == (6, 6)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        captum_landscape(model, images[0])
