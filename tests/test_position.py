import pytest
import torch
from torch import nn

from pilcro_lib.data import ImageDataset
from pilcro_lib.landscape import asymmetry
from pilcro_lib.layers import CoordConv2d, LowRankLocallyConnected2d
from pilcro_lib.paths import path_count
from pilcro_lib.position import (
    DIRECTIONS,
    QUADRANTS,
    penultimate_features,
    position_net,
    position_probe,
    quadrant_task,
    run_position_arm,
    shift_consistency,
    shift_images,
    shifted,
)


def _toy(n=6, size=7, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g)
    return ImageDataset(images, torch.arange(n) % classes, [str(c) for c in range(classes)], "toy")


@pytest.mark.parametrize("dy, dx", [(0, 0), (1, 0), (0, -2), (-3, 2), (4, 4)])
def test_shift_images_matches_a_pixel_loop(dy, dx):
    images = torch.rand(2, 3, 6, 5)
    expected = torch.zeros_like(images)
    for r in range(6):
        for c in range(5):
            if 0 <= r - dy < 6 and 0 <= c - dx < 5:
                expected[..., r, c] = images[..., r - dy, c - dx]
    assert torch.equal(shift_images(images, dy, dx), expected)


def test_shift_images_refuses_bad_shifts():
    with pytest.raises(ValueError, match="dy"):
        shift_images(torch.rand(1, 1, 4, 4), 4, 0)
    with pytest.raises(ValueError, match="dx"):
        shift_images(torch.rand(1, 1, 4, 4), 0, 1.5)
    data = shifted(_toy(), 1, -1)
    assert torch.equal(data.labels, _toy().labels) and data.image_shape == (1, 7, 7)


