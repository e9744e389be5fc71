"""Tests of pilcro_lib.measure: FLOPs against closed forms, a known allocation, side-by-side
timings."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pilcro_lib.layers import LocallyConnected2d, LowRankLocallyConnected2d
from pilcro_lib.measure import (
    benchmark_layers,
    forward_flops,
    matmul_peak,
    peak_extra_memory,
    training_step_times,
)
from pilcro_lib.objective import PObjective


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 4),
    )


def test_forward_flops_closed_forms():
    n, c, f, k, s = 2, 3, 4, 3, 9
    x = torch.randn(n, c, s, s)
    conv_flops = 2 * n * f * c * 9 * 7 * 7
    assert forward_flops(nn.Conv2d(c, f, 3), x) == conv_flops
    assert forward_flops(LocallyConnected2d(c, f, 3, s), x) == conv_flops
    assert (
        forward_flops(LowRankLocallyConnected2d(c, f, 3, s, k, route="conv"), x) == k * conv_flops
    )  # the combine is elementwise
    # the kernel route: K per-position kernels' worth to build them, then N's worth to apply them
    kernel_route = LowRankLocallyConnected2d(c, f, 3, s, k, route="kernel")
    assert forward_flops(kernel_route, x) == (n + k) * conv_flops // n


def test_peak_extra_memory_counts_a_known_allocation():
    keep = torch.zeros(250_000)  # exists before the step: not counted

    def step():
        a = torch.ones(1_000_000)  # 4 MB
        b = a * 2  # another 4 MB while a is alive
        return (b + keep.sum()).sum()  # a third 4 MB (and a few scalars) while a and b are alive

    peak = peak_extra_memory(step, torch.device("cpu"))
    assert 12_000_000 <= peak < 12_000_100


def test_benchmark_layers_table():
    table = benchmark_layers(
        batch=2, channels=3, sizes=(6,), ranks=(1, 2), routes=("auto", "kernel"), repeats=1
    )
    assert list(table.layer) == [
        "conv",
        "lrlc K=1",
        "lrlc K=1 kernel route",
        "lrlc K=2",
        "lrlc K=2 kernel route",
        "lrlc_input K=4",
        "lc",
    ]
    assert list(table.route) == ["", "conv", "kernel", "conv", "kernel", "conv", ""]
    conv = table.iloc[0]
    assert conv.time_vs_conv == 1 and conv.peak_vs_conv == 1
    lc = table.iloc[-1]
    assert lc.params == 4 * 4 * 3 * (3 * 9 + 1)
    assert lc.unfold_plus_weights_MB == pytest.approx(4 * (2 * 27 * 16 + 16 * 27 * 3) / 2**20)
    assert (table.peak_MB > 0).all()


def test_training_step_times():
    seen = []

    class NeedsInputGrad:
        requires_input_grad = True

        def __call__(self, model, inputs, targets, outputs):
            seen.append(inputs.requires_grad)
            return None

    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 4, (8,))
    times = training_step_times(
        _net(),
        {"plain": None, "p": PObjective(1.0, every=1), "probe": NeedsInputGrad()},
        x,
        y,
        steps=1,
        rounds=2,
    )
    assert list(times) == ["plain", "p", "probe"] and all(t > 0 for t in times.values())
    assert seen and all(seen)
    with pytest.raises(ValueError, match="clock"):
        training_step_times(_net(), {"plain": None}, x, y, clock="gpu")


def test_matmul_peak_is_a_finite_throughput_and_checks_its_arguments():
    peak = matmul_peak(torch.float32, "cpu", n=64, repeats=2)
    assert math.isfinite(peak) and peak > 0
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        matmul_peak(torch.float32, "cpu", n=0)
    with pytest.raises(ValueError, match="repeats must be an integer >= 1, got 0"):
        matmul_peak(torch.float32, "cpu", repeats=0)
