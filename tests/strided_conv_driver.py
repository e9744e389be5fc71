"""Trains, through the library, the networks that reach PyTorch's CPU convolution bug (1x1
stride-2 convolutions in float32 ``channels_last``, see
:func:`pilcro_lib.train.channels_last_is_safe`) and prints ``finite`` when every result is finite.
Run in a subprocess: the bug, when it is reached, kills the process (segfault, abort in ``free()``)
or turns values into NaN.

    python tests/strided_conv_driver.py [unsafe]

``unsafe``: bypass the rule (to show that this driver reaches the bug).
"""

from __future__ import annotations

import math
import sys

import torch
from torch import nn

from pilcro_lib import experiments, train
from pilcro_lib.data import ImageDataset


def images(n: int, channels: int, size: int, classes: int) -> ImageDataset:
    g = torch.Generator().manual_seed(channels * size)
    return ImageDataset(
        torch.rand(n, channels, size, size, generator=g),
        torch.arange(n) % classes,
        [str(i) for i in range(classes)],
        f"random{channels}x{size}",
    )


def main() -> None:
    torch.set_num_threads(1)
    if sys.argv[1:] == ["unsafe"]:
        train.channels_last_is_safe = lambda model: True
    results = []
    for c in (2, 4, 8):  # the minimal case: one 1x1 stride-2 convolution on 48x48 and 64x64 inputs
        for size in (48, 64):
            torch.manual_seed(c)
            model = nn.Sequential(
                nn.Conv2d(c, 2 * c, 1, stride=2, bias=False),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(2 * c, 2),
            )
            data = images(64, c, size, 2)
            history = train.fit(
                model, data, data, epochs=3, recipe="fast", batch_size=32, progress=False
            )
            results += [r["train_loss"] for r in history.records]
    for width in (2, 4, 8):  # the P-objective on the CIFAR ResNet-18 on the 48x48 position canvas
        model, reg = experiments.make_arm(
            "p_objective",
            model="resnet18",
            in_channels=1,
            num_classes=4,
            input_size=48,
            width=width,
            lam=1.0,
        )
        data = images(64, 1, 48, 4)
        history = train.fit(
            model, data, data, epochs=2, recipe="fast", regularizer=reg, progress=False
        )
        results += [r["train_loss"] for r in history.records] + [
            r["val_loss"] for r in history.records
        ]
    print(
        "finite" if all(math.isfinite(v) for v in results) else f"not finite: {results}", flush=True
    )


if __name__ == "__main__":
    main()
