"""The experiments of the P-objective chapter: its arms, a landscape recorder and the verdicts.

:func:`run_arm` trains one arm (:func:`make_arm`: plain, P-objective, input-gradient penalty,
circular or full padding) and measures accuracy, noise robustness and the landscape per epoch;
:func:`mean_std_table` summarises per-seed results (the verdicts use :mod:`pilcro_lib.stats`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pilcro_lib.data import ImageDataset
from pilcro_lib.landscape import flatness_or_nan, saliency
from pilcro_lib.objective import (
    DEFAULT_EVERY,
    DEFAULT_SUB_BATCH,
    InputGradientPenalty,
    PObjective,
    Regularizer,
)
from pilcro_lib.utils import (
    check_bool,
    check_choice,
    check_image_batch,
    check_labels,
    check_number,
    check_positive_int,
    check_tensor,
    check_type,
)

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
        check_image_batch("probe_inputs", probe_inputs)
        check_labels("probe_targets", probe_targets, probe_inputs.shape[0])
        if inner is not None and not callable(inner):
            raise TypeError(f"inner must be a regulariser (callable) or None, got {type(inner).__name__}")
        self.probe_inputs, self.probe_targets, self.inner = probe_inputs, probe_targets, inner
        self.landscapes: dict[int, Tensor] = {}
        self._epoch = 0
        self._model: nn.Module | None = None

    def record(self, model: nn.Module, epoch: int) -> Tensor:
        """Store and return the landscape ``[H, W]`` of the probe batch under ``epoch``."""
        check_type("model", model, nn.Module, "a torch.nn.Module")
        epoch = check_positive_int("epoch", epoch, minimum=0)
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

    def describe(self) -> dict:
        """The probe batch and the wrapped regulariser (for run keys)."""
        return {"probe_inputs": self.probe_inputs, "probe_targets": self.probe_targets, "inner": self.inner}

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
    check_number("target", target)
    for record in history:
        if not isinstance(record, dict) or not {key, "epoch", "epoch_time_s"} <= record.keys():
            found = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(f"history must be fit's records, each with 'epoch', 'epoch_time_s' and key={key!r}; got {found}")
    elapsed = 0.0
    for record in history:
        elapsed += record["epoch_time_s"]
        if record[key] >= target:
            return float(record["epoch"]), elapsed
    return math.nan, math.nan


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two maps of the same shape (average ranks for ties)."""
    from scipy.stats import spearmanr

    check_tensor("a", a, nonempty=True, finite=True)
    check_tensor("b", b, nonempty=True, finite=True)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return float(spearmanr(a.detach().flatten().cpu().numpy(), b.detach().flatten().cpu().numpy()).statistic)


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

    for name, data in (("train_set", train_set), ("val_set", val_set), ("test_set", test_set)):
        check_type(name, data, ImageDataset)
    epochs = check_positive_int("epochs", epochs)
    probe_size = check_positive_int("probe_size", probe_size)
    check_type("noise_levels", noise_levels, (list, tuple), "a list of noise levels")
    for sigma in noise_levels:
        check_number("noise_levels", sigma, minimum=0)
    if position_sets is not None:
        check_type("position_sets", position_sets, (list, tuple), "a list of ((row, col), ImageDataset)")
        for entry in position_sets:
            if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[1], ImageDataset)):
                raise ValueError(f"position_sets must hold ((row, col), ImageDataset) pairs, got {entry!r}")
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
        "flatness": flatness_or_nan(lands[epochs]),
        "flatness_init": flatness_or_nan(lands[0]),
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
    import pandas as pd

    check_type("frame", frame, pd.DataFrame, "a pandas DataFrame")
    digits = check_positive_int("digits", digits, minimum=0)
    for name, wanted in (("by", [by] if isinstance(by, str) else by), ("columns", columns)):
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} names columns that frame lacks: {missing}; it has {list(frame.columns)}")
    stats = frame.groupby(by, sort=False)[columns].agg(["mean", "std"])
    out = stats.xs("mean", axis=1, level=1).copy().astype(object)
    for col in columns:
        out[col] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(stats[(col, "mean")], stats[(col, "std")])]
    return out
