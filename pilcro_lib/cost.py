"""What the P-objective costs: seconds per training step, timed side by side.

:func:`step_cost` times the :func:`cost_arms` (the full-batch penalty, sub-batches, every k-th
batch, the default, the input-gradient penalty) against a plain step on the reference net;
``benchmarks/pobjective.py`` and chapter 5 print its ratios.
"""

from __future__ import annotations

import statistics
import time
from copy import deepcopy

import torch
from torch import Tensor, nn

from pilcro_lib.landscape import score_sum
from pilcro_lib.objective import (
    DEFAULT_EVERY,
    DEFAULT_SUB_BATCH,
    MEASURES,
    InputGradientPenalty,
    PObjective,
    Regularizer,
    batch_landscape,
    landscape_measure,
)
from pilcro_lib.utils import check_choice, check_positive_int


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
    """Median seconds per training step (forward, loss + regulariser, backward, Adam step) of each arm.

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
    sync = torch.cuda.synchronize if inputs.is_cuda else (lambda: None)
    check_positive_int("steps", steps)
    check_positive_int("rounds", rounds)
    arms = {}
    for name, reg in regularizers.items():
        copy = deepcopy(model).train()
        arms[name] = (copy, torch.optim.Adam(copy.parameters(), lr=lr), reg)

    def step(copy: nn.Module, opt: torch.optim.Optimizer, reg: Regularizer | None) -> None:
        x = inputs.detach().requires_grad_(True) if getattr(reg, "requires_input_grad", False) else inputs
        out = copy(x)
        loss = nn.functional.cross_entropy(out, targets)
        extra = reg(copy, x, targets, out) if reg is not None else None
        opt.zero_grad(set_to_none=True)
        (loss if extra is None else loss + extra).backward()
        opt.step()

    times: dict[str, list[float]] = {name: [] for name in arms}
    for name, arm in arms.items():
        step(*arm)
    for _ in range(rounds):
        for name, arm in arms.items():
            sync()
            start = now()
            for _ in range(steps):
                step(*arm)
            sync()
            times[name].append((now() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


class ReuseForwardPenalty:
    """The full-batch penalty taken from the training forward itself (no second forward).

    Needs inputs that require grad in the training forward (``requires_input_grad``), which
    :func:`training_step_times` provides and :func:`pilcro_lib.train.fit` does not: it exists to
    measure what a second forward costs.
    """

    requires_input_grad = True

    def __init__(self, lam: float = 1.0, measure: str = "laplacian") -> None:
        self.lam, self.measure = lam, check_choice("measure", measure, MEASURES)

    def __call__(self, model: nn.Module, inputs: Tensor, targets: Tensor, outputs: Tensor) -> Tensor:
        (grad,) = torch.autograd.grad(score_sum(outputs, targets), inputs, create_graph=True)
        return self.lam * landscape_measure(batch_landscape(grad), self.measure)


def cost_arms(lam: float = 1.0) -> dict[str, Regularizer | None]:
    """The arms of the cost benchmark: name -> regulariser (``None`` = plain step)."""
    settings = {
        "full batch": (None, 1), "sub_batch 32": (32, 1), "sub_batch 16": (16, 1), "sub_batch 8": (8, 1),
        "every 2": (None, 2), "every 4": (None, 4), "sub_batch 16, every 2": (16, 2), "sub_batch 32, every 4": (32, 4),
    }  # fmt: skip
    arms: dict[str, Regularizer | None] = {"plain": None}
    arms.update({name: PObjective(lam, sub_batch=sb, every=k) for name, (sb, k) in settings.items()})
    arms[f"default: sub_batch {DEFAULT_SUB_BATCH}, every {DEFAULT_EVERY}"] = PObjective(lam)
    arms["full batch, reusing the training forward"] = ReuseForwardPenalty(lam)
    arms["input-gradient penalty, full batch"] = InputGradientPenalty(lam, sub_batch=None, every=1)
    return arms


def step_cost(
    *,
    width: int = 32,
    batch: int = 128,
    steps: int = 4,
    rounds: int = 3,
    names: list[str] | None = None,
    clock: str = "cpu",
    seed: int = 0,
) -> dict[str, float]:
    """Seconds per training step of the :func:`cost_arms` (all, or those in ``names``).

    The reference net of ``width`` (``same`` zero padding) on a random batch ``[batch, 1, 28, 28]``,
    on CPU, timed side by side by :func:`training_step_times`.
    """
    from pilcro_lib.models import reference_net

    torch.manual_seed(seed)
    model = reference_net(width=width, padding="same")
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    arms = cost_arms()
    unknown = set(names or ()) - set(arms)
    if unknown:
        raise ValueError(f"names: unknown arms {sorted(unknown)}; choose from {list(arms)}")
    chosen = {k: v for k, v in arms.items() if names is None or k in names}
    return training_step_times(model, chosen, x, y, steps=steps, rounds=rounds, clock=clock)
