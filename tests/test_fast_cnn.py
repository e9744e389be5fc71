import pytest
import torch

from pilcro_lib.models import PADDING_MODES, count_parameters, fast_cnn
from pilcro_lib.paths import path_count


def test_fast_cnn_parameter_count_closed_form():
    c, w, k = 3, 16, 7
    convs = 9 * (c * w + w * 2 * w + 2 * w * 2 * w + 2 * w * 4 * w)  # no bias: BatchNorm follows
    bns = 2 * (w + 2 * w + 2 * w + 4 * w)
    head = 4 * w * k + k
    assert count_parameters(fast_cnn(c, k, width=w)) == convs + bns + head


@pytest.mark.parametrize("padding", ["valid", "same", "full"])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_fast_cnn_shapes_and_path_count_for_every_padding(padding, padding_mode):
    net = fast_cnn(
        width=4, padding=padding, padding_mode=padding_mode, normalization=((0.3,), (0.4,))
    )
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    counts = path_count(net, (1, 28, 28))
    assert counts.shape == (28, 28) and (counts >= 0).all() and counts[10:18, 10:18].min() > 0


def test_circular_fast_cnn_is_invariant_to_circular_shifts_of_its_total_stride():
    net = fast_cnn(width=4, padding_mode="circular").double().eval()
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    shifted = torch.roll(x, shifts=(4, 8), dims=(2, 3))  # two 2x2 max-pools: total stride 4
    torch.testing.assert_close(net(shifted), net(x))
    zero = fast_cnn(width=4).double().eval()
    assert not torch.allclose(zero(shifted), zero(x))


def test_fast_cnn_runs_channels_last_under_cpu_bf16_autocast():
    torch.manual_seed(0)
    net = fast_cnn(width=8).eval()
    x = torch.rand(4, 1, 28, 28)
    reference = net(x)
    net = net.to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x.contiguous(memory_format=torch.channels_last))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.05)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(width=0), "width must be an integer >= 1"),
        (dict(padding_mode="mirror"), "padding_mode='mirror'.*'circular'"),
        (dict(padding="half"), "padding='half'.*'same'"),
        (
            dict(normalization=((0.5, 0.5), (0.2, 0.2))),
            "normalization has 2 channels but in_channels=1",
        ),
    ],
)
def test_fast_cnn_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fast_cnn(**kwargs)
