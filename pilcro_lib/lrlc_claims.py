"""Chapter 8's bookkeeping: its runs, the choices it makes on validation, its claims, its tables
and figures.

A *spec* is ``(task, arm, rank)``: an arm of :data:`pilcro_lib.lrlc_experiments.ARMS` (with its
LRLC rank; 1 for arms without one) on a task of :data:`pilcro_lib.lrlc_experiments.TASKS`.
:class:`ArmRuns` asks for the run of a spec and seed (:func:`pilcro_lib.lrlc_experiments.train_arm`,
read from its run record when stored) and for every seed of a list of specs behind the gate;
each group of seeds is a :class:`pilcro_lib.protocol.GatedSeeds` whose values are run records.
The other functions read those groups: per-seed tables, the run length chosen per arm, the
verdicts of a family of claims, and the figures of what the combining weights learn.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pilcro_lib.lrlc_experiments import ARMS, TASKS, train_arm
from pilcro_lib.plotting import COLUMN_LABEL, ROW_LABEL, new_figure
from pilcro_lib.protocol import (
    GATE_MISSED,
    GatedSeeds,
    choose_on_validation,
    gated_seeds,
    ladder_table,
    per_seed_table,
    plateau_verdict,
)
from pilcro_lib.report_tables import two_level
from pilcro_lib.runs.records import Record, cached_run
from pilcro_lib.stats import compare, verdicts
from pilcro_lib.utils import check_choice, check_number

Spec = tuple[str, str, int]  # (task, arm, rank)
LABELS = {
    "conv": "conv",
    "lc": "LC",
    "lrlc": "LRLC K={}",
    "lrlc_no_spatial_bias": "LRLC K={}, no spatial bias",
    "lrlc_input": "input-dependent LRLC K={}",
    "wide_conv": "wide conv (as LRLC K={})",
    "coordconv": "CoordConv",
}  # arm -> its name in tables and legends ({} is the rank)
VERDICT_COLUMNS = ["difference", "ci_low", "ci_high", "p_holm", "detectable", "verdict"]
EXAMPLES = 6  # test images whose combining weights an input-dependent run stores


def arm_label(arm: str, rank: int) -> str:
    """The name of ``arm`` at ``rank`` in tables and legends, e.g. ``"LRLC K=8"``."""
    return LABELS[check_choice("arm", arm, ARMS)].format(rank)


def sort_specs(specs: Iterable[Spec]) -> list[Spec]:
    """``specs`` ordered by task (:data:`TASKS`' order), arm (:data:`LABELS`' order), rank."""
    return sorted(specs, key=lambda s: (TASKS.index(s[0]), list(LABELS).index(s[1]), s[2]))


@dataclass
class ArmRuns:
    """Chapter 8's training runs over ``tasks`` (task -> (train, val, test) datasets).

    ``runs(task, arm, seed, rank=1, epochs=None, peak_lr=None)`` is the :class:`Record` of
    :func:`pilcro_lib.lrlc_experiments.train_arm` (``width`` channels, ``batch_size``,
    ``normalization``; ``epochs`` defaults to the instance's; the peak rate ``peak_lr``, else
    the rate chosen for that spec in ``lrs``, else ``lr``), read from its run record (folder
    ``name``) when stored. An input-dependent arm also stores the weights of :data:`EXAMPLES`
    test images. ``records`` holds every record read, by key.
    """

    tasks: Mapping[str, Sequence[Any]]
    width: int
    normalization: Any
    batch_size: int
    epochs: int
    lr: float | None = None
    name: str = "08_lrlc_experiments"
    records: dict[str, Record] = field(default_factory=dict)
    lrs: dict[Spec, float] = field(default_factory=dict)

    def __call__(
        self,
        task: str,
        arm: str,
        seed: int,
        rank: int = 1,
        epochs: int | None = None,
        peak_lr: float | None = None,
    ) -> Record:
        train, val, test = self.tasks[check_choice("task", task, list(self.tasks))]
        rate = self.lrs.get((task, arm, rank), self.lr) if peak_lr is None else peak_lr
        if rate is None:
            raise ValueError("no peak learning rate: pass peak_lr, or set lr once it is chosen")
        record = cached_run(
            train_arm,
            name=self.name,
            arm=arm,
            rank=rank,
            train=train,
            val=val,
            test=test,
            epochs=self.epochs if epochs is None else epochs,
            width=self.width,
            seed=seed,
            normalization=self.normalization,
            batch_size=self.batch_size,
            lr=rate,
            examples=EXAMPLES if arm == "lrlc_input" else 0,
        )
        self.records[record.key] = record
        return record

    def gated(
        self,
        specs: Sequence[Spec],
        seeds: Sequence[int],
        *,
        gate: float,
        epochs: int | None = None,
        head_eps: float | None = None,
    ) -> dict[Spec, GatedSeeds]:
        """Each spec over ``seeds`` for ``epochs``, behind the gate (final validation accuracy
        at least ``gate`` and, for an input-dependent arm when ``head_eps`` is given, a head that
        is active: :func:`head_active`): every run is asked for before any is read, and a seed
        that fails is replaced by a spare (:func:`pilcro_lib.protocol.gated_seeds`)."""
        check_number("gate", gate, minimum=0, maximum=1)
        for task, arm, rank in specs:
            for s in seeds:
                self(task, arm, s, rank, epochs=epochs)

        def why_not(record: Record, arm: str) -> str | None:
            """Why ``record`` fails the gate, or ``None`` if it passes."""
            if record.metrics["val_acc"] < gate:
                return f"validation accuracy {100 * record.metrics['val_acc']:.1f}% below the gate"
            if arm == "lrlc_input" and head_eps is not None and not head_active(record, head_eps):
                spread = record.metrics["across_examples"]
                return f"head inactive: spread {spread:.4f} below {head_eps:g}"
            return None

        groups = {}
        for task, arm, rank in specs:
            group = gated_seeds(
                lambda s, t=task, a=arm, k=rank: self(t, a, s, k, epochs=epochs),
                seeds,
                gate=lambda record, a=arm: why_not(record, a) is None,
            )
            for s, record in group.failed.items():
                if group.reasons[s] == GATE_MISSED:  # a degenerate run keeps its own reason
                    group.reasons[s] = why_not(record, arm) or GATE_MISSED
            groups[(task, arm, rank)] = group
        return groups

    def to_plateau(
        self,
        specs: Sequence[Spec],
        seeds: Sequence[int],
        *,
        gate: float,
        n_val: int,
        head_eps: float | None = None,
        doublings: int = 2,
    ):
        """Each spec run to its plateau by the book's one rule
        (:func:`pilcro_lib.protocol.plateau_verdict` on the mean validation accuracy of its
        learnt seeds): runs of ``epochs`` and twice as long, and one doubling more for every
        spec whose last doubling gained at least one standard error (``n_val`` images), at most
        ``doublings`` doublings beyond ``epochs``.

        Returns ``(kept, table)``: spec -> the :class:`GatedSeeds` of the shortest length at its
        plateau (else the longest run), and a DataFrame indexed by (task, arm) with the mean
        validation accuracy (percent) at each length, ``"epochs kept"`` and ``"at plateau"``.
        """
        import pandas as pd

        by_length = {self.epochs: self.gated(specs, seeds, gate=gate, head_eps=head_eps)}
        kept, rows, pending, length = {}, {}, list(specs), self.epochs
        for _ in range(doublings):
            by_length[2 * length] = self.gated(
                pending, seeds, gate=gate, epochs=2 * length, head_eps=head_eps
            )
            still = []
            for spec in pending:
                ladder = ladder_table(
                    {e: np.mean(list(accuracies(g, spec, "val_acc").values())) / 100
                     for e, g in by_length.items() if spec in g}
                )  # fmt: skip
                if plateau_verdict(ladder, length, n_val)[0]:
                    kept[spec] = by_length[length][spec]
                else:
                    still.append(spec)
            pending, length = still, 2 * length
            if not pending:
                break
        kept |= {spec: by_length[length][spec] for spec in pending}  # still short of it
        for spec in specs:
            means = {e: np.mean(list(accuracies(g, spec, "val_acc").values()))
                     for e, g in by_length.items() if spec in g}  # fmt: skip
            rows[(spec[0], arm_label(*spec[1:]))] = {
                **{f"val. % at {e}": means.get(e, math.nan) for e in sorted(by_length)},
                "epochs kept": next(e for e, g in by_length.items() if g.get(spec) is kept[spec]),
                "at plateau": spec not in pending,
            }
        table = two_level(pd.DataFrame(rows).T, ["task", "arm"])
        table["epochs kept"] = table["epochs kept"].astype(int)
        return kept, table

    def tune_rates(
        self, specs: Sequence[Spec], rates: Sequence[float], seeds: Sequence[int]
    ) -> dict[Spec, Any]:
        """Each spec's peak learning rate chosen on validation: every rate of ``rates`` on every
        tuning seed of ``seeds``, the best mean validation accuracy (ties: the lowest rate),
        stored in ``lrs``. Returns spec -> :class:`pilcro_lib.protocol.Choice`."""
        for task, arm, rank in specs:  # every run is asked for before any is read
            for rate in rates:
                for s in seeds:
                    self(task, arm, s, rank, peak_lr=rate)
        choices = {}
        for task, arm, rank in specs:
            scores = {
                rate: [
                    100 * self(task, arm, s, rank, peak_lr=rate).metrics["val_acc"] for s in seeds
                ]
                for rate in sorted(rates)
            }
            choices[(task, arm, rank)] = choice = choose_on_validation(scores)
            self.lrs[(task, arm, rank)] = choice.best
        return choices


def head_active(record: Record, eps: float) -> bool:
    """Whether an input-dependent LRLC's head is active: the spread of its combining weights
    across test images (``across_examples``, the mean over positions of their std) is at least
    ``eps``, a threshold stated before the runs."""
    check_number("eps", eps, minimum=0)
    return record.metrics["across_examples"] >= eps


def accuracies(
    groups: Mapping[Spec, GatedSeeds], spec: Spec, key: str = "test_acc"
) -> dict[int, float]:
    """``{seed: accuracy in percent}`` (metric ``key``) of the learnt seeds of ``spec``."""
    return {s: 100 * r.metrics[key] for s, r in groups[spec].learnt.items()}


def seed_table(groups: Mapping[Spec, GatedSeeds], specs: Sequence[Spec], key: str = "test_acc"):
    """Each learnt seed's accuracy (percent, metric ``key``) of every spec, with mean, std and
    n (:func:`pilcro_lib.protocol.per_seed_table`), rows indexed by (task, arm)."""
    values = {(s[0], arm_label(*s[1:])): accuracies(groups, s, key) for s in specs}
    return two_level(per_seed_table(values), ["task", "arm"])


def gate_report(groups: Mapping[Spec, GatedSeeds], n_seeds: int) -> str:
    """What the gate did to ``groups``: each seed that missed it (replaced, not averaged in)
    with the reason, and the arms left with fewer than ``n_seeds`` learnt seeds."""
    failed = [
        f"  {t}, {arm_label(a, k)}, seed {s}: "
        + g.reasons.get(s, f"validation accuracy {100 * r.metrics['val_acc']:.1f}%")
        for (t, a, k), g in groups.items()
        for s, r in g.failed.items()
    ]
    short = [arm_label(a, k) for (t, a, k), g in groups.items() if len(g.learnt) < n_seeds]
    lines = (
        ["seeds that did not pass the gate (replaced, not averaged in):", *failed]
        if failed
        else ["every seed passed the gate: none was replaced"]
    )
    return "\n".join([*lines, "arms short of learnt seeds: " + (", ".join(short) or "none")])


def choose_lengths(by_length: Mapping[int, Mapping[Spec, GatedSeeds]], specs: Sequence[Spec]):
    """Each spec's run length, chosen on validation among the keys of ``by_length`` (epochs ->
    groups): the length of highest mean validation accuracy, the shorter on a tie.

    Returns ``(chosen, table)``: spec -> the groups of the length kept, and a DataFrame
    indexed by (task, arm) with the mean validation accuracy (percent) at each length
    (``"val. % at {epochs}"``) and ``"epochs kept"``.
    """
    import pandas as pd

    lengths = sorted(by_length)
    chosen, rows = {}, {}
    for spec in specs:
        choice = choose_on_validation(
            {e: list(accuracies(by_length[e], spec, "val_acc").values()) for e in lengths}
        )
        chosen[spec] = by_length[choice.best][spec]
        rows[(spec[0], arm_label(*spec[1:]))] = {
            **{f"val. % at {e}": choice.table.loc[e, "mean"] for e in lengths},
            "epochs kept": choice.best,
        }
    table = two_level(pd.DataFrame(rows).T, ["task", "arm"])
    table["epochs kept"] = table["epochs kept"].astype(int)
    return chosen, table


def lrlc_claims(rank: int) -> dict[str, tuple[Spec, Spec]]:
    """The chapter's family of claims, ``"task: claim"`` -> (treated spec, control spec): the
    LRLC of ``rank`` against conv, LC, the wide conv and CoordConv on aligned data; the rank
    alone (no spatial bias) and the spatial bias alone (rank 1) against conv; the LRLC against
    conv and LC on real images; the input-dependent LRLC against conv and the LRLC on
    translated data."""
    lrlc = {task: (task, "lrlc", rank) for task in TASKS}

    def conv(task: str) -> Spec:
        return (task, "conv", 1)

    return {
        "aligned: LRLC beats conv": (lrlc["aligned"], conv("aligned")),
        "aligned: LRLC beats LC": (lrlc["aligned"], ("aligned", "lc", 1)),
        "aligned: LRLC beats wide conv": (lrlc["aligned"], ("aligned", "wide_conv", rank)),
        "aligned: LRLC beats CoordConv": (lrlc["aligned"], ("aligned", "coordconv", 1)),
        "aligned: rank alone (no spatial bias) beats conv": (
            ("aligned", "lrlc_no_spatial_bias", rank),
            conv("aligned"),
        ),
        "aligned: spatial bias alone (K=1) beats conv": (("aligned", "lrlc", 1), conv("aligned")),
        "real: LRLC beats conv": (lrlc["real"], conv("real")),
        "real: LRLC beats LC": (lrlc["real"], ("real", "lc", 1)),
        "translated: input-dependent LRLC beats conv": (
            ("translated", "lrlc_input", rank),
            conv("translated"),
        ),
        "translated: input-dependent LRLC beats LRLC": (
            ("translated", "lrlc_input", rank),
            lrlc["translated"],
        ),
    }


def lrlc_verdicts(
    claims: Mapping[str, tuple[Spec, Spec]],
    groups: Mapping[Spec, GatedSeeds],
    *,
    primary: Sequence[str] | None = None,
):
    """The verdicts of one Holm family: each claim (name -> (treated, control) specs) is
    :func:`pilcro_lib.stats.compare` of the two specs' learnt test accuracies (percent).
    With ``primary`` (claims the protocol names primary), Holm runs over those and over the
    others apart (:func:`pilcro_lib.stats.verdicts`), and a ``role`` column leads. Returns a
    DataFrame indexed by claim with :data:`VERDICT_COLUMNS`."""
    tests = {
        name: compare(
            list(accuracies(groups, treated).values()), list(accuracies(groups, control).values())
        )
        for name, (treated, control) in claims.items()
    }
    roles = [] if primary is None else ["role"]
    return verdicts(tests, primary=primary)[[*roles, *VERDICT_COLUMNS]]


def verdict_changes(before, after, *, names: tuple[str, str] = ("before", "after")):
    """Two verdict tables of the same claims side by side: each claim's difference (points)
    and verdict in ``before`` and ``after`` (headers named by ``names``) and whether the
    verdict changed. Returns a DataFrame indexed by claim."""
    import pandas as pd

    if list(before.index) != list(after.index):
        raise ValueError("before and after must hold the same claims in the same order")
    table = pd.DataFrame(
        {
            f"difference, {names[0]}": before["difference"],
            f"verdict, {names[0]}": before["verdict"],
            f"difference, {names[1]}": after["difference"],
            f"verdict, {names[1]}": after["verdict"],
        }
    )
    table["changed"] = before["verdict"] != after["verdict"]
    table.index.name = "claim"
    return table


def mean_curve(group: GatedSeeds, key: str) -> np.ndarray:
    """The mean over the learnt seeds of a per-epoch history entry ``key``: ``[epochs]``."""
    curves = [[h[key] for h in r.metrics["history"]] for r in group.learnt.values()]
    return np.array(curves).mean(0)


def validation_curves_figure(
    groups: Mapping[Spec, GatedSeeds], panels: Mapping[str, Sequence[Spec]]
) -> Figure:
    """Mean validation accuracy (percent) after every epoch, one line per spec, one panel per
    entry of ``panels`` (title -> specs, at most 4 each), two panels a row, a shared y-axis;
    an arm keeps its colour in every panel. 7.6 in wide."""
    too_many = [t for t, specs in panels.items() if len(specs) > 4]
    if too_many:
        raise ValueError(f"panels {too_many} hold more than 4 lines: split them")
    rows = math.ceil(len(panels) / 2)
    fig, axes = new_figure(rows, 2, width=3.8, height=2.6, layout="constrained", sharey=True)
    names = dict.fromkeys(arm_label(*s[1:]) for specs in panels.values() for s in specs)
    colours = dict(zip(names, plt.cm.tab10.colors))
    for ax, (title, specs) in zip(axes.flat, panels.items()):
        for spec in specs:
            curve = 100 * mean_curve(groups[spec], "val_acc")
            name = arm_label(*spec[1:])
            ax.plot(np.arange(1, len(curve) + 1), curve, color=colours[name], lw=1.3, label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes[:, 0]:
        ax.set_ylabel("validation accuracy (%)", fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    return fig


def ladder_runs(runs: ArmRuns, specs: Sequence[Spec], rungs: Sequence[int], seeds: Sequence[int]):
    """The run-length ladder: each spec trained for each length of ``rungs`` with each seed
    (no gate; every run asked for before any is read). Returns a per-seed table of validation
    accuracy (percent), rows indexed by (arm, epochs)."""
    for task, arm, rank in specs:
        for e in rungs:
            for s in seeds:
                runs(task, arm, s, rank, epochs=e)
    values = {
        (arm_label(arm, rank), e): {
            s: 100 * runs(task, arm, s, rank, epochs=e).metrics["val_acc"] for s in seeds
        }
        for task, arm, rank in specs
        for e in rungs
    }
    return two_level(per_seed_table(values), ["arm", "epochs"])


def entropy_figure(groups: Mapping[Spec, GatedSeeds], specs: Sequence[Spec]) -> Figure:
    """The combining weights' normalised entropy after every epoch (epoch 0: initialisation),
    one colour per spec, thin lines the seeds and a thick line their mean; the shared-weight
    LRLC arms on the left, the input-dependent ones on the right. 7.6 in wide."""
    fig, axes = new_figure(1, 2, width=3.8, height=2.9, layout="constrained", sharey=True)
    sides = {
        "combining weights shared by all images": [s for s in specs if s[1] != "lrlc_input"],
        "input-dependent combining weights": [s for s in specs if s[1] == "lrlc_input"],
    }
    for ax, (title, members) in zip(axes[0], sides.items()):
        for i, spec in enumerate(members):
            curves = np.array(
                [
                    [r.metrics["initial_entropy"]] + [h["entropy"] for h in r.metrics["history"]]
                    for r in groups[spec].learnt.values()
                ]
            )
            colour = plt.cm.tab10.colors[i if spec[1] != "lrlc_input" else 4]
            ax.plot(curves.T, color=colour, lw=0.5, alpha=0.5)
            ax.plot(curves.mean(0), color=colour, lw=2, label=f"{spec[0]}: {arm_label(*spec[1:])}")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch (0: initialisation)", fontsize=8)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        if members:
            ax.legend(fontsize=8, loc="lower left")
    axes[0, 0].set_ylim(0, 1.05)
    axes[0, 0].set_ylabel("entropy / log K", fontsize=8)
    return fig


def entropy_swing(group: GatedSeeds) -> float:
    """The largest change of a learnt seed's normalised entropy from one epoch to the next
    (epochs 1 on; 0 for runs of one epoch)."""
    steps = [np.diff([h["entropy"] for h in r.metrics["history"]]) for r in group.learnt.values()]
    return max((float(np.abs(d).max()) for d in steps if len(d)), default=0.0)


def _image(ax, array, *, vmin, vmax, cmap, title=None):
    image = ax.imshow(array, vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=8)
    return image


def task_examples_figure(tasks: Mapping[str, Sequence[Any]]) -> Figure:
    """The first training image of each task (task -> (train, val, test) ImageDatasets), grey,
    one panel a task on one scale (0 black, 1 white) with one colour bar. 7.6 in wide."""
    fig, axes = new_figure(1, len(tasks), width=2.4, height=2.5, layout="constrained")
    for ax, (task, (train, *_)) in zip(axes[0], tasks.items()):
        title = f"{task}: {train.classes[int(train.labels[0])]}"
        image = _image(
            ax, train.float_images()[0, 0].numpy(), vmin=0, vmax=1, cmap="gray", title=title
        )
        ax.set_xlabel(COLUMN_LABEL, fontsize=8)
    axes[0, 0].set_ylabel(ROW_LABEL, fontsize=8)
    bar = fig.colorbar(image, ax=axes, fraction=0.03, shrink=0.85)
    bar.set_label("pixel value (0 black, 1 white)", fontsize=8)
    bar.ax.tick_params(labelsize=8)
    return fig


def weight_maps_figure(alpha) -> Figure:
    """The combining weight of each basis over the output positions, ``alpha [H_out, W_out, K]``:
    one map per basis, four a row, on one colour scale with one colour bar. 7.6 in wide."""
    alpha = np.asarray(alpha, dtype=float)
    k = alpha.shape[-1]
    rows = math.ceil(k / 4)
    fig, axes = new_figure(rows, 4, width=1.8, height=1.85, layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.axis("off")
            continue
        image = _image(
            ax, alpha[:, :, i], vmin=alpha.min(), vmax=alpha.max(), cmap="viridis", title=f"k={i}"
        )
        if i % 4 == 0:
            ax.set_ylabel(ROW_LABEL, fontsize=8)
        if i >= k - 4:
            ax.set_xlabel(COLUMN_LABEL, fontsize=8)
    bar = fig.colorbar(image, ax=axes, fraction=0.03, shrink=0.9)
    bar.set_label("combining weight α", fontsize=8)
    bar.ax.tick_params(labelsize=8)
    return fig


def example_weights_figure(images, weights) -> Figure:
    """Input-dependent combining weights of a few test images: ``images [n, H, W]`` on the top
    row, the largest weight over the bases at each output position of ``weights
    [n, H_out, W_out, K]`` below, each row on one colour scale with one colour bar (the
    weight's from ``1/K``, uniform, to 1). 7.8 in wide for six images."""
    images, weights = np.asarray(images, dtype=float), np.asarray(weights, dtype=float)
    n, k = len(images), weights.shape[-1]
    fig, axes = new_figure(2, n, width=1.2, height=1.45, layout="constrained")
    for j in range(n):
        top = _image(axes[0, j], images[j], vmin=0, vmax=1, cmap="gray", title=f"image {j}")
        low = _image(axes[1, j], weights[j].max(-1), vmin=1 / k, vmax=1, cmap="viridis")
        axes[1, j].set_xlabel(COLUMN_LABEL, fontsize=8)
    for row in (0, 1):
        axes[row, 0].set_ylabel(ROW_LABEL, fontsize=8)
    for image, row, label in ((top, 0, "pixel value"), (low, 1, "largest α")):
        bar = fig.colorbar(image, ax=axes[row], fraction=0.04, shrink=0.9)
        bar.set_label(label, fontsize=8)
        bar.ax.tick_params(labelsize=8)
    return fig


def spread_table(group: GatedSeeds):
    """The spread of an input-dependent layer's combining weights per learnt seed: across
    examples (std over test images at a position) and across positions (std of the mean
    map), with mean, std and n; rows ``across examples`` and ``across positions``."""
    return per_seed_table(
        {
            "across examples": {s: r.metrics["across_examples"] for s, r in group.learnt.items()},
            "across positions": {s: r.metrics["across_positions"] for s, r in group.learnt.items()},
        }
    )


def variation_table(groups: Mapping[Spec, GatedSeeds], specs: Sequence[Spec]):
    """The kernel variation of the first layer (its per-position kernels' energy about their
    mean, a fraction) per learnt seed of each spec that stores it, rows indexed by (task, arm)."""
    values = {
        (s[0], arm_label(*s[1:])): {
            seed: r.metrics["kernel_variation"] for seed, r in groups[s].learnt.items()
        }
        for s in specs
        if s[1] in ("lc", "lrlc", "lrlc_no_spatial_bias")
    }
    return two_level(per_seed_table(values), ["task", "arm"])


def rate_table(choices: Mapping[Spec, Any]):
    """One row per spec (task, arm): the mean validation accuracy (%) over the tuning seeds at
    each peak rate, and the rate chosen."""
    import pandas as pd

    rows = {
        (spec[0], arm_label(*spec[1:])): {
            **{f"rate {rate:g}": mean for rate, mean in choice.table["mean"].items()},
            "chosen rate": choice.best,
        }
        for spec, choice in choices.items()
    }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["task", "arm"])
    return frame
