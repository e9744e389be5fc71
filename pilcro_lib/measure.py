"""Measurement helpers shared by the chapters and ``benchmarks/``: FLOPs, peak memory, step times.

:func:`forward_flops` counts a forward pass's multiply-adds; :func:`peak_extra_memory` measures
the tensor memory a step allocates (CUDA or CPU); :func:`training_step_times` times training
steps of several arms side by side; :func:`matmul_peak` measures the machine's matrix-product
throughput (the physical limit achieved FLOP/s are compared with); :func:`benchmark_layers`
times conv, LC and LRLC layers side by side. Timings are medians or bests of interleaved
rounds, so a slow spell on a shared machine hits every arm alike.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from copy import deepcopy

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from pilcro_lib.layers import ROUTES, LocallyConnected2d, LowRankLocallyConnected2d
from pilcro_lib.models import count_parameters
from pilcro_lib.objective import Regularizer
from pilcro_lib.utils import (
    check_bool,
    check_choice,
    check_positive_int,
    check_tensor,
    check_type,
    get_device,
)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(
    dtype: torch.dtype,
    device: str | torch.device | None = None,
    *,
    n: int = 2048,
    repeats: int = 10,
) -> float:
    """The machine's matrix-product throughput in GFLOP/s: the best of three timings of
    ``repeats`` products ``[n, n] @ [n, n]`` in ``dtype`` (after one warm-up round)."""
    check_positive_int("n", n)
    check_positive_int("repeats", repeats)
    device = get_device(device)
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype),
        torch.randn(n, n, device=device, dtype=dtype),
    )
    best = float("inf")
    for _ in range(4):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * repeats / best / 1e9


def forward_flops(module: nn.Module, inputs: Tensor) -> int:
    """Floating-point operations (a multiply-add counts 2) of one forward pass on ``inputs``,
    as counted by ``torch.utils.flop_counter``: convolutions, matmuls and einsums only
    (elementwise work such as the LRLC conv route's combine, ``2*N*K*F*H_out*W_out``, is not
    counted). An LRLC layer counts for the route it takes on this batch (``K`` convolutions, or
    ``(N + K) / N`` of one on the kernel route)."""
    check_type("module", module, nn.Module, "a torch.nn.Module")
    check_tensor("inputs", inputs)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(inputs)
    return int(counter.get_total_flops())


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the process-level stderr (the profiler's C++ start/stop lines) for a block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def peak_extra_memory(step: Callable[[], object], device: torch.device) -> int:
    """Peak bytes of tensor memory allocated by ``step()`` above what existed before it.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the memory timeline of ``torch.profiler``
    (``profile_memory=True``; tensors alive before the step, e.g. parameters and inputs, excluded).
    """
    if not callable(step):
        raise TypeError(f"step must be a function of no arguments, got {type(step).__name__}")
    device = get_device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action, MemoryProfileTimeline

    with (
        _quiet_stderr(),
        profile(
            activities=[ProfilerActivity.CPU],
            profile_memory=True,
            record_shapes=True,
            with_stack=True,
        ) as prof,
    ):
        step()
    memory = prof._memory_profile()
    base = sum(size for _, action, _, size in memory.timeline if action == Action.PREEXISTING)
    _, sizes = MemoryProfileTimeline(memory)._coalesce_timeline("cpu")
    return max(sum(s) for s in sizes) - base


BENCHMARK_LAYERS = ("conv", "lrlc", "lrlc_input", "lc")


def _benchmark_layer(kind: str, channels: int, size: int, rank: int, route: str) -> nn.Module:
    if kind == "conv":
        return nn.Conv2d(channels, channels, 3, bias=False)
    if kind == "lc":
        return LocallyConnected2d(channels, channels, 3, size)
    combining = "input" if kind == "lrlc_input" else "row_col"
    return LowRankLocallyConnected2d(
        channels, channels, 3, size, rank, combining=combining, bias=False, route=route
    )


def _benchmark_specs(
    ranks: Sequence[int], routes: Sequence[str], input_rank: int
) -> list[tuple[str, str, int, str]]:
    """``(row name, layer kind, rank, route)`` of every benchmarked layer, in table order."""
    lrlc = [
        (f"lrlc K={k}" if r == "auto" else f"lrlc K={k} {r} route", "lrlc", k, r)
        for k in ranks
        for r in routes
    ]
    return [
        ("conv", "conv", 1, "auto"),
        *lrlc,
        (f"lrlc_input K={input_rank}", "lrlc_input", input_rank, "auto"),
        ("lc", "lc", 1, "auto"),
    ]


def benchmark_layers(
    *,
    batch: int = 32,
    channels: int = 64,
    sizes: Sequence[int] = (28, 32),
    ranks: Sequence[int] = (1, 2, 4, 8, 16),
    routes: Sequence[str] = ("auto",),
    input_rank: int = 4,
    channels_last: bool = False,
    repeats: int = 5,
    device: str | torch.device | None = None,
):
    """Forward+backward time and peak memory of conv, LRLC (each rank, each of ``routes``;
    row+column), input-dependent LRLC (``input_rank``) and LC, 3x3 ``channels -> channels`` valid
    layers on ``[batch, channels, size, size]`` inputs (``channels_last``: that memory format for
    inputs and 4-D weights), measured side by side (round-robin over ``repeats``; median time).

    Returns a pandas DataFrame, one row per (size, layer): ``rank``, ``route`` (the LRLC route
    taken, see :meth:`LowRankLocallyConnected2d.route_for`), ``params``, ``time_ms``,
    ``time_vs_conv``, ``peak_MB`` (extra memory of one step, see :func:`peak_extra_memory`),
    ``peak_vs_conv`` and, for LC, ``unfold_plus_weights_MB``.
    """
    import pandas as pd

    for name, value in (
        ("batch", batch),
        ("channels", channels),
        ("input_rank", input_rank),
        ("repeats", repeats),
    ):
        check_positive_int(name, value)
    check_type("sizes", sizes, Sequence, "a sequence of input sizes")
    check_type("ranks", ranks, Sequence, "a sequence of ranks")
    check_type("routes", routes, (list, tuple), "a list of LRLC routes")
    for size in sizes:
        check_positive_int("sizes", size, minimum=3)  # a valid 3x3 layer needs at least 3 pixels
    for rank in ranks:
        check_positive_int("ranks", rank)
    for route in routes:
        check_choice("routes", route, ROUTES)
    check_bool("channels_last", channels_last)
    device = get_device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    specs = _benchmark_specs(ranks, routes, input_rank)
    rows = []
    for size in sizes:
        layers = [
            _benchmark_layer(kind, channels, size, k, route).to(device, memory_format=memory_format)
            for _, kind, k, route in specs
        ]
        x = (
            torch.randn(batch, channels, size, size, device=device)
            .contiguous(memory_format=memory_format)
            .requires_grad_()
        )
        grad = torch.randn(batch, channels, size - 2, size - 2, device=device).contiguous(
            memory_format=memory_format
        )

        def step(layer: nn.Module, x: Tensor = x, grad: Tensor = grad) -> None:
            layer.zero_grad(set_to_none=True)
            x.grad = None
            layer(x).backward(grad)

        times: list[list[float]] = [[] for _ in layers]
        for layer in layers:  # warm-up
            step(layer)
        for _ in range(repeats):
            for i, layer in enumerate(layers):
                synchronize(device)
                start = time.perf_counter()
                step(layer)
                synchronize(device)
                times[i].append(time.perf_counter() - start)
        for (name, kind, k, _), layer, t in zip(specs, layers, times):
            layer.zero_grad(set_to_none=True)
            x.grad = None
            row = {
                "input": f"{size}x{size}",
                "layer": name,
                "rank": k,
                "route": layer.route_for(batch)
                if isinstance(layer, LowRankLocallyConnected2d)
                else "",
                "params": count_parameters(layer),
                "time_ms": 1e3 * float(torch.tensor(t).median()),
                "peak_MB": peak_extra_memory(lambda layer=layer: step(layer), device) / 2**20,
            }
            if kind == "lc":
                unfold = batch * channels * 9 * (size - 2) ** 2
                row["unfold_plus_weights_MB"] = 4 * (unfold + layer.weight.numel()) / 2**20
            rows.append(row)
    frame = pd.DataFrame(rows)
    conv = frame[frame.layer == "conv"].set_index("input")
    frame["time_vs_conv"] = frame.time_ms / frame.input.map(conv.time_ms)
    frame["peak_vs_conv"] = frame.peak_MB / frame.input.map(conv.peak_MB)
    columns = [
        "input",
        "layer",
        "rank",
        "route",
        "params",
        "time_ms",
        "time_vs_conv",
        "peak_MB",
        "peak_vs_conv",
        "unfold_plus_weights_MB",
    ]
    return frame[[c for c in columns if c in frame]]


def training_step_times(
    model: nn.Module,
    regularizers: dict[str, Regularizer | None],
    inputs: Tensor,
    targets: Tensor,
    *,
    steps: int = 4,
    rounds: int = 3,
    lr: float = 1e-3,
    clock: str = "wall",
) -> dict[str, float]:
    """Median seconds per training step (forward, loss + regulariser, backward, Adam step) of each
    arm.

    Every arm trains its own copy of ``model`` on the same batch ``inputs [B, C, H, W]``,
    ``targets [B]``; arms are timed in turn within each of ``rounds`` rounds (after one warm-up
    step each), so a slow spell on a shared machine hits them alike. ``None`` is the plain step.
    A regulariser with ``requires_input_grad = True`` gets inputs that require grad in the
    training forward (it may then differentiate the training outputs instead of a second forward).
    ``clock``: ``wall`` (``time.perf_counter``; synchronised on CUDA) or ``cpu`` (this process's
    CPU time, ``time.process_time``: robust on a shared CPU machine, meaningless on a GPU).
    """
    check_choice("clock", clock, ("wall", "cpu"))
    now = time.perf_counter if clock == "wall" else time.process_time
    check_positive_int("steps", steps)
    check_positive_int("rounds", rounds)
    arms = {}
    for name, reg in regularizers.items():
        copy = deepcopy(model).train()
        arms[name] = (copy, torch.optim.Adam(copy.parameters(), lr=lr), reg)

    def step(copy: nn.Module, opt: torch.optim.Optimizer, reg: Regularizer | None) -> None:
        x = (
            inputs.detach().requires_grad_(True)
            if getattr(reg, "requires_input_grad", False)
            else inputs
        )
        out = copy(x)
        loss = nn.functional.cross_entropy(out, targets)
        extra = reg(copy, x, targets, out) if reg is not None else None
        opt.zero_grad(set_to_none=True)
        (loss if extra is None else loss + extra).backward()
        opt.step()

    times: dict[str, list[float]] = {name: [] for name in arms}
    for arm in arms.values():
        step(*arm)
    for _ in range(rounds):
        for name, arm in arms.items():
            synchronize(inputs.device)
            start = now()
            for _ in range(steps):
                step(*arm)
            synchronize(inputs.device)
            times[name].append((now() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}