class _BrightAt(nn.Module):
    """Class 0 when pixel (2, 2) is bright, else class 1."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        v = x[:, 0, 2, 2] * self.scale
        return torch.stack([v - 0.5, 0.5 - v], 1)


def test_shift_consistency_closed_form():
    images = torch.zeros(4, 1, 5, 5)
    images[:2, 0, 2, 2] = 1.0  # two images with one bright pixel, two dark
    data = ImageDataset(images, torch.zeros(4, dtype=torch.long), ["a", "b"], "dots")
    # every shift moves the bright pixel away (prediction changes); dark images stay dark
    assert shift_consistency(_BrightAt(), data) == pytest.approx(0.5)
    assert shift_consistency(_BrightAt(), data, distance=2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="distance"):
        shift_consistency(_BrightAt(), data, distance=0)


def test_quadrant_task_labels_are_the_quadrant_of_each_item():
    items = ImageDataset(torch.ones(40, 1, 3, 3), torch.zeros(40, dtype=torch.long), ["x"], "ones")
    task = quadrant_task(items, 12, jitter=2, seed=3)
    assert task.classes == QUADRANTS and task.image_shape == (1, 12, 12)
    for image, label in zip(task.images, task.labels):
        rows, cols = image[0].nonzero().T
        assert rows.max() - rows.min() == 2 and cols.max() - cols.min() == 2  # one whole item
        half_row, half_col = int(rows.min() >= 6), int(cols.min() >= 6)
        assert int(label) == 2 * half_row + half_col
        assert rows.min() % 6 <= 2 and cols.min() % 6 <= 2  # jitter 0..2 from the corner
    assert len(set(task.labels.tolist())) == 4
    assert torch.equal(quadrant_task(items, 12, jitter=2, seed=3).images, task.images)


def test_quadrant_task_refuses_bad_canvases():
    items = _toy(size=3)
    with pytest.raises(ValueError, match="canvas_size must be even"):
        quadrant_task(items, 11)
    with pytest.raises(ValueError, match="canvas_size=8"):
        quadrant_task(items, 8, jitter=2)
    with pytest.raises(ValueError, match="jitter"):
        quadrant_task(items, 12, jitter=-1)


def test_circular_padding_cannot_tell_the_quadrants_apart():
    """The docstring's claim: classes half a canvas apart are circular shifts, and the circular
    network with GAP gives them identical outputs; zero padding does not."""
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16)
    for padding, same in (("circular", True), ("zeros", False)):
        net = position_net(1, 4, 16, width=4, padding=padding).eval()
        with torch.no_grad():
            a, b = net(x), net(torch.roll(x, shifts=(8, 8), dims=(2, 3)))
        assert torch.allclose(a, b, atol=1e-5) == same


def test_position_net_variants():
    convs = [m for m in position_net(downsampling="stride", width=2) if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2), (2, 2), (1, 1), (1, 1)]
    assert not [m for m in position_net(downsampling="stride") if isinstance(m, nn.MaxPool2d)]
    blur = [
        m
        for m in position_net(padding="circular", downsampling="blur")
        if isinstance(m, nn.Conv2d) and m.groups > 1
    ]
    assert len(blur) == 2 and all(b.padding_mode == "circular" and b.stride == (2, 2) for b in blur)
    assert isinstance(position_net(first="coordconv")[0], CoordConv2d)
    lrlc = position_net(first="lrlc", rank=3, input_size=12)[0]
    assert isinstance(lrlc, LowRankLocallyConnected2d) and lrlc.rank == 3
    for kw in [dict(padding=p) for p in ("zeros", "reflect", "circular", "valid", "full")] + [
        dict(downsampling="blur"),
        dict(first="lrlc"),
        dict(first="coordconv", padding="full"),
    ]:
        assert position_net(1, 5, 28, width=2, **kw)(torch.rand(2, 1, 28, 28)).shape == (2, 5)
    for name, kw in (
        ("padding", dict(padding="same")),
        ("downsampling", dict(downsampling="avg")),
        ("first", dict(first="lc")),
        ("rank", dict(rank=0)),
    ):
        with pytest.raises(ValueError, match=name):
            position_net(**kw)


def test_strided_path_count_is_symmetric_only_on_odd_inputs():
    for size, symmetric in ((28, False), (29, True), (32, False), (33, True)):
        count = path_count(
            position_net(1, 10, size, width=2, downsampling="stride"), (1, size, size)
        )
        assert (float(asymmetry(count, -1)) < 1e-12) == symmetric
        assert (float(asymmetry(count, -2)) < 1e-12) == symmetric


def test_run_position_arm_measures_everything(tmp_path):
    tr, va, te = _toy(24, 12, 2, 0), _toy(8, 12, 2, 1), _toy(8, 12, 2, 2)
    m = run_position_arm(
        tr,
        va,
        te,
        epochs=2,
        width=2,
        lam=0.1,
        border_shift=2,
        probe_size=4,
        recipe="classic",
        downsampling="stride",
    )
    assert len(m["history"]) == 2 and sorted(m["landscapes"]) == ["0", "1", "2"]
    assert set(m["shift_acc"]) == set(DIRECTIONS) and 0 <= m["consistency"] <= 1
    assert m["steps_per_epoch"] == 1 and 0 <= m["test_acc"] <= 1
    plain = run_position_arm(tr, va, te, epochs=1, width=2, recipe="classic")
    assert "shift_acc" not in plain and "landscape_eval" not in plain
    deployed = run_position_arm(
        tr, va, te, epochs=1, width=2, recipe="classic", probe_size=4, eval_landscape=True
    )
    assert len(deployed["landscape_eval"]) == 12 and "curvature" in deployed["flatness_eval"]
    assert deployed["landscape_eval"] != deployed["landscapes"]["1"]  # running statistics
    with pytest.raises(TypeError, match="eval_landscape must be True or False"):
        run_position_arm(tr, va, te, epochs=1, eval_landscape=1)
    with pytest.raises(ValueError, match="lam"):
        run_position_arm(tr, va, te, epochs=1, lam=-1.0)
    with pytest.raises(TypeError, match="val_set"):
        run_position_arm(tr, None, te, epochs=1)


def _ridge_by_lstsq(x, y, ridge):
    """Ridge regression as least squares on the stacked system [X; sqrt(ridge) I] w = [y; 0]."""
    stacked = torch.cat([x, ridge**0.5 * torch.eye(x.shape[1], dtype=x.dtype)])
    target = torch.cat([y, torch.zeros(x.shape[1], y.shape[1], dtype=y.dtype)])
    return torch.linalg.lstsq(stacked, target).solution


def test_position_probe_is_ridge_regression_scored_on_held_out_items():
    g = torch.Generator().manual_seed(0)
    features = torch.rand(40, 6, generator=g, dtype=torch.float64)
    offsets = torch.rand(40, 2, generator=g, dtype=torch.float64) * 10
    got = position_probe(features, offsets, ridge=0.5)
    x = (features - features[:20].mean(0)) / features[:20].std(0)
    w = _ridge_by_lstsq(x[:20], offsets[:20] - offsets[:20].mean(0), 0.5)
    predicted = x[20:] @ w + offsets[:20].mean(0)
    total = ((offsets[20:] - offsets[20:].mean(0)) ** 2).sum(0)
    r2 = 1 - ((offsets[20:] - predicted) ** 2).sum(0) / total
    assert (got["r2_row"], got["r2_col"]) == pytest.approx((float(r2[0]), float(r2[1])))
    assert got["mae_px"] == pytest.approx(float((offsets[20:] - predicted).abs().mean()))
    # features that hold the position linearly give it back; noise does not
    exact = position_probe(torch.cat([offsets, features], 1), offsets, ridge=1e-9)
    assert exact["r2_row"] > 0.999 and exact["mae_px"] < 0.01
    assert got["r2_row"] < 0.5
    with pytest.raises(ValueError, match=r"offsets \[N, 2\]"):
        position_probe(features, offsets[:, :1])


def test_penultimate_features_are_the_last_layers_input_in_eval_mode():
    net = position_net(1, 4, 12, width=2)
    net.train()
    images = torch.rand(5, 1, 12, 12)
    got = penultimate_features(net, images, batch_size=2)
    net.eval()
    with torch.no_grad():
        expected = net[:-1](images).double()
    torch.testing.assert_close(got, expected)
    net.train()
    penultimate_features(net, images)
    assert net.training  # the model's mode is given back
    with pytest.raises(ValueError, match="must end in a linear layer"):
        penultimate_features(net[:-1], images)


def test_run_position_arm_probes_position_before_and_after_training():
    tr, va, te = _toy(24, 12, 2, 0), _toy(8, 12, 2, 1), _toy(8, 12, 2, 2)
    canvases, offsets = _toy(16, 12, 2, 3), torch.rand(16, 2) * 4
    m = run_position_arm(
        tr, va, te, epochs=1, width=2, recipe="classic", position_probe_set=(canvases, offsets)
    )
    assert (
        set(m["position_probe"]) == set(m["position_probe_init"]) == {"r2_row", "r2_col", "mae_px"}
    )
    with pytest.raises(ValueError, match="must be 12 px like the training images"):
        run_position_arm(
            tr, va, te, epochs=1, width=2, position_probe_set=(_toy(16, 10, 2, 3), offsets)
        )
