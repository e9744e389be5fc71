"""The P-objective: a training penalty on the curvature of the importance landscape.

This is **our formulation** of the idea in the PILCRO abstract (theory notes, section 4)::

    J(theta) = E[loss] + lam * measure(Lambda_batch)

``Lambda_batch`` is the normalised importance landscape of the current batch (or of its first
``sub_batch`` samples): the batch mean of the pixel saliency ``sum_c |d loss / d x_{c,u}|``,
divided by its spatial mean. The input gradient is taken with ``create_graph=True``, so the
penalty is differentiable in the parameters (double backpropagation).

Measures (all zero on a flat landscape, all smooth at it):

- ``laplacian``: ``curvature(Lambda) = mean_u (Delta Lambda)(u)^2`` (the default);
- ``gradient``: ``gradient_energy(Lambda) = mean_u |grad Lambda(u)|^2``;
- ``cv``: ``cv(Lambda)^2``, the spatial variance (squared, because ``std`` has an infinite
  derivative at a flat map).

The penalty needs the gradient of the loss with respect to the inputs, which the ordinary
training forward does not keep, so it runs a second forward on the (sub-)batch. In train mode
BatchNorm would then update its running statistics twice per step (once with a small
sub-batch); :func:`frozen_batchnorm_stats` keeps them untouched during the penalty's forward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from pilcro_lib.landscape import (
    SCORES,
    curvature,
    flatness_or_nan,
    gradient_energy,
    normalize,
    score_sum,
)
from pilcro_lib.utils import (
    check_choice,
    check_image_batch,
    check_labels,
    check_map,
    check_number,
    check_positive_int,
    check_tensor,
    check_type,
)

MEASURES = ("laplacian", "gradient", "cv")
# The cheap default of the regularisers: a landscape from the first 32 samples of every 4th batch.
# About 1.1x a plain step on the fast CNN (chapter 5's cost table). Chapter 5 trains it beside the
# full-batch penalty, two other cheap settings and plain training: each ends flatter than plain
# training; this one keeps the plain accuracy and broad shape (sub-batches of 8 samples cost two
# points, the flatter settings raise cv) but ends more curved than the full-batch penalty.
DEFAULT_SUB_BATCH = 32
DEFAULT_EVERY = 4
Regularizer = Callable[[nn.Module, Tensor, Tensor, "Tensor | None"], "Tensor | None"]


def landscape_measure(lam: Tensor, measure: str = "laplacian") -> Tensor:
    """The penalised figure of a normalised landscape ``[..., H, W]`` -> ``[...]``."""
    check_choice("measure", measure, MEASURES)
    check_map("lam", lam)
    if measure == "laplacian":
        return curvature(lam)
    if measure == "gradient":
        return gradient_energy(lam)
    # cv(lam) ** 2: smooth at a flat map, where cv itself is not
    return lam.flatten(-2).var(dim=-1, unbiased=False)


@contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Run a forward in train mode (batch statistics) without touching BatchNorm's running stats.

    Sets every BatchNorm's ``momentum`` to 0 (running stats are then updated by a factor of
    exactly 0, in place, before autograd saves them) and restores ``momentum`` and
    ``num_batches_tracked`` afterwards.
    """
    check_type("model", model, nn.Module, "a torch.nn.Module")
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            tracked = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
            saved.append((m, m.momentum, tracked))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


SPATIAL_DIMS = "[batch, channels, height, width] (the P-objective needs a spatial input)"


def _check_inputs(inputs: Tensor, targets: Tensor | None) -> None:
    check_image_batch("inputs", inputs, dims=SPATIAL_DIMS)
    if targets is not None:
        check_labels("targets", targets, inputs.shape[0])


def _check_sub_batch(sub_batch: int | None) -> int | None:
    return None if sub_batch is None else check_positive_int("sub_batch", sub_batch)


