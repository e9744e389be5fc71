"""The experiments of the P-objective chapters: their arms, a landscape recorder and the verdicts.

:func:`run_arm` trains one arm (:func:`make_arm`: plain, P-objective, input-gradient penalty,
circular or full padding) with a recipe of :mod:`pilcro_lib.train` and measures accuracy,
accuracy under corruptions (:mod:`pilcro_lib.corruptions`) and the landscape per epoch, with
batch statistics; :func:`steps_to_reach` reads the time to a target off its history;
:func:`per_seed` and :func:`claim_verdicts` turn per-seed results into the tables of
:mod:`pilcro_lib.protocol` and :mod:`pilcro_lib.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from pilcro_lib.data import ImageDataset
from pilcro_lib.landscape import MODES, flatness_or_nan, importance_landscape
from pilcro_lib.objective import (
    DEFAULT_EVERY,
    DEFAULT_SUB_BATCH,
    MEASURES,
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
MODELS = ("reference", "fast_cnn", "resnet18")


class LandscapeRecorder:
    """Wraps a regulariser (or ``None``) and records the model's landscape at the end of each epoch.

    The landscape (mean loss saliency, not normalised) of a fixed probe batch
    ``probe_inputs [N, C, H, W]``, ``probe_targets [N]`` is stored in ``landscapes[epoch]``
    (``[H, W]``, after ``epoch`` epochs of training: fit calls :meth:`epoch_log` after each
    epoch); call :meth:`record` with epoch 0 before training for the initial one. ``mode``:
    ``train`` (default: BatchNorm with the statistics of the probe batch, the network as a
    training step sees it; running statistics untouched) or ``eval``, see
    :func:`pilcro_lib.landscape.measurement_mode`. All hooks are passed on to ``inner``.
    """

    def __init__(
        self,
        probe_inputs: Tensor,
        probe_targets: Tensor,
        inner: Regularizer | None = None,
        *,
        mode: str = "train",
    ) -> None:
        check_image_batch("probe_inputs", probe_inputs)
        check_labels("probe_targets", probe_targets, probe_inputs.shape[0])
        if inner is not None and not callable(inner):
            raise TypeError(
                f"inner must be a regulariser (callable) or None, got {type(inner).__name__}"
            )
        self.probe_inputs, self.probe_targets, self.inner = probe_inputs, probe_targets, inner
        self.mode = check_choice("mode", mode, MODES)
        self.landscapes: dict[int, Tensor] = {}
        self._epoch = 0
        self._model: nn.Module | None = None

    def record(self, model: nn.Module, epoch: int) -> Tensor:
        """Store and return the landscape ``[H, W]`` (float64) of the probe batch under
        ``epoch``."""
        check_type("model", model, nn.Module, "a torch.nn.Module")
        epoch = check_positive_int("epoch", epoch, minimum=0)
        self.landscapes[epoch] = importance_landscape(
            model, self.probe_inputs, self.probe_targets, batch_size=len(self.probe_inputs),
            normalize=False, mode=self.mode,
        )  # fmt: skip
        return self.landscapes[epoch]

    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch
        if hasattr(self.inner, "on_epoch_start"):
            self.inner.on_epoch_start(epoch)

    def __call__(
        self, model: nn.Module, inputs: Tensor, targets: Tensor, outputs: Tensor | None = None
    ) -> Tensor | None:
        self._model = model
        return None if self.inner is None else self.inner(model, inputs, targets, outputs)

    def epoch_log(self) -> dict[str, float]:
        if self._model is not None:
            self.record(self._model, self._epoch + 1)
        return self.inner.epoch_log() if hasattr(self.inner, "epoch_log") else {}

    def describe(self) -> dict:
        """The probe batch, the mode and the wrapped regulariser (for run keys)."""
        return {
            "probe_inputs": self.probe_inputs,
            "probe_targets": self.probe_targets,
            "mode": self.mode,
            "inner": self.inner,
        }

    def state_dict(self) -> dict:
        inner = self.inner.state_dict() if hasattr(self.inner, "state_dict") else None
        return {"inner": inner, "landscapes": {k: v.tolist() for k, v in self.landscapes.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state["inner"] is not None:
            self.inner.load_state_dict(state["inner"])
        self.landscapes = {
            int(k): torch.tensor(v, dtype=torch.float64) for k, v in state["landscapes"].items()
        }

    def __repr__(self) -> str:
        return (
            f"LandscapeRecorder({self.inner!r}, probe={len(self.probe_inputs)}, mode={self.mode!r})"
        )


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
    measure: str = "laplacian",
    sub_batch: int | None = DEFAULT_SUB_BATCH,
    every: int = DEFAULT_EVERY,
) -> tuple[nn.Module, Regularizer | None]:
    """The network and regulariser of one arm of the chapter's comparison.

    Arms: ``plain`` (zero ``same`` padding), ``p_objective`` (plain + :class:`PObjective`),
    ``input_gradient`` (plain + :class:`InputGradientPenalty`), and the architectural fixes
    ``circular`` (circular padding) and ``full`` (pad ``k - 1``; not for the ResNet).
    ``model``: ``reference`` (:func:`pilcro_lib.models.reference_net` of ``width``),
    ``fast_cnn`` (:func:`pilcro_lib.models.fast_cnn` of ``width``) or ``resnet18``
    (:func:`pilcro_lib.models.cifar_resnet18` of base width ``width``). ``measure``: the
    P-objective's penalised figure (:data:`pilcro_lib.objective.MEASURES`), only for
    ``arm='p_objective'``.
    """
    from pilcro_lib.models import cifar_resnet18, fast_cnn, reference_net

    check_choice("arm", arm, ARMS)
    check_choice("model", model, MODELS)
    check_choice("measure", measure, MEASURES)
    if measure != "laplacian" and arm != "p_objective":
        raise ValueError(
            f"measure={measure!r} is only defined for arm='p_objective', got arm={arm!r}"
        )
    padding, padding_mode = {"circular": ("same", "circular"), "full": ("full", "zeros")}.get(
        arm, ("same", "zeros")
    )
    if model == "reference":
        net = reference_net(
            in_channels=in_channels, num_classes=num_classes, input_size=input_size, width=width,
            padding=padding, padding_mode=padding_mode, normalization=normalization,
        )  # fmt: skip
    elif model == "fast_cnn":
        net = fast_cnn(
            in_channels,
            num_classes,
            width=width,
            padding=padding,
            padding_mode=padding_mode,
            normalization=normalization,
        )
    elif arm == "full":
        raise ValueError(
            "arm='full' (full padding) is only defined for model='reference' or 'fast_cnn'"
        )
    else:
        net = cifar_resnet18(
            num_classes,
            in_channels,
            padding_mode=padding_mode,
            normalization=normalization,
            width=width,
        )
    reg: Regularizer | None = None
    if arm == "p_objective":
        reg = PObjective(lam, measure=measure, sub_batch=sub_batch, every=every)
    elif arm == "input_gradient":
        reg = InputGradientPenalty(ig_lam, sub_batch=sub_batch, every=every)
    return net, reg


def steps_to_reach(
    history: list[dict], target: float, *, steps_per_epoch: int, key: str = "val_acc"
) -> tuple[float, float]:
    """Training steps and wall time (s, including the per-epoch validation) until the first
    epoch whose ``key`` reaches ``target``; ``(nan, nan)`` if no epoch does.

    history: :func:`pilcro_lib.train.fit`'s records, evaluated once an epoch.
    """
    check_number("target", target)
    steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
    for record in history:
        if not isinstance(record, dict) or not {key, "epoch", "epoch_time_s"} <= record.keys():
            found = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(
                "history must be fit's records, each with 'epoch', 'epoch_time_s' and "
                f"key={key!r}; got {found}"
            )
    elapsed = 0.0
    for record in history:
        elapsed += record["epoch_time_s"]
        if record[key] >= target:
            return float(record["epoch"] * steps_per_epoch), elapsed
    return math.nan, math.nan


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two maps of the same shape (average ranks for ties)."""
    from scipy.stats import spearmanr

    check_tensor("a", a, nonempty=True, finite=True)
    check_tensor("b", b, nonempty=True, finite=True)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return float(
        spearmanr(a.detach().flatten().cpu().numpy(), b.detach().flatten().cpu().numpy()).statistic
    )


