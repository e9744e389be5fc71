"""Chapter 6's study of the P-objective in training, shared by the chapter's four pages.

:class:`Study` holds the chapter's parameters (a profile of :data:`PROFILES`, overridden by
the pages' papermill parameters, :data:`PARAMETERS`), its data and every run the pages read.
Each run goes through :func:`pilcro_lib.runs.records.cached_run` under the one record name
:data:`RECORD_NAME`, with the same inputs on every page, so the four pages read the same
records. Stage 1 (run length and weights chosen on validation), stage 2 (the final runs behind
the gate), the accuracy-by-position runs and the second architecture are computed (or read) on
first use. :meth:`Study.verdict_tables` applies the protocol's one statistical rule to each
comparison (Holm over all of its claims, whichever page shows them); :func:`claims_under`
picks the rows a page shows. The display helpers turn runs into the book's tables
(:func:`pilcro_lib.results.table_style`) and figures (white, at most three panels a row, at
most 8 inches wide).

Example (the smoke profile: the shipped sample, seconds)::

    study = Study("smoke")
    study.stage1.lam_p          # the P-objective's weight, chosen on validation
    study.runs                  # one row per final run: flatness, speed, accuracy, robustness
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

from pilcro_lib import experiments, plotting, synthetic
from pilcro_lib.data import DATASETS, NORMALIZATION, load_dataset, train_val_split
from pilcro_lib.landscape import FLATNESS_FIGURES, normalize
from pilcro_lib.protocol import (
    GATE_MISSED,
    Choice,
    GatedSeeds,
    choose_on_validation,
    gated_seeds,
    ladder_epochs,
    ladder_table,
    log_grid,
    strongest_within_one_se,
)
from pilcro_lib.results import StyledTable, format_number, table_style
from pilcro_lib.runs.records import Record, cached_run, provenance_note
from pilcro_lib.stats import VERDICTS
from pilcro_lib.train import get_recipe
from pilcro_lib.utils import (
    check_bool,
    check_choice,
    check_number,
    check_positive_int,
    get_device,
)

__all__ = [
    "ARM_NAMES",
    "BUDGET_SHARES",
    "MANIPULATION_CUT",
    "CORRUPTIONS",
    "FLATNESS_COLUMNS",
    "MAIN_ARMS",
    "OTHER_MEASURES",
    "PARAMETERS",
    "POSITION_ARMS",
    "POSITION_COLUMNS",
    "POSITION_SCALE",
    "PROFILES",
    "RECORD_NAME",
    "SPEED_LEVELS",
    "Position",
    "Second",
    "Stage1",
    "Study",
    "choice_table",
    "claims_under",
    "comparison_claims",
    "curvature_figure",
    "figure_label",
    "gate_table",
    "ladder_display",
    "ladder_figure",
    "landscape_figure",
    "manipulation_check",
    "manipulation_table",
    "per_seed_display",
    "position_heatmap",
    "robustness_figure",
    "run_row",
    "settings_table",
    "speed_figure",
    "verdict_counts",
]

RECORD_NAME = "06_p_objective_experiments"  # every page reads and writes these records
PARAMETERS = (
    "seed",
    "n_seeds",
    "dataset",
    "model",
    "second_model",
    "epochs",
    "batch_size",
    "n_train",
    "n_val",
    "n_test",
    "width",
    "second_width",
    "lam_grid",
    "ig_grid",
    "measure_grid",
    "second_grid",
    "gate",
    "position_epochs",
    "pos_train",
    "pos_test",
    "pos_width",
    "n_tuning",
    "eval_landscape",
)
PROFILES: dict[str, dict[str, Any]] = {
    # smoke: the shipped sample, tiny networks, two seeds (seconds, for CI)
    "smoke": dict(
        n_seeds=2,
        dataset="fashion_mnist_sample",
        model="fast_cnn",
        second_model="resnet18",
        epochs=2,
        batch_size=64,
        n_train=256,
        n_val=64,
        n_test=128,
        width=4,
        second_width=2,
        lam_grid=(0.1, 1.0, 2),
        ig_grid=(0.1, 1.0, 2),
        measure_grid=(0.1, 1.0, 2),
        second_grid=(0.1, 1.0, 2),
        gate=0.0,
        position_epochs=1,
        pos_train=128,
        pos_test=32,
        pos_width=4,
        canvas=32,
        grid=2,
        spares=2,
        n_tuning=1,
        eval_landscape=True,
    ),
    # book: a Fashion-MNIST subset, a narrow fast CNN and CIFAR ResNet-18 (2 CPU cores)
    "book": dict(
        n_seeds=5,
        dataset="fashion_mnist",
        model="fast_cnn",
        second_model="resnet18",
        epochs=16,
        batch_size=64,
        n_train=12000,
        n_val=2000,
        n_test=10000,
        width=16,
        second_width=4,
        lam_grid=(0.003, 3.0, 4),
        ig_grid=(0.0003, 3.0, 5),
        measure_grid=(0.01, 10.0, 4),
        second_grid=(0.003, 3.0, 4),
        gate=0.5,
        position_epochs=16,
        pos_train=6000,
        pos_test=300,
        pos_width=12,
        canvas=36,
        grid=4,
        spares=2,
        n_tuning=1,
        eval_landscape=False,
    ),
    # paper: CIFAR-10, ResNet-18 at full width, the fast CNN beside it (a GPU)
    "paper": dict(
        n_seeds=5,
        dataset="cifar10",
        model="resnet18",
        second_model="fast_cnn",
        epochs=30,
        batch_size=256,
        n_train=None,
        n_val=5000,
        n_test=10000,
        width=64,
        second_width=32,
        lam_grid=(0.01, 10.0, 4),
        ig_grid=(0.01, 10.0, 4),
        measure_grid=(0.01, 10.0, 4),
        second_grid=(0.01, 10.0, 4),
        gate=0.3,
        position_epochs=10,
        pos_train=20000,
        pos_test=1000,
        pos_width=64,
        canvas=48,
        grid=5,
        spares=3,
        n_tuning=3,
        eval_landscape=True,
    ),
}
# (kind, severity) of pilcro_lib.corruptions; one noise draw for every run
CORRUPTIONS = {
    "Gaussian noise σ=0.2": ("gaussian_noise", 0.2),
    "blur σ=1 px": ("blur", 1.0),
    "contrast ×0.3": ("contrast", 0.3),
    "shift by 3 px": ("shift", 3),
    "3-px border occluded": ("border_occlusion", 3),
    "10x10 corner occluded": ("corner_occlusion", 10),
}
ARM_NAMES = {
    "plain": "plain",
    "p_objective": "P-objective",
    "circular": "circular padding",
    "input_gradient": "input-gradient penalty",
    "p_gradient": "P-objective, gradient energy",
    "p_cv": "P-objective, cv²",
    "p_objective_strong": "P-objective, strong λ",
}
OTHER_MEASURES = ("gradient", "cv")  # the ablation's measures besides the curvature
MAIN_ARMS = ("plain", "p_objective", "input_gradient", "circular")
POSITION_ARMS = ("plain", "p_objective", "circular")
POSITION_COLUMNS = ("worst-position accuracy", "position spread (max - min)")
FIGURE_WORDS = {  # a flatness figure's name in the run table
    "cv": "cv",
    "border_ratio": "border ratio",
    "curvature": "curvature",
    "gradient_energy": "gradient energy",
    "max_over_min": "max / min",
    "checkerboard": "checkerboard",
}
SPEED_LEVELS = (0.9, 0.95, 0.99)  # fractions of the speed target
BUDGET_SHARES = (8, 4, 2)  # the budget ladder: runs of epochs / 8, / 4 and / 2, each its own
MANIPULATION_CUT = 0.3  # a penalty "acts" when it cuts its measure by at least this share
POSITION_SCALE = (60.0, 100.0)  # the accuracy map's fixed colour scale, in points
FLATNESS_COLUMNS = (  # the run table's flatness figures that the pages show
    "curvature (init)",
    "curvature (epoch 1)",
    "curvature (final)",
    "cv (init)",
    "cv (final)",
    "border distance (final)",
    "max / min (final)",
    "Spearman, init vs final",
)


@dataclass(frozen=True)
class Stage1:
    """Stage 1's runs (tuning seeds) and choices. ``ladder``: epochs -> metrics of the plain
    arm (first tuning seed); ``tuning``: grid (``"p_objective"``, ``"input_gradient"`` or a
    measure of :data:`OTHER_MEASURES`) -> weight -> metrics of each tuning seed; ``choices``:
    grid -> :class:`pilcro_lib.protocol.Choice` (mean validation accuracy over the tuning seeds;
    ties: the weaker weight); ``p_grid``, ``ig_grid``, ``measure_grids``: the first tuning seed's
    runs (weight -> metrics); the weights chosen; ``plateau``: the plain arm's validation
    accuracy at the chosen length, and ``targets``: level (``"95%"``) -> that fraction of it."""

    ladder: dict[int, dict]
    tuning: dict[str, dict[float, list[dict]]]
    choices: dict[str, Choice]
    p_grid: dict[float, dict]
    ig_grid: dict[float, dict]
    measure_grids: dict[str, dict[float, dict]]
    lam_p: float
    lam_ig: float
    lam_measures: dict[str, float]
    plateau: float
    targets: dict[str, float]


@dataclass(frozen=True)
class Position:
    """The accuracy-by-position runs: the task (``canvas`` px, a ``grid x grid`` lattice of
    test positions at ``offsets`` px, ``n_train`` training items, ``n_items`` test items per
    position), its run-length ``ladder``, the gated ``groups`` (arm -> :class:`GatedSeeds`),
    the arms with every seed learnt (``complete``) and ``runs`` (one row per run)."""

    canvas: int
    grid: int
    offsets: list[int]
    n_train: int
    n_items: int
    ladder: dict[int, dict]
    groups: dict[str, GatedSeeds]
    complete: list[str]
    runs: pd.DataFrame


@dataclass(frozen=True)
class Second:
    """The second architecture: its ``ladder`` (plain, tuning seed), its weight grid
    (``grid``: weight -> metrics of the first tuning seed) and ``lam``, chosen on the mean over
    the tuning seeds, its speed target (95% of
    ``plateau``), the gated ``groups`` and ``runs`` (one row per run)."""

    ladder: dict[int, dict]
    grid: dict[float, dict]
    lam: float
    plateau: float
    groups: dict[str, GatedSeeds]
    runs: pd.DataFrame


def _pick(defaults: Mapping[str, Any], name: str, value: Any) -> Any:
    return defaults[name] if value is None else value


def _grid(defaults: Mapping[str, Any], name: str, value: Any) -> list[float]:
    """The log-spaced grid of a ``(lowest, highest, steps)`` parameter."""
    value = _pick(defaults, name, value)
    if not (isinstance(value, (list, tuple)) and len(value) == 3):
        raise ValueError(f"{name} must be (lowest, highest, steps), got {value!r}")
    return log_grid(*value)


class Study:
    """The chapter's parameters, data and runs.

    profile: ``smoke``, ``book`` or ``paper`` (:data:`PROFILES`); parameters: any of
    :data:`PARAMETERS`, ``None`` meaning the profile's value (a page passes its ``parameters``
    cell). Validates every parameter at once, loads the data and reads nothing yet; each run is
    read (or trained) by :meth:`train`, and every record read is kept in ``records``.
    """

    def __init__(self, profile: str, *, device=None, **parameters: Any) -> None:
        unknown = sorted(set(parameters) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; the parameters are {PARAMETERS}")
        self.profile = check_choice("profile", profile, tuple(PROFILES))
        defaults = PROFILES[profile]
        p = dict.fromkeys(PARAMETERS) | parameters
        self.seed = check_positive_int("seed", 0 if p["seed"] is None else p["seed"], minimum=0)
        self.n_seeds = check_positive_int("n_seeds", _pick(defaults, "n_seeds", p["n_seeds"]), 2)
        self.dataset = check_choice("dataset", _pick(defaults, "dataset", p["dataset"]), DATASETS)
        self.model = check_choice("model", _pick(defaults, "model", p["model"]), experiments.MODELS)
        self.second_model = _pick(defaults, "second_model", p["second_model"])
        if self.second_model:
            check_choice("second_model", self.second_model, experiments.MODELS)
        self.epochs = check_positive_int("epochs", _pick(defaults, "epochs", p["epochs"]))
        self.batch_size = check_positive_int(
            "batch_size", _pick(defaults, "batch_size", p["batch_size"])
        )
        self.recipe = get_recipe("fast", batch_size=self.batch_size, lr=0.2 * self.batch_size / 256)
        self.n_train = _pick(defaults, "n_train", p["n_train"])
        if self.n_train is not None:
            self.n_train = check_positive_int("n_train", self.n_train)
        self.n_val = check_positive_int("n_val", _pick(defaults, "n_val", p["n_val"]))
        self.n_test = check_positive_int("n_test", _pick(defaults, "n_test", p["n_test"]))
        self.width = check_positive_int("width", _pick(defaults, "width", p["width"]))
        self.second_width = check_positive_int(
            "second_width", _pick(defaults, "second_width", p["second_width"])
        )
        self.lam_grid = _grid(defaults, "lam_grid", p["lam_grid"])
        self.ig_grid = _grid(defaults, "ig_grid", p["ig_grid"])
        self.measure_grid = _grid(defaults, "measure_grid", p["measure_grid"])
        self.second_grid = _grid(defaults, "second_grid", p["second_grid"])
        self.gate = check_number("gate", _pick(defaults, "gate", p["gate"]), minimum=0, maximum=1)
        self.position_epochs = check_positive_int(
            "position_epochs", _pick(defaults, "position_epochs", p["position_epochs"])
        )
        self.pos_train = check_positive_int(
            "pos_train", _pick(defaults, "pos_train", p["pos_train"])
        )
        self.pos_test = check_positive_int("pos_test", _pick(defaults, "pos_test", p["pos_test"]))
        self.pos_width = check_positive_int(
            "pos_width", _pick(defaults, "pos_width", p["pos_width"])
        )
        self.canvas, self.n_grid = defaults["canvas"], defaults["grid"]
        self.seeds = list(range(self.seed, self.seed + self.n_seeds))
        first_spare = self.seed + self.n_seeds
        self.spares = list(range(first_spare, first_spare + defaults["spares"]))
        self.n_tuning = check_positive_int("n_tuning", _pick(defaults, "n_tuning", p["n_tuning"]))
        # the runs that choose; never one of the final seeds
        self.tuning_seeds = [self.seed + 1000 + i for i in range(self.n_tuning)]
        self.tuning_seed = self.tuning_seeds[0]  # the run-length ladder's seed
        self.eval_landscape = check_bool(
            "eval_landscape", _pick(defaults, "eval_landscape", p["eval_landscape"])
        )
        self.device = get_device(device)
        subset = None if self.n_train is None else self.n_train + self.n_val
        pool = load_dataset(self.dataset, "train", subset=subset, seed=0)
        self.train_set, self.val_set = train_val_split(pool, self.n_val / len(pool), seed=0)
        self.test_set = load_dataset(self.dataset, "test", subset=self.n_test, seed=0)
        self.records: dict[str, Record] = {}  # every record read, by key, in reading order
        self.stage_keys: dict[str, list[str]] = {}  # the keys each stage read
        self._reading: list[str] = []

    # --- runs -------------------------------------------------------------------------------

    def train(
        self,
        arm: str,
        seed: int,
        *,
        net: str | None = None,
        net_width: int | None = None,
        n_epochs: int | None = None,
        data: Sequence | None = None,
        **kw: Any,
    ) -> dict:
        """The metrics of one run of :func:`pilcro_lib.experiments.run_arm` (its record: read
        if current, else trained and stored). ``net``/``net_width``/``n_epochs`` default to the
        main network, its width and ``epochs``; ``data``: ``(train, validation, test)`` sets
        (default the study's); ``kw`` go to ``run_arm`` (``lam``, ``corruptions``, ...)."""
        tr, va, te = data or (self.train_set, self.val_set, self.test_set)
        kw.setdefault("corruptions", CORRUPTIONS)
        if self.eval_landscape:  # only then: the key of a run without it stays as it was
            kw.setdefault("eval_landscape", True)
        record = cached_run(
            experiments.run_arm,
            name=RECORD_NAME,
            arm=arm,
            train_set=tr,
            val_set=va,
            test_set=te,
            epochs=self.epochs if n_epochs is None else n_epochs,
            seed=seed,
            recipe=self.recipe,
            model=self.model if net is None else net,
            width=self.width if net_width is None else net_width,
            normalization=NORMALIZATION[self.dataset],
            device=self.device,
            **kw,
        )
        self.records.setdefault(record.key, record)  # the first reading says if it was computed
        for stage in self._reading:
            keys = self.stage_keys[stage]
            if record.key not in keys:
                keys.append(record.key)
        return record.metrics

    def learnt(self, metrics: Mapping) -> bool:
        """The gate, stated in advance: final validation accuracy >= ``gate``."""
        return metrics["val_acc"] >= self.gate

    def gated(self, arms: Mapping[str, Mapping], **common: Any) -> dict[str, GatedSeeds]:
        """Each arm's runs on the final seeds behind the gate (label -> :class:`GatedSeeds`).
        ``arms`` maps a label to :meth:`train`'s keywords (``arm`` defaults to the label); every
        run on the final seeds is asked for before any is read (so a plan holds them all)."""
        asks = {label: {"arm": label, **common, **kw} for label, kw in arms.items()}
        for kw in asks.values():
            for s in self.seeds:
                self.train(seed=s, **kw)
        return {
            label: gated_seeds(
                lambda s, kw=kw: self.train(seed=s, **kw),
                self.seeds,
                gate=self.learnt,
                spares=self.spares,
            )
            for label, kw in asks.items()
        }

    def ladder(self, n_epochs: int, **kw: Any) -> dict[int, dict]:
        """The plain arm on the tuning seed for half, once and twice ``n_epochs`` (epochs ->
        metrics): how much longer training would still gain."""
        return {
            e: self.train("plain", self.tuning_seed, n_epochs=e, **kw)
            for e in ladder_epochs(n_epochs)
        }

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        """Note the keys of the records read inside the block under ``stage_keys[name]``."""
        self.stage_keys.setdefault(name, [])
        self._reading.append(name)
        try:
            yield
        finally:
            self._reading.remove(name)

    def provenance(self, stage: str | None = None) -> str:
        """One line on the records a stage read (``"stage1"``, ``"final"``, ``"position"``,
        ``"second"``), or all the records this study read: their number, hours of training,
        commits and machines (:func:`pilcro_lib.runs.records.provenance_note`)."""
        keys = list(self.records) if stage is None else self.stage_keys.get(stage, [])
        return provenance_note([self.records[k] for k in keys])

    def training_hours(self) -> float:
        """The hours of training (wall time, as recorded) of every record read so far."""
        return sum(r.provenance["wall_time_s"] for r in self.records.values()) / 3600

    # --- stage 1 and 2 ----------------------------------------------------------------------

    @cached_property
    def stage1(self) -> Stage1:
        """Run length and weights, chosen on validation over the tuning seeds: each weight's
        mean final validation accuracy, the best chosen (ties: the weaker weight)."""

        def grid(arm: str, weights: Sequence[float], weight: str, **kw: Any) -> dict:
            return {
                lam: [self.train(arm, s, **{weight: lam}, **kw) for s in self.tuning_seeds]
                for lam in weights
            }

        with self._stage("stage1"):
            ladder = self.ladder(self.epochs)
            tuning = {
                "p_objective": grid("p_objective", self.lam_grid, "lam"),
                "input_gradient": grid("input_gradient", self.ig_grid, "ig_lam"),
                **{
                    m: grid("p_objective", self.measure_grid, "lam", measure=m)
                    for m in OTHER_MEASURES
                },
            }
        choices = {name: _choice(runs) for name, runs in tuning.items()}
        first = {name: {lam: ms[0] for lam, ms in runs.items()} for name, runs in tuning.items()}
        plateau = ladder[self.epochs]["val_acc"]
        return Stage1(
            ladder=ladder,
            tuning=tuning,
            choices=choices,
            p_grid=first["p_objective"],
            ig_grid=first["input_gradient"],
            measure_grids={m: first[m] for m in OTHER_MEASURES},
            lam_p=choices["p_objective"].best,
            lam_ig=choices["input_gradient"].best,
            lam_measures={m: choices[m].best for m in OTHER_MEASURES},
            plateau=plateau,
            targets={f"{round(100 * f)}%": f * plateau for f in SPEED_LEVELS},
        )

    @cached_property
    def lam_strong(self) -> float:
        """The pre-stated strong P-objective weight: the largest whose mean validation accuracy
        over the tuning seeds is within one standard error of the best's
        (:func:`pilcro_lib.protocol.strongest_within_one_se`)."""
        return strongest_within_one_se(self.stage1.choices["p_objective"], len(self.val_set))

    @cached_property
    def strong(self) -> GatedSeeds:
        """The strong P-objective (:attr:`lam_strong`) on the final seeds, behind the gate."""
        with self._stage("strong"):
            arms = {"p_objective_strong": {"arm": "p_objective", "lam": self.lam_strong}}
            return self.gated(arms)["p_objective_strong"]

    @cached_property
    def penalised_ladder(self) -> dict[int, dict]:
        """The P-objective at its chosen weight on the first tuning seed for half, once and
        twice ``epochs`` (epochs -> metrics): the penalised arm's own plateau check."""
        with self._stage("stage1"):
            return {
                e: self.train("p_objective", self.tuning_seed, n_epochs=e, lam=self.stage1.lam_p)
                for e in ladder_epochs(self.epochs)
            }

    @cached_property
    def budgets(self) -> dict[int, dict[str, GatedSeeds]]:
        """The budget ladder: plain training and the P-objective (chosen weight) on the final
        seeds, each budget a run of its own full schedule (epochs -> arm -> GatedSeeds): the
        budgets of :data:`BUDGET_SHARES` and, from :attr:`final`, ``epochs`` itself."""
        arms = {arm: self.arm_settings[arm] for arm in ("plain", "p_objective")}
        lengths = sorted({max(1, self.epochs // k) for k in BUDGET_SHARES} - {self.epochs})
        with self._stage("budgets"):
            ladder = {b: self.gated(arms, n_epochs=b) for b in lengths}
        return ladder | {self.epochs: {arm: self.final[arm] for arm in arms}}

    def budget_verdicts(self):
        """ "Faster" as accuracy at equal budget: at each budget of :attr:`budgets`, the
        P-objective's test accuracy against plain training's (Welch), Holm over the budgets."""
        from pilcro_lib.stats import compare, verdicts

        family = {}
        for b, groups in self.budgets.items():
            p, plain = (
                [m["test_acc"] for m in groups[arm].learnt.values()]
                for arm in ("p_objective", "plain")
            )
            family[f"more accurate after {b} epochs: test accuracy"] = compare(p, plain)
        return verdicts(family)

    @cached_property
    def arm_settings(self) -> dict[str, dict]:
        """Each final arm's keywords for :meth:`train` (the weights stage 1 chose)."""
        s = self.stage1
        main = {
            "plain": {},
            "p_objective": {"lam": s.lam_p},
            "input_gradient": {"ig_lam": s.lam_ig},
            "circular": {},
        }
        measures = {
            f"p_{m}": {"arm": "p_objective", "measure": m, "lam": lam}
            for m, lam in s.lam_measures.items()
        }
        return main | measures

    @cached_property
    def final(self) -> dict[str, GatedSeeds]:
        """Every arm's final runs on the final seeds, behind the gate (label -> GatedSeeds)."""
        arms = self.arm_settings
        with self._stage("final"):
            return self.gated(arms)

    @property
    def complete(self) -> list[str]:
        """The arms with ``n_seeds`` learnt seeds (the others are left out of the verdicts)."""
        return [arm for arm, g in self.final.items() if len(g.learnt) == self.n_seeds]

    @property
    def shown(self) -> list[str]:
        """The complete arms of the main comparison (the figures' arms)."""
        return [arm for arm in self.complete if arm in MAIN_ARMS]

    @cached_property
    def runs(self):
        """One row per learnt final run of a complete arm (:func:`run_row`)."""
        targets = self.stage1.targets
        return pd.DataFrame(
            [
                run_row(arm, s, m, targets)
                for arm in self.complete
                for s, m in self.final[arm].learnt.items()
            ]
        )

    # --- accuracy by position and the second architecture -----------------------------------

    @cached_property
    def position(self) -> Position:
        """Items pasted at random positions on a larger canvas; tested at a grid of
        positions."""
        settings = self.arm_settings
        pool = load_dataset(self.dataset, "train", subset=self.pos_train + self.pos_test, seed=1)
        tr, va = train_val_split(pool, self.pos_test / len(pool), seed=1)
        items = load_dataset(self.dataset, "test", subset=self.pos_test, seed=1)
        size, canvas = tr.image_shape[-1], self.canvas
        placed = [
            synthetic.paste(d, canvas, synthetic.random_offsets(len(d), size, canvas, seed=i))
            for i, d in enumerate((tr, va, items))
        ]
        sets = synthetic.position_grid(items, canvas, self.n_grid)
        common = dict(net_width=self.pos_width, data=placed, corruptions={}, position_sets=sets)
        with self._stage("position"):
            ladder = self.ladder(self.position_epochs, **common)
            groups = self.gated(
                {arm: settings[arm] for arm in POSITION_ARMS},
                n_epochs=self.position_epochs,
                **common,
            )
        complete = [arm for arm, g in groups.items() if len(g.learnt) == self.n_seeds]
        rows = [
            {
                "arm": ARM_NAMES[arm],
                "seed": s,
                "worst-position accuracy": min(m["position_acc"]),
                "position spread (max - min)": max(m["position_acc"]) - min(m["position_acc"]),
            }
            for arm in complete
            for s, m in groups[arm].learnt.items()
        ]
        return Position(
            canvas=canvas,
            grid=self.n_grid,
            offsets=sorted({r for (r, _), _ in sets}),
            n_train=len(tr),
            n_items=len(items),
            ladder=ladder,
            groups=groups,
            complete=complete,
            runs=pd.DataFrame(rows, columns=["arm", "seed", *POSITION_COLUMNS]),
        )

    @cached_property
    def second(self) -> Second | None:
        """The second architecture, plain against the P-objective (``None`` without one)."""
        if not self.second_model:
            return None
        net = dict(net=self.second_model, net_width=self.second_width)
        with self._stage("second"):
            ladder = self.ladder(self.epochs, **net)
            tuning = {
                lam: [self.train("p_objective", s, lam=lam, **net) for s in self.tuning_seeds]
                for lam in self.second_grid
            }
            grid = {lam: runs[0] for lam, runs in tuning.items()}  # the first tuning seed's
            lam = _choice(tuning).best
            groups = self.gated({"plain": {}, "p_objective": {"lam": lam}}, **net)
        plateau = ladder[self.epochs]["val_acc"]
        rows = [
            _second_row(arm, s, m, 0.95 * plateau)
            for arm, g in groups.items()
            for s, m in g.learnt.items()
        ]
        return Second(ladder, grid, lam, plateau, groups, pd.DataFrame(rows))

    # --- verdicts ---------------------------------------------------------------------------

    def verdict_tables(self) -> dict[str, Any]:
        """The verdict table of each comparison of the P-objective with another complete arm
        (family name ``"P-objective against <arm>"`` -> table): every claim of
        :func:`comparison_claims` the other arm measured, Holm's correction over them all."""
        frame = pd.concat([self.runs, self.position.runs], ignore_index=True)
        claims = comparison_claims(self.stage1.targets)
        complete = self.complete
        others = [a for a in ("plain", "input_gradient", "circular") if a in complete]
        tables = {}
        for other in others if "p_objective" in complete else []:
            measured = frame.loc[frame["arm"] == ARM_NAMES[other]].notna().any()
            family = {
                claim: ("P-objective", ARM_NAMES[other], column, higher)
                for claim, (column, higher) in claims.items()
                if measured.get(column, False)
            }
            tables[f"P-objective against {ARM_NAMES[other]}"] = experiments.claim_verdicts(
                frame, family
            )
        return tables

    def second_verdicts(self):
        """The second architecture's verdict table (P-objective against plain), or ``None``."""
        if self.second is None:
            return None
        suffix = f" ({self.second_model})"
        claims = {
            "flatter: curvature κ": ("curvature (final)", False),
            "flatter: cv": ("cv (final)", False),
            "faster: steps to 95% of target": ("steps to 95%", False),
            "more accurate: test accuracy": ("test accuracy", True),
            "more robust: mean drop over corruptions": ("mean drop over corruptions", False),
        }
        return experiments.claim_verdicts(
            self.second.runs,
            {c + suffix: ("P-objective", "plain", col, hi) for c, (col, hi) in claims.items()},
        )

    def ablation_verdicts(self):
        """The measure ablation's verdict table (each other measure against plain training
        and against the curvature P-objective; Holm over all), or ``None`` if an arm is
        missing."""
        against = {
            "vs plain: curvature κ": ("plain", "curvature (final)", False),
            "vs plain: cv": ("plain", "cv (final)", False),
            "vs plain: test accuracy": ("plain", "test accuracy", True),
            "vs curvature P-objective: cv": ("p_objective", "cv (final)", False),
            "vs curvature P-objective: test accuracy": ("p_objective", "test accuracy", True),
        }
        complete = self.complete
        claims = {
            f"{ARM_NAMES[a]} {claim}": (ARM_NAMES[a], ARM_NAMES[other], column, higher)
            for a in (f"p_{m}" for m in OTHER_MEASURES)
            for claim, (other, column, higher) in against.items()
            if a in complete and "p_objective" in complete
        }
        return experiments.claim_verdicts(self.runs, claims) if claims else None

    def settings(self) -> dict[str, str]:
        """The study's set-up in words (name -> value), for :func:`settings_table`."""
        recipe = self.recipe
        return {
            "data": (
                f"{self.dataset}: {len(self.train_set):,} train / {len(self.val_set):,} "
                f"validation / {len(self.test_set):,} test images"
            ),
            "network": f"{self.model}, width {self.width}",
            "second network": f"{self.second_model or '–'}, width {self.second_width}",
            "recipe": (
                f"fast, batches of {recipe.batch_size}, peak rate {recipe.lr:g}, "
                f"{self.epochs} epochs"
            ),
            "seeds": (
                f"{', '.join(map(str, self.seeds))} (spares {', '.join(map(str, self.spares))};"
                f" tuning {'seed' if self.n_tuning == 1 else 'seeds'} "
                f"{', '.join(map(str, self.tuning_seeds))})"
            ),
            "gate: validation accuracy": f"at least {self.gate:g}",
            "λ grid, P-objective": ", ".join(f"{v:g}" for v in self.lam_grid),
            "λ grid, input gradient": ", ".join(f"{v:g}" for v in self.ig_grid),
            "λ grid, other measures": ", ".join(f"{v:g}" for v in self.measure_grid),
            "λ grid, second network": ", ".join(f"{v:g}" for v in self.second_grid),
        }


def _choice(runs: Mapping[float, Sequence[Mapping]]) -> Choice:
    """The weight of best mean validation accuracy over its runs (weight -> metrics of each
    tuning seed; ties: the first, i.e. the weaker weight of an increasing grid)."""
    return choose_on_validation({lam: [m["val_acc"] for m in ms] for lam, ms in runs.items()})


def _best(runs: Mapping[float, Mapping]) -> float:
    """The weight of best validation accuracy, one run a weight (ties: the weaker one)."""
    return _choice({lam: [m] for lam, m in runs.items()}).best


def manipulation_check(
    runs, arm: str, *, control: str = "plain", column: str = "curvature (final)"
) -> dict[str, Any]:
    """Did the penalty act? ``arm``'s mean ``column`` over ``control``'s (a run table: one row
    per run, ``arm`` in words), and ``passed``: the ratio is at most ``1 - MANIPULATION_CUT``, so a
    downstream claim is tested on a network the penalty changed."""
    means = runs.groupby("arm")[column].mean()
    ratio = float(means[ARM_NAMES[arm]] / means[ARM_NAMES[control]])
    return {"ratio": ratio, "passed": ratio <= 1 - MANIPULATION_CUT}


OPTIMISED = {  # each penalised arm -> the run-table figure its penalty lowers
    "p_objective": "curvature (final)",
    "p_objective_strong": "curvature (final)",
    "p_gradient": "gradient energy (final)",
    "p_cv": "cv (final)",
}


def manipulation_table(runs) -> StyledTable:
    """The manipulation check of every penalised arm in ``runs`` (a run table): the figure its
    penalty lowers (:data:`OPTIMISED`), its mean over plain training's, and whether the cut
    reaches :data:`MANIPULATION_CUT` (:func:`manipulation_check`)."""
    rows = []
    for arm, column in OPTIMISED.items():
        if ARM_NAMES[arm] in set(runs["arm"]):
            check = manipulation_check(runs, arm, column=column)
            rows.append(
                {
                    "arm": ARM_NAMES[arm],
                    "figure it lowers": column.removesuffix(" (final)"),
                    "final mean / plain's": f"{check['ratio']:.2f}",
                    f"cut by {MANIPULATION_CUT:.0%} or more": "yes" if check["passed"] else "no",
                }
            )
    return table_style(pd.DataFrame(rows), caption="Did each penalty move what it penalises?")


def run_row(arm: str, seed: int, metrics: Mapping, targets: Mapping[str, float]) -> dict:
    """One final run's measurements, a dict: ``arm`` (in words), ``seed``, ``test accuracy``;
    each flatness figure at ``init``, ``epoch 1`` and ``final`` (``"curvature (final)"``);
    ``border distance (final)`` = ``|log border ratio|``; ``Spearman, init vs final``;
    ``steps to <level>`` and ``time to <level> (s)`` for each speed target (a run that never
    reaches it counts as one epoch after its end); ``drop: <corruption>`` = ``1 - acc_corrupted
    / acc_clean``; and, for a run that measured the deployed network (``flatness_eval``), each
    flatness figure of its final eval-mode landscape (``"curvature (final, eval)"``)."""
    n_epochs, spe = len(metrics["history"]), metrics["steps_per_epoch"]
    row = {"arm": ARM_NAMES[arm], "seed": seed, "test accuracy": metrics["test_acc"]}
    for when, key in (("init", "0"), ("epoch 1", "1"), ("final", str(n_epochs))):
        for figure in FLATNESS_FIGURES:
            row[f"{FIGURE_WORDS[figure]} ({when})"] = metrics["flatness_by_epoch"][key][figure]
    row["border distance (final)"] = abs(math.log(row["border ratio (final)"]))
    row["Spearman, init vs final"] = metrics["spearman_init_final"]
    for level, target in targets.items():
        steps, secs = experiments.steps_to_reach(metrics["history"], target, steps_per_epoch=spe)
        if math.isnan(steps):  # never reached: one epoch after the end
            steps = (n_epochs + 1) * spe
            secs = metrics["train_time_s"] * (n_epochs + 1) / n_epochs
        row[f"steps to {level}"], row[f"time to {level} (s)"] = steps, secs
    for name, acc in metrics["corrupt_acc"].items():
        row[f"drop: {name}"] = 1 - acc / metrics["test_acc"]
    for figure, value in metrics.get("flatness_eval", {}).items():
        row[f"{FIGURE_WORDS[figure]} (final, eval)"] = value
    return row


def _second_row(arm: str, seed: int, metrics: Mapping, target: float) -> dict:
    """One run of the second architecture: final curvature and cv, test accuracy, steps to
    ``target`` (one epoch after the end if never) and the mean relative drop over the
    corruptions."""
    spe = metrics["steps_per_epoch"]
    steps, _ = experiments.steps_to_reach(metrics["history"], target, steps_per_epoch=spe)
    drops = [1 - a / metrics["test_acc"] for a in metrics["corrupt_acc"].values()]
    return {
        "arm": ARM_NAMES[arm],
        "seed": seed,
        "curvature (final)": metrics["flatness"]["curvature"],
        "cv (final)": metrics["flatness"]["cv"],
        "test accuracy": metrics["test_acc"],
        "steps to 95%": (len(metrics["history"]) + 1) * spe if math.isnan(steps) else steps,
        "mean drop over corruptions": float(np.mean(drops)),
    }


def comparison_claims(targets: Mapping[str, float]) -> dict[str, tuple[str, bool]]:
    """The claims of one comparison: claim -> (column of the run table, higher is better):
    flatter (4 figures), faster (steps to each target level, wall time to 95%), more
    accurate, more robust (each corruption), position (worst-position accuracy)."""
    return {
        "flatter: curvature κ": ("curvature (final)", False),
        "flatter: cv": ("cv (final)", False),
        "flatter: border distance": ("border distance (final)", False),
        "flatter: max / min": ("max / min (final)", False),
        **{
            f"faster: steps to {level} of target": (f"steps to {level}", False) for level in targets
        },
        "faster: wall time to 95% of target": ("time to 95% (s)", False),
        "more accurate: test accuracy": ("test accuracy", True),
        **{f"more robust: drop, {name}": (f"drop: {name}", False) for name in CORRUPTIONS},
        "position: worst-position accuracy": ("worst-position accuracy", True),
    }


def claims_under(table, *heads: str):
    """The rows of a verdict table whose claim starts with one of ``heads`` (``"flatter"``,
    ``"faster"``, ...), in the table's order; their Holm p-values stay those of the whole
    table."""
    if not heads:
        raise ValueError("heads must name at least one claim heading, e.g. 'flatter'")
    keep = [str(c).split(":")[0] in heads for c in table.index]
    return table.loc[keep]


# --- tables ---------------------------------------------------------------------------------


def figure_label(column: str) -> str:
    """A run-table column as a table shows it, with its unit (accuracies and drops in
    points or percent)."""
    if column.startswith("drop: "):
        return f"relative drop (%), {column.removeprefix('drop: ')}"
    if column.startswith("steps to "):
        return f"{column} of target"
    if column.startswith("time to "):
        return "wall time to " + column.removeprefix("time to ").replace(" (s)", " of target (s)")
    if "accuracy" in column or column.startswith("position spread"):
        return f"{column} (points)"
    if column == "mean drop over corruptions":
        return f"{column} (%)"
    return column


def _cell(column: str, value: Any) -> str:
    """A run-table value as text, in its column's unit."""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if "accuracy" in column or "drop" in column or column.startswith("position spread"):
        return format_number(value, "accuracy")
    if column.startswith(("steps", "time to")):
        return format_number(value, "steps")
    return format_number(value)


def per_seed_display(frame, columns: Sequence[str], *, caption: str | None = None) -> StyledTable:
    """Every seed's value beside the mean, std and n, per figure and arm
    (:func:`pilcro_lib.experiments.per_seed` of a run table: one row per run, columns ``arm``,
    ``seed`` and ``columns``), in the book's table style; each figure's name once, with its
    unit."""
    table = experiments.per_seed(frame, list(columns)).reset_index()
    table = table.astype({"n": int})
    rows = []
    previous = None
    for _, row in table.iterrows():
        figure = row["figure"]
        cells = {"figure": figure_label(figure) if figure != previous else "", "arm": row["arm"]}
        for column in table.columns[2:]:
            cells[column] = str(row[column]) if column == "n" else _cell(figure, row[column])
        rows.append(cells)
        previous = figure
    return table_style(pd.DataFrame(rows), caption=caption, left=["figure", "arm"])


def settings_table(study: Study) -> StyledTable:
    """The study's set-up as a two-column table (nothing cut)."""
    items = study.settings()
    return table_style(
        pd.DataFrame({"setting": list(items), "value": list(items.values())}),
        left=["setting", "value"],
    )


def ladder_display(runs: Mapping[int, Mapping], n_epochs: int, *, title: str) -> StyledTable:
    """A run-length ladder (epochs -> metrics) as a table: epochs, steps, final validation
    accuracy, the gain over the next shorter run and the final training accuracy, in points."""
    table = ladder_table(
        {e: m["val_acc"] for e, m in runs.items()},
        steps_per_epoch=runs[n_epochs]["steps_per_epoch"],
    )
    frame = pd.DataFrame(
        {
            f"epochs ({title})": [str(e) for e in table.index],
            "steps": [format_number(v, "steps") for v in table["steps"]],
            "validation accuracy (points)": [
                format_number(v, "accuracy") for v in table["validation accuracy"]
            ],
            "gain (points)": ["–" if math.isnan(v) else f"{100 * v:+.1f}" for v in table["gain"]],
            "training accuracy (points)": [
                format_number(runs[e]["history"][-1]["train_acc"], "accuracy") for e in table.index
            ],
        }
    )
    return table_style(frame)


def choice_table(runs: Mapping[float, Mapping], name: str) -> StyledTable:
    """A weight grid (weight -> metrics of its run on the tuning seed) as a table: validation
    accuracy (points), final curvature and cv, and the weight chosen."""
    best = _best(runs)
    frame = pd.DataFrame(
        {
            name: [f"{lam:g}" for lam in runs],
            "validation accuracy (points)": [
                format_number(m["val_acc"], "accuracy") for m in runs.values()
            ],
            "final curvature κ": [format_number(m["flatness"]["curvature"]) for m in runs.values()],
            "final cv": [format_number(m["flatness"]["cv"]) for m in runs.values()],
            "chosen": ["chosen" if lam == best else "" for lam in runs],
        }
    )
    return table_style(frame)


def _why(group: GatedSeeds, seed: int) -> str:
    return group.reasons.get(seed, GATE_MISSED)


def gate_table(groups: Mapping[str, GatedSeeds]) -> tuple[StyledTable, list[str]]:
    """Each arm's validation accuracy (points) per seed, and the runs that failed the gate
    (``"<arm> seed <s> (<why>)"``: replaced, never averaged in)."""
    seeds = sorted({s for g in groups.values() for s in (*g.learnt, *g.failed)})
    rows, failed = [], []
    for arm, g in groups.items():
        results = {**g.learnt, **g.failed}
        row = {"arm": ARM_NAMES[arm]}
        for s in seeds:
            row[f"seed {s}"] = (
                format_number(results[s]["val_acc"], "accuracy") if s in results else ""
            )
        rows.append(row)
        failed += [f"{ARM_NAMES[arm]} seed {s} ({_why(g, s)})" for s in g.failed]
    return table_style(pd.DataFrame(rows)), failed


def verdict_counts(tables: Mapping[str, Any]) -> StyledTable:
    """How many claims of each verdict table are supported, contradicted, not resolved or not
    measured (one row per table)."""
    frame = pd.DataFrame(
        [
            {"comparison": name, **table["verdict"].value_counts().reindex(VERDICTS, fill_value=0)}
            for name, table in tables.items()
        ],
        columns=["comparison", *VERDICTS],
    )
    return table_style(frame)


# --- figures --------------------------------------------------------------------------------

FIGURE_INCHES = 7.8  # the widest figure: the ~680-px text column at 100 dpi, with its margins


def ladder_figure(runs: Mapping[int, Mapping], title: str) -> Figure:
    """The validation accuracy of each run of a run-length ladder, epoch by epoch."""
    fig, axes = plotting.new_figure(width=6, height=3.4, layout="constrained")
    ax = axes[0, 0]
    for e, m in runs.items():
        history = m["history"]
        ax.plot(
            [r["epoch"] for r in history],
            [100 * r["val_acc"] for r in history],
            marker="o",
            ms=4,
            label=f"{e} epochs",
        )
    ax.set(xlabel="epoch", ylabel="validation accuracy (points)")
    ax.set_title(f"{title}, tuning seed: one run per length", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _by_epoch(groups: Mapping[str, GatedSeeds], arm: str, epochs: int) -> np.ndarray:
    """``[seeds, epochs + 1]`` landscape curvature of an arm's learnt runs, epoch by epoch."""
    return np.array(
        [
            [m["flatness_by_epoch"][str(e)]["curvature"] for e in range(epochs + 1)]
            for m in groups[arm].learnt.values()
        ]
    )


def curvature_figure(groups: Mapping[str, GatedSeeds], arms: Sequence[str], epochs: int) -> Figure:
    """Each arm's landscape curvature over training (mean line, each seed faint), absolute
    and relative to its value at initialisation; log scale."""
    fig, axes = plotting.new_figure(1, 2, width=FIGURE_INCHES / 2, height=3.2, layout="constrained")
    for arm in arms:
        values = _by_epoch(groups, arm, epochs)
        for ax, v in zip(axes[0], (values, values / values[:, :1])):
            line = ax.plot(v.mean(0), marker="o", ms=3, label=ARM_NAMES[arm])[0]
            ax.plot(v.T, color=line.get_color(), alpha=0.25, lw=0.8)
    axes[0, 0].set_ylabel("landscape curvature κ(Λ)")
    axes[0, 1].set_ylabel("curvature / curvature at init")
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(which="both", labelsize=8)
    axes[0, 0].legend(fontsize=8)
    return fig


def landscape_figure(groups: Mapping[str, GatedSeeds], arms: Sequence[str], epochs: int) -> Figure:
    """Each arm's landscape (normalised, mean over its learnt seeds) at initialisation, after
    one epoch and at the end: one row per arm, one colour bar on one scale for all."""
    when = {"init": 0, "epoch 1": 1, f"epoch {epochs}": epochs}
    maps = {
        arm: {
            label: torch.stack(
                [
                    normalize(torch.tensor(m["landscapes"][str(e)]))
                    for m in groups[arm].learnt.values()
                ]
            )
            .mean(0)
            .numpy()
            for label, e in when.items()
        }
        for arm in arms
    }
    values = [a for row in maps.values() for a in row.values()]
    vmin, vmax = min(a.min() for a in values), max(a.max() for a in values)
    fig, axes = plotting.new_figure(len(arms), 3, width=2.3, height=2.0, layout="constrained")
    for i, arm in enumerate(arms):
        for j, (label, a) in enumerate(maps[arm].items()):
            ax = axes[i, j]
            image = ax.imshow(a, vmin=vmin, vmax=vmax, cmap="viridis", interpolation="nearest")
            ax.tick_params(labelsize=8)
            if i == 0:
                ax.set_title(label, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{ARM_NAMES[arm]}\n{plotting.ROW_LABEL}", fontsize=8)
            if i == len(arms) - 1:
                ax.set_xlabel(plotting.COLUMN_LABEL, fontsize=8)
    bar = fig.colorbar(image, ax=axes, shrink=0.6)
    bar.set_label(plotting.LANDSCAPE_UNIT, fontsize=8)
    bar.ax.tick_params(labelsize=8)
    return fig


def speed_figure(
    groups: Mapping[str, GatedSeeds], arms: Sequence[str], targets: Mapping[str, float]
) -> Figure:
    """Validation accuracy against training steps (mean line, each seed faint), with the
    speed target's levels as dotted lines."""
    fig, axes = plotting.new_figure(width=6.4, height=3.8, layout="constrained")
    ax = axes[0, 0]
    for arm in arms:
        runs = list(groups[arm].learnt.values())
        curves = 100 * np.array([[r["val_acc"] for r in m["history"]] for m in runs])
        steps = np.arange(1, curves.shape[1] + 1) * runs[0]["steps_per_epoch"]
        line = ax.plot(steps, curves.mean(0), marker="o", ms=3, label=ARM_NAMES[arm])[0]
        ax.plot(steps, curves.T, color=line.get_color(), alpha=0.25, lw=0.8)
    for level, target in targets.items():
        ax.axhline(100 * target, color="grey", ls=":", lw=1)
        ax.annotate(
            level,
            (0, 100 * target),
            xycoords=("axes fraction", "data"),
            fontsize=8,
            color="grey",
            xytext=(2, 2),
            textcoords="offset points",
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("validation accuracy (points)")
    ax.set_ylim(max(0.0, 80 * min(targets.values())), None)
    ax.legend(fontsize=8)
    return fig


def robustness_figure(runs, arms: Sequence[str]) -> Figure:
    """Each arm's relative accuracy drop (%) under each corruption: the mean as a bar, each
    seed as a dot. runs: a run table (:func:`run_row` rows)."""
    fig, axes = plotting.new_figure(width=FIGURE_INCHES, height=3.6, layout="constrained")
    ax, offsets = axes[0, 0], np.linspace(-0.3, 0.3, len(arms))
    columns = [f"drop: {name}" for name in CORRUPTIONS]
    for offset, arm in zip(offsets, arms):
        values = 100 * runs.loc[runs["arm"] == ARM_NAMES[arm], columns].to_numpy()
        x = np.arange(len(columns)) + offset
        ax.bar(x, values.mean(0), width=0.6 / len(arms), label=ARM_NAMES[arm], alpha=0.8)
        ax.plot(np.repeat(x[None], len(values), 0), values, "k.", ms=3)
    labels = [name.replace(" ", "\n", 1) for name in CORRUPTIONS]
    ax.set_xticks(range(len(columns)), labels, fontsize=8)
    ax.set_ylabel("relative accuracy drop (%)")
    ax.legend(fontsize=8)
    return fig


def position_heatmap(
    position: Position, *, vmin: float = POSITION_SCALE[0], vmax: float = POSITION_SCALE[1]
) -> Figure:
    """Each complete arm's test accuracy (points) at each position of the grid (mean over its
    learnt seeds), on one fixed scale from ``vmin`` to ``vmax`` points (so that noise is not
    stretched to full contrast), every cell printed as ``mean ± standard error over the
    seeds``; one colour bar."""
    arms = position.complete
    n = position.grid
    fig, axes = plotting.new_figure(1, len(arms), width=2.45, height=2.6, layout="constrained")
    for ax, arm in zip(axes[0], arms):
        runs = position.groups[arm].learnt.values()
        acc = 100 * np.array([np.reshape(m["position_acc"], (n, n)) for m in runs])
        mean, se = acc.mean(0), acc.std(0, ddof=1) / math.sqrt(len(acc))
        image = ax.imshow(mean, vmin=vmin, vmax=vmax, cmap="viridis", interpolation="nearest")
        for (r, c), value in np.ndenumerate(mean):
            colour = "white" if value < (vmin + vmax) / 2 else "black"
            ax.text(
                c,
                r,
                f"{value:.1f}\n±{se[r, c]:.1f}",
                ha="center",
                va="center",
                fontsize=8,
                color=colour,
            )
        ax.set_xticks(range(n), position.offsets, fontsize=8)
        ax.set_yticks(range(n), position.offsets, fontsize=8)
        ax.set_title(ARM_NAMES[arm], fontsize=9)
        ax.set_xlabel("item's left edge (px)", fontsize=8)
    axes[0, 0].set_ylabel("item's top edge (px)", fontsize=8)
    bar = fig.colorbar(image, ax=axes, shrink=0.8)
    bar.set_label("test accuracy (points)", fontsize=8)
    bar.ax.tick_params(labelsize=8)
    return fig
