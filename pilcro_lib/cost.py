"""What the P-objective costs: seconds per training step, timed side by side.

:func:`step_cost` times the :func:`cost_arms` (the full-batch penalty, sub-batches, every k-th
batch, the default, the input-gradient penalty) against a plain step on the reference net;
``benchmarks/pobjective.py`` and chapter 5 print its ratios.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pilcro_lib.landscape import score_sum
from pilcro_lib.measure import training_step_times
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
from pilcro_lib.utils import check_choice


class ReuseForwardPenalty:
    """The full-batch penalty taken from the training forward itself (no second forward).

    Needs inputs that require grad in the training forward (``requires_input_grad``), which
    :func:`training_step_times` provides and :func:`pilcro_lib.train.fit` does not: it exists to
    measure what a second forward costs.
    """

    requires_input_grad = True

    def __init__(self, lam: float = 1.0, measure: str = "laplacian") -> None:
        self.lam, self.measure = lam, check_choice("measure", measure, MEASURES)

    def __call__(
        self, model: nn.Module, inputs: Tensor, targets: Tensor, outputs: Tensor
    ) -> Tensor:
        (grad,) = torch.autograd.grad(score_sum(outputs, targets), inputs, create_graph=True)
        return self.lam * landscape_measure(batch_landscape(grad), self.measure)


def cost_arms(lam: float = 1.0) -> dict[str, Regularizer | None]:
    """The arms of the cost benchmark: name -> regulariser (``None`` = plain step)."""
    settings = {
        "full batch": (None, 1), "sub_batch 32": (32, 1), "sub_batch 16": (16, 1),
        "sub_batch 8": (8, 1), "every 2": (None, 2), "every 4": (None, 4),
        "sub_batch 16, every 2": (16, 2), "sub_batch 32, every 4": (32, 4),
    }  # fmt: skip
    arms: dict[str, Regularizer | None] = {"plain": None}
    arms.update(
        {name: PObjective(lam, sub_batch=sb, every=k) for name, (sb, k) in settings.items()}
    )
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