def degenerate_landscape(landscape: Tensor) -> str | None:
    """Why ``landscape`` ``[H, W]`` cannot be measured (``"not finite"``, ``"all zero"``: dead
    ReLUs or a network that ignores its input, ``"constant"``), or ``None`` if it can."""
    if not torch.isfinite(landscape).all():
        return "not finite"
    if not landscape.any():
        return "all zero"
    return "constant" if bool((landscape == landscape.flatten()[0]).all()) else None


def deployed_landscape(model: nn.Module, probe: ImageDataset) -> dict:
    """The landscape of the deployed network (eval mode: BatchNorm with its running statistics)
    on ``probe``, not normalised: ``landscape_eval`` (``[H, W]`` list) and ``flatness_eval``
    (its flatness figures, NaN where it cannot be measured)."""
    deployed = importance_landscape(
        model, probe.float_images(), probe.labels, batch_size=len(probe), normalize=False,
        mode="eval",
    )  # fmt: skip
    return {"landscape_eval": deployed.tolist(), "flatness_eval": flatness_or_nan(deployed)}


def run_arm(
    arm: str,
    train_set,
    val_set,
    test_set,
    *,
    epochs: int,
    seed: int = 0,
    run_dir=None,
    recipe: str = "fast",
    corruptions: Mapping[str, tuple[str, float]] | None = None,
    probe_size: int = 256,
    position_sets: list | None = None,
    eval_landscape: bool = False,
    device=None,
    progress: bool = False,
    **arm_kwargs,
) -> dict:
    """Train one arm (:func:`make_arm`; ``arm_kwargs`` go there) with :func:`pilcro_lib.train.fit`,
    then measure it.

    Datasets are :class:`~pilcro_lib.data.ImageDataset`; ``recipe``: a name in
    :data:`pilcro_lib.train.RECIPES`. ``corruptions``: name -> ``(kind, severity)`` of
    :func:`pilcro_lib.corruptions.corrupt`, applied to the test set (the same noise draw for
    every run). Returns JSON-serialisable metrics: ``history`` (fit's records),
    ``steps_per_epoch``, ``val_acc`` (after the last epoch), ``test_acc``, ``corrupt_acc``
    (name -> test accuracy), ``landscapes`` (epoch -> ``[H, W]`` list, measured with batch
    statistics on the first ``probe_size`` test images), ``flatness_by_epoch`` (epoch -> the
    flatness figures of that landscape), ``flatness`` / ``flatness_init`` (final and initial),
    ``spearman_init_final``, ``train_time_s`` and, when ``position_sets``
    (``[((row, col), dataset), ...]``, see :func:`pilcro_lib.synthetic.position_grid`) is given,
    ``position_acc`` (one accuracy per entry, same order). A run whose loss became
    non-finite returns only ``diverged`` (fit's message), an empty ``history``, NaN
    ``val_acc`` and ``test_acc`` and NaN ``flatness`` figures. A run whose initial or final
    landscape cannot be measured (:func:`degenerate_landscape`) has NaN figures for it, a NaN
    ``spearman_init_final`` and ``degenerate`` (which landscape, and why). With
    ``eval_landscape``, the final landscape of the deployed network (eval mode: BatchNorm with its
    running statistics) is stored too, as ``landscape_eval`` and ``flatness_eval``.
    """
    from pilcro_lib.corruptions import corrupted
    from pilcro_lib.train import evaluate, fit, get_recipe
    from pilcro_lib.utils import seed_everything

    for name, data in (("train_set", train_set), ("val_set", val_set), ("test_set", test_set)):
        check_type(name, data, ImageDataset)
    epochs = check_positive_int("epochs", epochs)
    probe_size = check_positive_int("probe_size", probe_size)
    check_bool("eval_landscape", eval_landscape)
    batch_size = get_recipe(recipe).batch_size
    corruptions = dict(corruptions or {})
    for name, entry in corruptions.items():
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
            raise ValueError(
                f"corruptions must map a name to (kind, severity), got {name!r}: {entry!r}"
            )
    if position_sets is not None:
        check_type(
            "position_sets", position_sets, (list, tuple), "a list of ((row, col), ImageDataset)"
        )
        for entry in position_sets:
            if not (
                isinstance(entry, (list, tuple))
                and len(entry) == 2
                and isinstance(entry[1], ImageDataset)
            ):
                raise ValueError(
                    f"position_sets must hold ((row, col), ImageDataset) pairs, got {entry!r}"
                )
    corrupt_sets = {
        name: corrupted(test_set, kind, severity) for name, (kind, severity) in corruptions.items()
    }
    seed_everything(seed)
    c, h, _ = train_set.image_shape
    model, reg = make_arm(
        arm, in_channels=c, num_classes=train_set.num_classes, input_size=h, **arm_kwargs
    )
    probe = test_set.subset(torch.arange(min(probe_size, len(test_set))))
    recorder = LandscapeRecorder(probe.float_images(), probe.labels, reg)
    recorder.record(model, 0)
    try:
        history = fit(
            model, train_set, val_set, epochs=epochs, recipe=recipe, seed=seed, run_dir=run_dir,
            regularizer=recorder, device=device, progress=progress,
        )  # fmt: skip
    except (
        FloatingPointError
    ) as err:  # diverged: a result too (e.g. a penalty weight that is too large)
        return {
            "diverged": str(err),
            "history": [],
            "val_acc": math.nan,
            "test_acc": math.nan,
            "flatness": flatness_or_nan(None),
        }
    lands = recorder.landscapes
    metrics = {
        "history": history.records,
        "steps_per_epoch": math.ceil(len(train_set) / batch_size),
        "val_acc": history.final["val_acc"],
        "test_acc": evaluate(model, test_set)["accuracy"],
        "corrupt_acc": {
            name: evaluate(model, data)["accuracy"] for name, data in corrupt_sets.items()
        },
        "landscapes": {str(k): v.tolist() for k, v in sorted(lands.items())},
        "flatness_by_epoch": {str(k): flatness_or_nan(v) for k, v in sorted(lands.items())},
        "flatness": flatness_or_nan(lands[epochs]),
        "flatness_init": flatness_or_nan(lands[0]),
        "train_time_s": sum(r["epoch_time_s"] for r in history.records),
    }
    degenerate = {k: why for k in (0, epochs) if (why := degenerate_landscape(lands[k]))}
    if (
        degenerate
    ):  # a dead or non-finite network is a result: NaN figures and the reason, no traceback
        metrics["degenerate"] = {f"landscape at epoch {k}": why for k, why in degenerate.items()}
        metrics["spearman_init_final"] = math.nan
    else:
        metrics["spearman_init_final"] = spearman(lands[0], lands[epochs])
    if position_sets is not None:
        metrics["position_acc"] = [evaluate(model, data)["accuracy"] for _, data in position_sets]
    if eval_landscape:  # the network as deployed, beside the one a training step sees
        metrics |= deployed_landscape(model, probe)
    return metrics


