import pytest
import torch
import torchvision

from pilcro_lib.models import Normalize, cifar_resnet18, count_parameters, reference_net


def test_reference_net_parameter_count_closed_form():
    c, w, k = 1, 64, 10
    convs = 9 * c * w + 2 * 9 * w * w  # three 3x3 convs without bias (BatchNorm follows)
    bns = 3 * 2 * w
    head = w * k + k
    assert (
        count_parameters(reference_net(in_channels=c, width=w, num_classes=k)) == convs + bns + head
    )


def test_reference_net_flatten_head_and_padding():
    net = reference_net(padding="valid", head="flatten", input_size=28, width=8)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert net[-1].in_features == 8 * 22 * 22
    full = reference_net(padding="full", head="flatten", input_size=28, width=8)
    assert full[-1].in_features == 8 * 34 * 34


def test_cifar_resnet18_matches_torchvision_up_to_the_stem():
    ours = count_parameters(cifar_resnet18(num_classes=10))
    theirs = count_parameters(torchvision.models.resnet18(num_classes=10))
    assert ours == theirs - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3


def test_circular_resnet_is_invariant_to_circular_shifts_of_its_total_stride():
    net = cifar_resnet18(padding_mode="circular", width=8).eval()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    net = net.double()
    shifted = torch.roll(x, shifts=(8, 16), dims=(2, 3))
    torch.testing.assert_close(net(shifted), net(x))
    zero = cifar_resnet18(padding_mode="zeros", width=8).double().eval()
    assert not torch.allclose(zero(shifted), zero(x))


def test_normalize():
    norm = Normalize((0.5, 0.25), (0.5, 2.0))
    x = torch.ones(1, 2, 3, 3)
    assert torch.allclose(norm(x)[0, :, 0, 0], torch.tensor([1.0, 0.375]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(layer_types=("conv", "nope")), "kind='nope'"),
        (dict(padding_mode="mirror"), "padding_mode='mirror'"),
        (dict(padding="half"), "padding='half'"),
        (dict(head="max"), "head='max'"),
        (dict(input_size=5), "input_size=5 is too small"),
    ],
)
def test_reference_net_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reference_net(**kwargs)
