"""Chapter 5's helpers: the small nets of its checks, its figure and tables, and the runs of
its comparison of cheap penalty settings with the full batch.

The runs are :func:`pilcro_lib.experiments.run_arm`, read from their run records
(:func:`pilcro_lib.runs.records.cached_run`) when stored: :class:`SettingRuns` asks for one
setting of :data:`SETTINGS` and seed, :func:`gated_settings` for every setting and seed behind
the did-it-learn gate, and :func:`flatness_frame` lays the learnt runs out one row per run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.func import functional_call

from pilcro_lib import experiments, objective
from pilcro_lib.landscape import flatness
from pilcro_lib.plotting import COLUMN_LABEL, LANDSCAPE_UNIT, ROW_LABEL, new_figure
from pilcro_lib.protocol import GatedSeeds, gated_seeds
from pilcro_lib.runs.records import Record, cached_run
from pilcro_lib.utils import check_choice, check_positive_int, check_tensor, check_type

SETTINGS: dict[str, tuple[int | None, int] | None] = {
    "plain": None,
    "full batch": (None, 1),
    "sub_batch 8": (8, 1),
    "sub_batch 16, every 2": (16, 2),
    "default: sub_batch 32, every 4": (32, 4),
}  # setting -> (sub_batch, every) of the penalty; None: plain training
FLATNESS_COLUMNS = ("cv", "curvature", "border_ratio", "checkerboard")
FLATNESS_HEADERS = {
    "cv": "cv",
    "curvature": "curvature κ",
    "border_ratio": "border ratio",
    "checkerboard": "checkerboard share",
}  # column -> header of a table
RUN_COLUMNS = ("curvature κ", "cv", "test accuracy", "training time (s)")


def linear_net(padding_mode: str, width: int = 4, depth: int = 3) -> nn.Sequential:
    """``depth`` linear 3x3 convolutions (``padding_mode`` padding, ``width`` channels), global
    average pooling and a linear layer to 10 classes, in float64: ``[B, 1, H, W] -> [B, 10]``."""
    check_choice("padding_mode", padding_mode, ("zeros", "reflect", "replicate", "circular"))
    width, depth = check_positive_int("width", width), check_positive_int("depth", depth)
    convs = [
        nn.Conv2d(1 if i == 0 else width, width, 3, padding=1, padding_mode=padding_mode)
        for i in range(depth)
    ]
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)]
    return nn.Sequential(*convs, *head).double()


def penalty_table(nets: Mapping[str, nn.Module], inputs: Tensor, targets: Tensor):
    """The P-objective's penalty of each net under each measure of
    :data:`pilcro_lib.objective.MEASURES`: a DataFrame, one row per measure (index ``measure``),
    one column per net. inputs ``[B, C, H, W]``, targets ``[B]``."""
    import pandas as pd

    table = pd.DataFrame(
        {
            name: {
                m: objective.pilcro_penalty(net, inputs, targets, measure=m).item()
                for m in objective.MEASURES
            }
            for name, net in nets.items()
        }
    )
    table.index.name = "measure"
    return table


def tiny_tanh_net(channels: int = 2, classes: int = 3) -> nn.Sequential:
    """A small smooth net for gradient checks, float64: two 3x3 convolutions with tanh, global
    average pooling, a linear layer; ``[B, 1, H, W] -> [B, classes]``."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, classes),
    ).double()


def penalty_gradcheck(
    model: nn.Module, inputs: Tensor, targets: Tensor, *, measure: str = "laplacian"
) -> bool:
    """``torch.autograd.gradcheck`` of the penalty's gradient in every parameter of ``model``
    (float64) against finite differences; inputs ``[B, C, H, W]``, targets ``[B]``. ``model``
    is left unchanged."""
    check_choice("measure", measure, objective.MEASURES)
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())

    class WithParams(nn.Module):  # the model as a function of the parameters given
        def __init__(self, values):
            super().__init__()
            self.values = dict(zip(names, values))

        def forward(self, x):
            return functional_call(model, self.values, (x,))

    def penalty(*values):
        return objective.pilcro_penalty(WithParams(values), inputs, targets, measure=measure)

    return bool(torch.autograd.gradcheck(penalty, params, eps=1e-6, atol=1e-6))