def per_seed(frame, columns: str | list[str], *, by: str = "arm", digits: int | None = None):
    """:func:`pilcro_lib.protocol.per_seed_table` of ``columns`` of a long table (a pandas DataFrame
    with columns ``by``, ``seed`` and ``columns``, one row per run): one row per ``by`` group (in
    order of appearance; per column and group when ``columns`` is a list), every seed's value,
    then mean, std and n (NaN values are left out, e.g. a figure a run did not measure)."""
    import pandas as pd

    from pilcro_lib.protocol import per_seed_table

    check_type("frame", frame, pd.DataFrame, "a pandas DataFrame")
    names = [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in (by, "seed", *names) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the columns {missing}; it has {list(frame.columns)}")
    groups = list(frame.groupby(by, sort=False))
    if isinstance(columns, str):
        return per_seed_table(
            {key: dict(zip(g["seed"], g[columns])) for key, g in groups}, digits=digits
        )
    values = {(c, key): dict(zip(g["seed"], g[c])) for c in names for key, g in groups}
    table = per_seed_table(values, digits=digits)
    table.index = pd.MultiIndex.from_tuples(list(values), names=["figure", by])
    return table


def claim_verdicts(
    frame,
    claims: Mapping[str, tuple[str, str, str, bool]],
    *,
    by: str = "arm",
    primary: list[str] | None = None,
):
    """The verdict table of one family of claims, each a comparison of two arms.

    frame: a pandas DataFrame, one row per run, with a column ``by`` naming the arm; claims:
    claim -> ``(treated, control, column, higher_is_better)``. Each claim is
    :func:`pilcro_lib.stats.compare` of the two arms' per-seed values of ``column`` (NaN = not
    measured); :func:`pilcro_lib.stats.verdicts` applies Holm's correction over the family (over
    the ``primary`` claims and over the others apart, when the protocol names primaries).
    """
    import pandas as pd

    from pilcro_lib.stats import compare, verdicts

    check_type("frame", frame, pd.DataFrame, "a pandas DataFrame")
    if by not in frame.columns:
        raise ValueError(f"by={by!r} is not a column of frame; it has {list(frame.columns)}")
    family = {}
    for claim, entry in claims.items():
        if not (isinstance(entry, (list, tuple)) and len(entry) == 4):
            raise ValueError(
                f"claims[{claim!r}] must be (treated, control, column, higher_is_better), got "
                f"{entry!r}"
            )
        treated, control, column, higher = entry
        if column not in frame.columns:
            raise ValueError(f"claims[{claim!r}] names column {column!r}, which frame lacks")
        for arm in (treated, control):
            if arm not in set(frame[by]):
                raise ValueError(
                    f"claims[{claim!r}] names arm {arm!r}; frame's arms are "
                    f"{list(frame[by].unique())}"
                )
        family[claim] = compare(
            frame.loc[frame[by] == treated, column],
            frame.loc[frame[by] == control, column],
            higher_is_better=higher,
        )
    return verdicts(family, primary=primary)
