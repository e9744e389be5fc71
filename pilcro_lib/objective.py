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
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import deepcopy

import torch
from torch import Tensor, nn

from pilcro_lib.landscape import SCORES, curvature, flatness, gradient_energy, normalize, saliency, score_sum
from pilcro_lib.utils import check_choice, check_positive_int

MEASURES = ("laplacian", "gradient", "cv")
# The cheap default of the regularisers: a landscape from the first 32 samples of every 4th batch.
# Under 1.3x a plain step on the book's reference net (benchmarks/pobjective.py); of the settings that
# cheap, the one whose final flatness came closest to the full-batch penalty's (chapter 5 compares them).
DEFAULT_SUB_BATCH = 32
DEFAULT_EVERY = 4
Regularizer = Callable[[nn.Module, Tensor, Tensor, "Tensor | None"], "Tensor | None"]


def landscape_measure(lam: Tensor, measure: str = "laplacian") -> Tensor:
    """The penalised figure of a normalised landscape ``[..., H, W]`` -> ``[...]``."""
    check_choice("measure", measure, MEASURES)
    if measure == "laplacian":
        return curvature(lam)
    if measure == "gradient":
        return gradient_energy(lam)
    return lam.flatten(-2).var(dim=-1, unbiased=False)  # cv(lam) ** 2, smooth at a flat map


@contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Run a forward in train mode (batch statistics) without touching BatchNorm's running stats.

    Sets every BatchNorm's ``momentum`` to 0 (running stats are then updated by a factor of
    exactly 0, in place, before autograd saves them) and restores ``momentum`` and
    ``num_batches_tracked`` afterwards.
    """
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


def _check_inputs(inputs: Tensor) -> None:
    if not isinstance(inputs, Tensor) or inputs.dim() != 4:
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(
            f"inputs must be a 4-D image batch [batch, channels, height, width] (the P-objective needs a "
            f"spatial input), got {shape}"
        )


def _check_sub_batch(sub_batch: int | None) -> int | None:
    return None if sub_batch is None else check_positive_int("sub_batch", sub_batch)


def input_gradient(
    model: nn.Module, inputs: Tensor, targets: Tensor | None, *, score: str = "loss", sub_batch: int | None = None
) -> Tensor:
    """``d s / d x`` of the summed score for the first ``sub_batch`` samples, kept in the graph.

    inputs: ``[B, C, H, W]``; targets: ``[B]`` or ``None``. Returns ``[b, C, H, W]`` with
    ``b = sub_batch or B``, differentiable in the parameters. BatchNorm running statistics are
    left untouched (:func:`frozen_batchnorm_stats`).
    """
    _check_inputs(inputs)
    check_choice("score", score, SCORES)
    sub_batch = _check_sub_batch(sub_batch)
    if sub_batch is not None and sub_batch > inputs.shape[0]:
        raise ValueError(f"sub_batch={sub_batch} is larger than the batch ({inputs.shape[0]} samples)")
    b = sub_batch or inputs.shape[0]
    x = inputs[:b].detach().requires_grad_(True)
    y = None if targets is None else targets[:b]
    with torch.enable_grad(), frozen_batchnorm_stats(model):
        s = score_sum(model(x), y, score)
        (grad,) = torch.autograd.grad(s, x, create_graph=True)
    return grad


def batch_landscape(grad: Tensor) -> Tensor:
    """Normalised batch landscape ``Lambda`` ``[H, W]`` from input gradients ``[B, C, H, W]``."""
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
    """The P-objective's penalty ``measure(Lambda_batch)``: a scalar differentiable in the parameters.

    inputs: ``[B, C, H, W]`` in the model's input space; targets: ``[B]`` class indices (or
    ``None`` for ``score="logsumexp"``/``"readout"``). ``sub_batch``: use only the first
    ``sub_batch`` samples (cheaper; ``None`` = all).
    """
    check_choice("measure", measure, MEASURES)
    return landscape_measure(batch_landscape(input_gradient(model, inputs, targets, score=score, sub_batch=sub_batch)), measure)


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
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
        self.lam = float(lam)
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

    def __call__(self, model: nn.Module, inputs: Tensor, targets: Tensor, outputs: Tensor | None = None) -> Tensor | None:
        _check_inputs(inputs)
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
        """``penalty`` (mean raw penalty this epoch) and ``landscape_<figure>`` of the epoch's mean landscape.

        NaN when no penalised step happened this epoch (warm-up, ``lam = 0``).
        """
        log = {"penalty": self._penalty_sum / self._count if self._count else math.nan}
        figures = flatness(self._landscape_sum) if self._landscape_sum is not None else None
        for key in ("cv", "curvature", "gradient_energy", "border_ratio", "max_over_min", "checkerboard"):
            log[f"landscape_{key}"] = figures[key] if figures else math.nan
        return log

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
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
        super().__init__(lam, every=every, sub_batch=sub_batch, warmup_epochs=warmup_epochs, score=score)

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


# --- Experiment helpers: the arms of the P-objective chapter ------------------------------------

ARMS = ("plain", "p_objective", "input_gradient", "circular", "full")
MODELS = ("reference", "resnet18")


class LandscapeRecorder:
    """Wraps a regulariser (or ``None``) and records the model's landscape at the end of each epoch.

    The landscape (mean loss saliency, model in eval mode) of a fixed probe batch
    ``probe_inputs [N, C, H, W]``, ``probe_targets [N]`` is stored in ``landscapes[epoch]``
    (``[H, W]``, after ``epoch`` epochs of training: fit calls :meth:`epoch_log` after each
    epoch); call :meth:`record` with epoch 0 before training for the initial one. All hooks are
    passed on to ``inner``.
    """

    def __init__(self, probe_inputs: Tensor, probe_targets: Tensor, inner: Regularizer | None = None) -> None:
        _check_inputs(probe_inputs)
        self.probe_inputs, self.probe_targets, self.inner = probe_inputs, probe_targets, inner
        self.landscapes: dict[int, Tensor] = {}
        self._epoch = 0
        self._model: nn.Module | None = None

    def record(self, model: nn.Module, epoch: int) -> Tensor:
        """Store and return the landscape ``[H, W]`` of the probe batch under ``epoch``."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            land = saliency(model, self.probe_inputs.to(device), self.probe_targets.to(device)).mean(0)
        finally:
            model.train(was_training)
        self.landscapes[epoch] = land.detach().double().cpu()
        return self.landscapes[epoch]

    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch
        if hasattr(self.inner, "on_epoch_start"):
            self.inner.on_epoch_start(epoch)

    def __call__(self, model: nn.Module, inputs: Tensor, targets: Tensor, outputs: Tensor | None = None) -> Tensor | None:
        self._model = model
        return None if self.inner is None else self.inner(model, inputs, targets, outputs)

    def epoch_log(self) -> dict[str, float]:
        if self._model is not None:
            self.record(self._model, self._epoch + 1)
        return self.inner.epoch_log() if hasattr(self.inner, "epoch_log") else {}

    def state_dict(self) -> dict:
        inner = self.inner.state_dict() if hasattr(self.inner, "state_dict") else None
        return {"inner": inner, "landscapes": {k: v.tolist() for k, v in self.landscapes.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state["inner"] is not None:
            self.inner.load_state_dict(state["inner"])
        self.landscapes = {int(k): torch.tensor(v, dtype=torch.float64) for k, v in state["landscapes"].items()}

    def __repr__(self) -> str:
        return f"LandscapeRecorder({self.inner!r}, probe={len(self.probe_inputs)})"


def make_arm(
    arm: str,
    *,
    model: str = "reference",
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int = 28,
    width: int = 32,
    normalization: tuple | None = None,
    lam: float = 1.0,
    ig_lam: float = 1.0,
    sub_batch: int | None = DEFAULT_SUB_BATCH,
    every: int = DEFAULT_EVERY,
) -> tuple[nn.Module, Regularizer | None]:
    """The network and regulariser of one arm of the chapter's comparison.

    Arms: ``plain`` (zero ``same`` padding), ``p_objective`` (plain + :class:`PObjective`),
    ``input_gradient`` (plain + :class:`InputGradientPenalty`), and the architectural fixes
    ``circular`` (circular padding) and ``full`` (pad ``k - 1``; reference net only).
    ``model``: ``reference`` (:func:`pilcro_lib.models.reference_net` of ``width``) or
    ``resnet18`` (:func:`pilcro_lib.models.cifar_resnet18` of base width ``width``).
    """
    from pilcro_lib.models import cifar_resnet18, reference_net

    check_choice("arm", arm, ARMS)
    check_choice("model", model, MODELS)
    padding, padding_mode = {"circular": ("same", "circular"), "full": ("full", "zeros")}.get(arm, ("same", "zeros"))
    if model == "reference":
        net = reference_net(
            in_channels=in_channels, num_classes=num_classes, input_size=input_size, width=width,
            padding=padding, padding_mode=padding_mode, normalization=normalization,
        )  # fmt: skip
    elif arm == "full":
        raise ValueError("arm='full' (full padding) is only defined for model='reference'")
    else:
        net = cifar_resnet18(num_classes, in_channels, padding_mode=padding_mode, normalization=normalization, width=width)
    reg: Regularizer | None = None
    if arm == "p_objective":
        reg = PObjective(lam, sub_batch=sub_batch, every=every)
    elif arm == "input_gradient":
        reg = InputGradientPenalty(ig_lam, sub_batch=sub_batch, every=every)
    return net, reg


def epochs_to_reach(history: list[dict], target: float, key: str = "val_acc") -> tuple[float, float]:
    """First epoch whose ``key`` reaches ``target`` and the training wall time until then (s); NaN if never."""
    elapsed = 0.0
    for record in history:
        elapsed += record["epoch_time_s"]
        if record[key] >= target:
            return float(record["epoch"]), elapsed
    return math.nan, math.nan


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two maps of the same shape (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a.flatten().numpy(), b.flatten().numpy()).statistic)


def run_arm(
    arm: str,
    train_set,
    val_set,
    test_set,
    *,
    epochs: int,
    seed: int = 0,
    run_dir=None,
    noise_levels: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3),
    probe_size: int = 256,
    position_sets: list | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    device=None,
    progress: bool = False,
    **arm_kwargs,
) -> dict:
    """Train one arm (:func:`make_arm`; ``arm_kwargs`` go there) with :func:`pilcro_lib.train.fit`, then measure it.

    Datasets are :class:`~pilcro_lib.data.ImageDataset`. Returns JSON-serialisable metrics:
    ``history`` (fit's records), ``test_acc``, ``noise_acc`` (sigma -> accuracy under Gaussian
    noise in [0, 1] pixel space), ``landscapes`` (epoch -> ``[H, W]`` list, probe = the first
    ``probe_size`` test images), ``flatness`` / ``flatness_init`` (figures of the final and
    initial landscape), ``spearman_init_final``, ``train_time_s`` and, when ``position_sets``
    (``[((row, col), dataset), ...]``, see :func:`pilcro_lib.synthetic.position_grid`) is given,
    ``position_acc`` (one accuracy per entry, same order).
    """
    from pilcro_lib.train import evaluate, fit
    from pilcro_lib.utils import seed_everything

    seed_everything(seed)
    c, h, _ = train_set.image_shape
    model, reg = make_arm(arm, in_channels=c, num_classes=train_set.num_classes, input_size=h, **arm_kwargs)
    probe = test_set.subset(torch.arange(min(probe_size, len(test_set))))
    recorder = LandscapeRecorder(probe.float_images(), probe.labels, reg)
    recorder.record(model, 0)
    history = fit(
        model, train_set, val_set, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, run_dir=run_dir,
        regularizer=recorder, device=device, progress=progress,
    )  # fmt: skip
    lands = recorder.landscapes
    metrics = {
        "history": history.records,
        "test_acc": evaluate(model, test_set)["accuracy"],
        "noise_acc": {str(s): evaluate(model, test_set, noise=s, seed=seed)["accuracy"] for s in noise_levels},
        "landscapes": {str(k): v.tolist() for k, v in sorted(lands.items())},
        "flatness": flatness(lands[epochs]),
        "flatness_init": flatness(lands[0]),
        "spearman_init_final": spearman(lands[0], lands[epochs]),
        "train_time_s": sum(r["epoch_time_s"] for r in history.records),
    }
    if position_sets is not None:
        metrics["position_acc"] = [evaluate(model, data)["accuracy"] for _, data in position_sets]
    return metrics