def per_sample_landscape(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """The normalised batch landscape ``[H, W]`` by a naive loop: one backward pass per sample
    of its cross-entropy, ``|d loss / d x|`` summed over channels, averaged, divided by its mean.
    inputs ``[B, C, H, W]``, targets ``[B]``."""
    check_tensor("inputs", inputs, ndim=4, dims="[B, C, H, W]")
    maps = []
    for b in range(len(inputs)):
        x = inputs[b : b + 1].clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x), targets[b : b + 1])
        (grad,) = torch.autograd.grad(loss, x)
        maps.append(grad.abs().sum(1)[0])
    mean = torch.stack(maps).mean(0)
    return mean / mean.mean()


def running_statistics(model: nn.Module) -> dict[str, Tensor]:
    """Copies of ``model``'s BatchNorm buffers (running means, variances, batch counts)."""
    return {
        k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k
    }


def flatness_table(maps: Mapping[str, Tensor]):
    """The flatness figures ``cv``, ``curvature``, ``border_ratio`` and ``checkerboard``
    (:func:`pilcro_lib.landscape.flatness`) of each landscape ``[H, W]`` of ``maps``: a
    DataFrame, one row per map in ``maps``' order."""
    import pandas as pd

    rows = {name: flatness(m) for name, m in maps.items()}
    return pd.DataFrame(rows).T[list(FLATNESS_COLUMNS)]


def penalty_only_figure(before: Tensor, after: Tensor, curve: Sequence[float]) -> Figure:
    """Two landscapes ``[H, W]`` (before and after the penalty-only steps) on one colour scale
    with one colour bar, and the penalty's curvature over the steps (log scale); 7.8 in wide."""
    maps = [np.asarray(before, dtype=float), np.asarray(after, dtype=float)]
    low, high = min(m.min() for m in maps), max(m.max() for m in maps)
    fig, axes = new_figure(1, 3, width=2.6, height=2.7, layout="constrained")
    for ax, m, title in zip(axes[0], maps, ("before", f"after {len(curve)} steps")):
        image = ax.imshow(m, vmin=low, vmax=high, cmap="viridis", interpolation="nearest")
        ax.set_title(f"held-out landscape\n{title}", fontsize=9)
        ax.set_xlabel(COLUMN_LABEL, fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0, 0].set_ylabel(ROW_LABEL, fontsize=8)
    bar = fig.colorbar(image, ax=axes[0, :2], fraction=0.05, shrink=0.8)
    bar.set_label(LANDSCAPE_UNIT, fontsize=8)
    bar.ax.tick_params(labelsize=8)
    ax = axes[0, 2]
    ax.semilogy(range(1, len(curve) + 1), curve, marker=".")
    ax.set_xlabel("step on the penalty alone", fontsize=8)
    ax.set_ylabel("training-batch curvature κ(Λ)", fontsize=8)
    ax.set_title("the penalty, step by step\n(training batch)", fontsize=9)
    ax.tick_params(labelsize=8, which="both")
    return fig


def cost_table(seconds: Mapping[str, float]):
    """Milliseconds per step of each arm of ``seconds`` (arm -> seconds per step, with a
    ``plain`` arm) and its ratio to the plain step: a DataFrame indexed by arm with columns
    ``ms per step`` and ``x plain``."""
    import pandas as pd

    if "plain" not in seconds:
        raise ValueError(f"seconds needs a 'plain' arm to compare with, got {list(seconds)}")
    table = pd.DataFrame({"ms per step": {k: 1000 * t for k, t in seconds.items()}})
    table["x plain"] = table["ms per step"] / table.loc["plain", "ms per step"]
    table.index.name = "arm"
    return table


