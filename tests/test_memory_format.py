"""The memory format that ``fit`` trains in on a CPU: ``channels_last`` only where PyTorch's CPU
convolution computes it correctly (:func:`pilcro_lib.train.channels_last_is_safe`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pilcro_lib import layers, models, train
from pilcro_lib.data import ImageDataset

DRIVER = Path(__file__).with_name("strided_conv_driver.py")


@pytest.mark.parametrize(
    "model, safe",
    [
        (nn.Conv2d(4, 8, 1, stride=2), False),
        (nn.Conv2d(16, 32, 1, stride=(1, 2)), False),
        (nn.Conv2d(4, 8, 1), True),
        (nn.Conv2d(4, 8, 3, stride=2), True),
        (models.cifar_resnet18(width=4), False),  # its projection shortcuts
        (models.fast_cnn(width=4), True),
        (models.reference_net(in_channels=1, width=4, num_classes=10), True),
        (layers.LowRankLocallyConnected2d(2, 3, 1, 8, stride=2, rank=2), False),
        (layers.LowRankLocallyConnected2d(2, 3, 3, 8, stride=2, rank=2), True),
    ],
)
def test_channels_last_is_unsafe_for_strided_1x1_convolutions(model, safe):
    assert train.channels_last_is_safe(model) is safe


def _toy(channels: int = 2, size: int = 12) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset(
        torch.rand(16, channels, size, size, generator=g), torch.arange(16) % 2, ["a", "b"], "toy"
    )


@pytest.mark.parametrize(
    "stride, expected", [(2, torch.contiguous_format), (1, torch.channels_last)]
)
def test_fit_trains_in_channels_last_only_where_it_is_safe(stride, expected):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 1, stride=stride, bias=False),
        nn.Conv2d(4, 4, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    train.fit(model, _toy(), _toy(), epochs=1, recipe="fast", device="cpu", progress=False)
    weight = model[1].weight
    assert weight.is_contiguous(memory_format=expected) and not (
        expected == torch.contiguous_format
        and weight.is_contiguous(memory_format=torch.channels_last)
    )


def test_training_the_networks_that_reach_the_cpu_convolution_bug_neither_crashes_nor_gives_nan():
    """The minimal case (``Conv2d(c, 2c, 1, stride=2)``, c = 2-8, on 48/64-pixel inputs) and the
    P-objective on the ResNet-18 at widths 2-8, trained by ``fit`` with the fast recipe in a
    subprocess. With the rule bypassed (``strided_conv_driver.py unsafe``) this driver died with
    a segfault in each of three tries with torch 2.14.1."""
    out = subprocess.run(
        [sys.executable, str(DRIVER)], capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    assert out.stdout.strip().endswith("finite"), out.stdout[-2000:]