def input_gradient(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None,
    *,
    score: str = "loss",
    sub_batch: int | None = None,
) -> Tensor:
    """``d s / d x`` of the summed score of the first ``sub_batch`` samples.

    inputs: ``[B, C, H, W]``; targets: ``[B]`` or ``None``. Returns ``[b, C, H, W]``
    with ``b = sub_batch or B``, kept in the graph: differentiable in the parameters.
    BatchNorm running statistics are left untouched (:func:`frozen_batchnorm_stats`).
    """
    _check_inputs(inputs, targets)
    check_choice("score", score, SCORES)
    sub_batch = _check_sub_batch(sub_batch)
    if sub_batch is not None and sub_batch > inputs.shape[0]:
        n = inputs.shape[0]
        message = f"sub_batch={sub_batch} is larger than the batch ({n} samples)"
        raise ValueError(message)
    b = sub_batch or inputs.shape[0]
    x = inputs[:b].detach().requires_grad_(True)
    y = None if targets is None else targets[:b]
    with torch.enable_grad(), frozen_batchnorm_stats(model):
        s = score_sum(model(x), y, score)
        (grad,) = torch.autograd.grad(s, x, create_graph=True)
    return grad


def batch_landscape(grad: Tensor) -> Tensor:
    """The normalised batch landscape ``Lambda [H, W]`` of gradients ``[B, C, H, W]``"""
    check_tensor("grad", grad, ndim=4, dims="[B, C, H, W]")
    return normalize(grad.abs().sum(1).mean(0))


def pilcro_penalty(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | None,
    *,
    measure: str = "laplacian",
    score: str = "loss",
    sub_batch: int | None = None,
) -> Tensor:
    """The P-objective's penalty ``measure(Lambda_batch)``: a scalar, differentiable in
    the parameters.

    inputs: ``[B, C, H, W]`` in the model's input space; targets: ``[B]`` class indices
    (or ``None`` for ``score="logsumexp"``/``"readout"``). ``sub_batch``: use only the
    first ``sub_batch`` samples (cheaper; ``None`` = all).
    """
    check_choice("measure", measure, MEASURES)
    grad = input_gradient(model, inputs, targets, score=score, sub_batch=sub_batch)
    return landscape_measure(batch_landscape(grad), measure)


