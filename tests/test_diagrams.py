import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn

from pilcro_lib import diagrams, landscape, paths


@pytest.mark.parametrize(
    "size, kernel_size, stride, padding",
    [(6, 3, 2, 1), (7, 3, 2, 1), (6, 3, 1, 1), (8, 2, 2, 0), (6, 3, 1, 0), (9, 3, 3, 2)],
)
def test_window_counts_are_the_path_count_of_one_layer(size, kernel_size, stride, padding):
    net = paths.toy_net(1, kernel_size=kernel_size, stride=stride, padding=padding)
    expected = paths.path_count(net, (1, size, size))
    counts = diagrams.window_counts(size, kernel_size, stride, padding)
    assert torch.equal(counts, expected)


def test_windows_follow_pytorchs_output_size():
    for size, k, s, p in [(6, 3, 2, 1), (7, 3, 2, 1), (5, 2, 2, 0)]:
        out = nn.Conv2d(1, 1, k, s, p)(torch.zeros(1, 1, size, size)).shape[-1]
        windows = diagrams.windows_1d(size, k, s, p)
        assert len(windows) == out
    # 6 pixels, 3x3/2, padding 1: the right padding (position 6) is never read
    assert [list(w) for w in diagrams.windows_1d(6, 3, 2, 1)] == [
        [-1, 0, 1],
        [1, 2, 3],
        [3, 4, 5],
    ]
    with pytest.raises(ValueError, match="padding"):
        diagrams.windows_1d(6, 3, 2, -1)


def test_window_diagram_writes_the_counts_it_draws():
    fig = diagrams.window_diagram(6, 3, 2, 1)
    right = fig.axes[1]
    shown = [t.get_text() for t in right.texts]
    counts = diagrams.window_counts(6, 3, 2, 1).flatten()
    assert shown == [f"{c:.0f}" for c in counts.tolist()]
    assert len(fig.axes[0].texts) == 9  # one label per output of the 3 x 3 output map
    width_px = fig.get_size_inches()[0] * 100
    assert width_px <= 845
    matplotlib.pyplot.close(fig)


def _net():
    torch.manual_seed(0)  # a small net with BatchNorm, so that the mode matters
    return paths.toy_net(1, in_channels=2, width=4, batchnorm=True, relu=True, num_classes=3)


def test_measurement_steps_against_a_loop_over_images():
    model = _net()
    images, labels = torch.rand(4, 2, 8, 8), torch.tensor([0, 1, 2, 1])
    steps = diagrams.measurement_steps(model, images, labels, mode="eval")
    model.eval()
    for b in range(4):  # eval mode: each image's gradient on its own
        x = images[b : b + 1].clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x), labels[b : b + 1], reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.allclose(steps["gradient"][b], grad[0], atol=1e-6)
        assert torch.allclose(steps["saliency"][b], grad[0].abs().sum(0), atol=1e-6)
    ours = landscape.importance_landscape(model, images, labels, normalize=False, mode="eval")
    assert torch.allclose(steps["landscape"], ours, atol=1e-6)
    assert torch.allclose(steps["normalised"].mean(), torch.tensor(1.0, dtype=torch.float64))


def test_measurement_steps_leave_the_model_as_it_was():
    model = _net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    diagrams.measurement_steps(model, torch.rand(4, 2, 8, 8), torch.tensor([0, 1, 2, 1]))
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_measurement_diagram_draws_the_steps():
    model = _net()
    steps = diagrams.measurement_steps(model, torch.rand(4, 2, 8, 8), torch.tensor([0, 1, 2, 1]))
    fig = diagrams.measurement_diagram(steps, shown=3)
    arrays = [im.get_array() for im in fig.axes[0].images]
    assert len(arrays) == 3 * 3 + 1  # three decks of three cards, and the landscape
    assert torch.allclose(torch.as_tensor(arrays[-1].data), steps["normalised"])
    assert any(torch.equal(torch.as_tensor(a.data), steps["saliency"][0]) for a in arrays)
    assert fig.get_size_inches()[0] * 100 <= 845
    matplotlib.pyplot.close(fig)