def mean_std_table(frame, by: str | list[str], columns: list[str], *, digits: int = 3):
    """``mean ± std`` (over the rows of each group, e.g. seeds) of ``columns``, one row per ``by`` group.

    frame: a pandas DataFrame. Returns a DataFrame of strings (sample std, ``ddof=1``).
    """
    stats = frame.groupby(by, sort=False)[columns].agg(["mean", "std"])
    out = stats.xs("mean", axis=1, level=1).copy().astype(object)
    for col in columns:
        out[col] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(stats[(col, "mean")], stats[(col, "std")])]
    return out


def claim_verdict(treated, control, *, higher_is_better: bool, z: float = 2.0) -> dict[str, float | str]:
    """Does ``treated`` beat ``control`` (per-seed values)? Difference of means and its standard error.

    ``supported`` when the difference favours the treatment by more than ``z`` standard errors
    (Welch: ``sqrt(s_t^2/n_t + s_c^2/n_c)``), ``contradicted`` when it favours the control by as
    much, else ``not resolved`` (within seed-to-seed noise). NaN values count as missing.
    """
    t = torch.tensor([float(v) for v in treated], dtype=torch.float64)
    c = torch.tensor([float(v) for v in control], dtype=torch.float64)
    t, c = t[~t.isnan()], c[~c.isnan()]
    if len(t) < 2 or len(c) < 2:
        return {"treated": math.nan, "control": math.nan, "difference": math.nan, "std_error": math.nan, "verdict": "not measured"}
    diff = (t.mean() - c.mean()).item()
    se = math.sqrt(t.var().item() / len(t) + c.var().item() / len(c))
    gain = diff if higher_is_better else -diff
    verdict = "supported" if gain > z * se else "contradicted" if -gain > z * se else "not resolved"
    return {"treated": t.mean().item(), "control": c.mean().item(), "difference": diff, "std_error": se, "verdict": verdict}