class _InputGradientRegularizer:
    """Shared machinery of the regularisers for :func:`pilcro_lib.train.fit`.

    Counts steps, applies the penalty every ``every``-th step after ``warmup_epochs``, on the
    first ``sub_batch`` samples of the batch (the whole batch when a short last batch is smaller;
    ``sub_batch=None, every=1`` is the full-batch penalty on every step), and logs the mean
    penalty and the flatness figures of that epoch's mean landscape.
    """

    def __init__(
        self,
        lam: float,
        *,
        every: int = DEFAULT_EVERY,
        sub_batch: int | None = DEFAULT_SUB_BATCH,
        warmup_epochs: int = 0,
        score: str = "loss",
    ) -> None:
        self.lam = check_number("lam", lam, minimum=0)
        self.every = check_positive_int("every", every)
        self.sub_batch = _check_sub_batch(sub_batch)
        self.warmup_epochs = check_positive_int("warmup_epochs", warmup_epochs, minimum=0)
        self.score = check_choice("score", score, SCORES)
        self.step = 0
        self.epoch = 0
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        self._penalty_sum = 0.0
        self._count = 0
        self._landscape_sum: Tensor | None = None

    def penalty(self, grad: Tensor, land: Tensor) -> Tensor:
        """The penalty from input gradients ``[b, C, H, W]`` and their landscape ``[H, W]``."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch
        self._reset_epoch()

    def __call__(
        self, model: nn.Module, inputs: Tensor, targets: Tensor, outputs: Tensor | None = None
    ) -> Tensor | None:
        check_tensor(
            "inputs", inputs, ndim=4, dims=SPATIAL_DIMS
        )  # shape only: no device sync on skipped steps
        step, self.step = self.step, self.step + 1
        if self.lam == 0 or self.epoch < self.warmup_epochs or step % self.every:
            return None
        b = inputs.shape[0] if self.sub_batch is None else min(self.sub_batch, inputs.shape[0])
        grad = input_gradient(model, inputs, targets, score=self.score, sub_batch=b)
        land = batch_landscape(grad)
        p = self.penalty(grad, land)
        self._penalty_sum += p.item()
        self._count += 1
        land = land.detach().double()
        self._landscape_sum = land if self._landscape_sum is None else self._landscape_sum + land
        return self.lam * p

    def epoch_log(self) -> dict[str, float]:
        """``penalty`` (mean raw penalty this epoch) and ``landscape_<figure>`` of the epoch's mean
        landscape.

        NaN when no penalised step happened this epoch (warm-up, ``lam = 0``).
        """
        log = {"penalty": self._penalty_sum / self._count if self._count else math.nan}
        figures = flatness_or_nan(self._landscape_sum)
        for key in (
            "cv",
            "curvature",
            "gradient_energy",
            "border_ratio",
            "max_over_min",
            "checkerboard",
        ):
            log[f"landscape_{key}"] = figures[key]
        return log

    def describe(self) -> dict:
        """The regulariser's name and every parameter (for run keys); also its step and epoch
        counters once it has been used, since a reused regulariser starts where it stopped."""
        params = ("lam", "measure", "every", "sub_batch", "warmup_epochs", "score")
        used = {"state": self.state_dict()} if self.step or self.epoch else {}
        return {
            "name": type(self).__name__,
            **{p: getattr(self, p) for p in params if hasattr(self, p)},
            **used,
        }

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if not isinstance(state, dict) or not {"step", "epoch"} <= state.keys():
            raise ValueError(
                f"state must be a dict with 'step' and 'epoch' (from state_dict()), got {state!r}"
            )
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self._reset_epoch()


class PObjective(_InputGradientRegularizer):
    """The P-objective as a :func:`pilcro_lib.train.fit` regulariser: adds ``lam * pilcro_penalty``.

    ``measure``: see :data:`MEASURES`. ``every``: penalise every k-th step only.
    ``sub_batch``: estimate the landscape on the first ``sub_batch`` samples of each batch.
    The defaults are the cheap setting (:data:`DEFAULT_SUB_BATCH`, :data:`DEFAULT_EVERY`).
    ``warmup_epochs``: no penalty in the first epochs.
    """

    def __init__(
        self,
        lam: float,
        *,
        measure: str = "laplacian",
        every: int = DEFAULT_EVERY,
        sub_batch: int | None = DEFAULT_SUB_BATCH,
        warmup_epochs: int = 0,
        score: str = "loss",
    ) -> None:
        self.measure = check_choice("measure", measure, MEASURES)
        super().__init__(
            lam, every=every, sub_batch=sub_batch, warmup_epochs=warmup_epochs, score=score
        )

    def penalty(self, grad: Tensor, land: Tensor) -> Tensor:
        return landscape_measure(land, self.measure)

    def __repr__(self) -> str:
        return (
            f"PObjective(lam={self.lam}, measure={self.measure!r}, every={self.every}, "
            f"sub_batch={self.sub_batch}, warmup_epochs={self.warmup_epochs})"
        )


class InputGradientPenalty(_InputGradientRegularizer):
    """The classic control: ``lam * mean_b ||d loss_b / d x_b||^2``, at the P-objective's cost.

    Penalises small input gradients rather than a flat landscape; same double backprop, same
    ``every``/``sub_batch`` options, and it logs the same landscape figures.
    """

    def penalty(self, grad: Tensor, land: Tensor) -> Tensor:
        return grad.pow(2).flatten(1).sum(1).mean()

    def __repr__(self) -> str:
        return (
            f"InputGradientPenalty(lam={self.lam}, every={self.every}, sub_batch={self.sub_batch}, "
            f"warmup_epochs={self.warmup_epochs})"
        )