@dataclass
class SettingRuns:
    """Chapter 5's training runs: ``runs(setting, seed, epochs)`` is the metrics of
    :func:`pilcro_lib.experiments.run_arm` for ``setting`` (a key of :data:`SETTINGS`), read
    from its run record (folder ``name``) when stored, else trained and stored.

    inputs: every other input of ``run_arm`` (data, recipe, model, width, normalisation, λ);
    epochs: the default run length; records: every record read, by key (the first reading of
    each: it says whether it was computed).
    """

    inputs: dict[str, Any]
    epochs: int
    name: str = "05_p_objective"
    records: dict[str, Record] = field(default_factory=dict)

    def __call__(self, setting: str, seed: int, epochs: int | None = None) -> dict[str, Any]:
        check_choice("setting", setting, SETTINGS)
        sub_batch, every = SETTINGS[setting] or (None, 1)
        record = cached_run(
            experiments.run_arm,
            name=self.name,
            arm="plain" if SETTINGS[setting] is None else "p_objective",
            epochs=self.epochs if epochs is None else epochs,
            seed=seed,
            sub_batch=sub_batch,
            every=every,
            **self.inputs,
        )
        self.records.setdefault(record.key, record)
        return record.metrics


def gated_settings(
    runs: Callable[[str, int], Any],
    settings: Sequence[str],
    seeds: Sequence[int],
    *,
    gate: Callable[[Any], bool],
    spares: Sequence[int],
) -> dict[str, GatedSeeds]:
    """Every setting's runs behind the gate: ``runs(setting, seed)`` is asked for each setting
    and seed before any result is read (so a planning pass plans them all), then
    :func:`pilcro_lib.protocol.gated_seeds` keeps the seeds that pass ``gate`` and replaces
    the others by ``spares``. Returns setting -> :class:`pilcro_lib.protocol.GatedSeeds`."""
    for setting in settings:
        for s in seeds:
            runs(setting, s)
    return {
        setting: gated_seeds(
            lambda s, setting=setting: runs(setting, s), seeds, gate=gate, spares=spares
        )
        for setting in settings
    }


def flatness_frame(groups: Mapping[str, GatedSeeds], settings: Sequence[str]):
    """One row per learnt run of each of ``settings``: ``setting``, ``seed`` and the
    :data:`RUN_COLUMNS` (final curvature κ and cv of the landscape, test accuracy, training
    time in seconds) read from its metrics."""
    import pandas as pd

    check_type("groups", groups, Mapping, "a mapping setting -> GatedSeeds")
    rows = [
        {
            "setting": k,
            "seed": s,
            "curvature κ": m["flatness"]["curvature"],
            "cv": m["flatness"]["cv"],
            "test accuracy": m["test_acc"],
            "training time (s)": m["train_time_s"],
        }
        for k in settings
        for s, m in groups[k].learnt.items()
    ]
    return pd.DataFrame(rows, columns=["setting", "seed", *RUN_COLUMNS])


def curvature_claims(
    settings: Sequence[str], control: str, wording: str
) -> dict[str, tuple[str, str, str, bool]]:
    """Claims for :func:`pilcro_lib.experiments.claim_verdicts`: each setting's final
    curvature κ against ``control``'s (lower is better), named ``f"{setting}, {wording}"``."""
    return {f"{k}, {wording}": (k, control, "curvature κ", False) for k in settings}


def equivalence_claims(frame, settings: Sequence[str], control: str, *, margin: float):
    """ "As flat as ``control``": each setting's final curvature κ within ``margin`` of
    ``control``'s (two one-sided tests, :func:`pilcro_lib.stats.equivalence`), as one family
    (:func:`pilcro_lib.stats.equivalence_verdicts`), named ``f"{setting}, as flat as {control}"``.
    frame: one row per run (:func:`flatness_frame`). Returns the verdict table (sizes, margin,
    difference, its 90% interval, smallest margin shown, Holm p, verdict)."""
    from pilcro_lib.stats import equivalence, equivalence_verdicts

    curvature = frame.groupby("setting")["curvature κ"]
    family = {
        f"{k}, as flat as {control}": equivalence(
            curvature.get_group(k), curvature.get_group(control), margin=margin
        )
        for k in settings
    }
    columns = ["n_treated", "n_control", "margin", "difference", "ci_low", "ci_high"]
    return equivalence_verdicts(family)[[*columns, "detectable", "p_holm", "verdict"]]
