"""Part IV's study of where position information hides in a CNN (pages 09 to 09d).

The pages share one parameter interface (:data:`PARAMETERS`, with :data:`DEFAULTS` per profile,
checked by :func:`configure`), one data set-up and one folder of run records
(:data:`RECORD_NAME`): every page asks :class:`PositionStudy` for the runs it needs, and a run
that one page stored is read, not trained, by the others. The functions after the class turn
the runs' metrics into the pages' tables, figures and claims (:data:`CLAIMS`, stated before the
runs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from pilcro_lib import plotting
from pilcro_lib.data import (
    DATASETS,
    NORMALIZATION,
    ImageDataset,
    load_dataset,
    train_val_split,
)
from pilcro_lib.landscape import asymmetry, border_balance, flatness, pearson
from pilcro_lib.lrlc_experiments import downsample
from pilcro_lib.paths import path_count
from pilcro_lib.position import position_net, quadrant_task, run_position_arm
from pilcro_lib.protocol import (
    GATE_MISSED,
    GatedSeeds,
    choose_on_validation,
    gated_seeds,
    ladder_epochs,
    ladder_table,
    log_grid,
)
from pilcro_lib.results import StyledTable, format_number, table_style
from pilcro_lib.runs.records import cached_run, provenance_note
from pilcro_lib.stats import VERDICTS, mean_interval
from pilcro_lib.synthetic import paste, random_offsets
from pilcro_lib.train import get_recipe
from pilcro_lib.utils import (
    check_bool,
    check_choice,
    check_number,
    check_positive_int,
    check_type,
    get_device,
)

__all__ = [
    "CLAIMS",
    "CAPTIONS",
    "DEFAULTS",
    "PARAMETERS",
    "RECORD_NAME",
    "Choices",
    "PositionStudy",
    "Settings",
    "choice_table",
    "claim_units",
    "claim_values",
    "classification_arms",
    "classification_frame",
    "collapse_frame",
    "collapse_summary",
    "configure",
    "correlation_figure",
    "correlation_frame",
    "gate_table",
    "grown",
    "init_and_final",
    "ladder_display",
    "maps_figure",
    "path_count_correlations",
    "path_count_table",
    "period_two_asymmetry",
    "border_balance_table",
    "probe_set",
    "quadrant_arms",
    "quadrant_data",
    "quadrant_figure",
    "quadrant_frame",
    "seed_table",
    "setup_table",
    "shift_figure",
    "stride_counts",
    "stride_data",
    "stride_frame",
    "stride_sizes",
    "verdict_counts",
    "verdict_metrics",
]

RECORD_NAME = "09_where_position_hides"  # the record folder every page of the study reads
PARAMETERS = (
    "seed",
    "n_seeds",
    "dataset",
    "epochs",
    "batch_size",
    "n_train",
    "n_val",
    "n_test",
    "width",
    "lam_grid",
    "rank_grid",
    "gate",
    "quad_epochs",
    "quad_train",
    "quad_val",
    "quad_test",
    "item_factor",
    "canvas",
    "jitter",
    "border_shift",
    "n_tuning",
    "lr_grid",
    "eval_landscape",
)
# book: a Fashion-MNIST subset and the fast CNN of chapter 6 (2 CPU cores)
BOOK_DEFAULTS: dict[str, Any] = dict(
    n_seeds=5,
    dataset="fashion_mnist",
    epochs=16,
    batch_size=64,
    n_train=12000,
    n_val=2000,
    n_test=10000,
    width=16,
    lam_grid=(0.003, 3.0, 4),
    rank_grid=(2, 4, 8),
    gate=0.5,
    quad_epochs=16,
    quad_train=1000,
    quad_val=500,
    quad_test=2000,
    item_factor=4,
    canvas=32,
    jitter=9,
    border_shift=3,
    spares=2,
    n_tuning=1,
    lr_grid=None,
    eval_landscape=False,
)
DEFAULTS: dict[str, dict[str, Any]] = {
    # smoke: the shipped sample, tiny networks, two seeds (seconds, for CI)
    "smoke": BOOK_DEFAULTS
    | dict(n_seeds=2, dataset="fashion_mnist_sample", epochs=2, n_train=256, n_val=64)
    | dict(n_test=128, width=4, lam_grid=(0.1, 1.0, 2), rank_grid=(2, 4), gate=0.0)
    | dict(quad_epochs=2, quad_train=128, quad_val=64, quad_test=64),
    "book": BOOK_DEFAULTS,
    # paper: CIFAR-10 and a wider network (a GPU)
    "paper": BOOK_DEFAULTS
    | dict(dataset="cifar10", epochs=30, batch_size=256, n_train=None, n_val=5000)
    | dict(width=64, lam_grid=(0.01, 10.0, 4), gate=0.3, quad_epochs=30)
    | dict(quad_train=10000, quad_val=2000, quad_test=5000, item_factor=2, canvas=48)
    | dict(jitter=8, border_shift=4, spares=3, n_tuning=3, eval_landscape=True),
}
TUNING_OFFSET = 1000  # the tuning seeds are seed + 1000, + 1001, ...: never a final seed


@dataclass(frozen=True)
class Settings:
    """The study's parameters, checked (:func:`configure`); see :data:`PARAMETERS`."""

    profile: str
    seed: int
    n_seeds: int
    dataset: str
    epochs: int
    batch_size: int
    n_train: int | None
    n_val: int
    n_test: int
    width: int
    lam_grid: tuple[float, ...]
    rank_grid: tuple[int, ...]
    gate: float
    quad_epochs: int
    quad_train: int
    quad_val: int
    quad_test: int
    item_factor: int
    canvas: int
    jitter: int
    border_shift: int
    n_spares: int
    n_tuning: int = 1
    lr_grid: tuple[float, ...] | None = None
    eval_landscape: bool = False

    @property
    def seeds(self) -> list[int]:
        """The final seeds: ``seed, seed + 1, ...`` (``n_seeds`` of them)."""
        return list(range(self.seed, self.seed + self.n_seeds))

    @property
    def spares(self) -> list[int]:
        """The seeds that replace a final seed that fails the gate, in order."""
        first = self.seed + self.n_seeds
        return list(range(first, first + self.n_spares))

    @property
    def tuning_seeds(self) -> list[int]:
        """The seeds of the runs that choose on validation (``n_tuning`` of them)."""
        return [self.seed + TUNING_OFFSET + i for i in range(self.n_tuning)]

    @property
    def tuning_seed(self) -> int:
        """The first tuning seed: the run-length ladders'."""
        return self.tuning_seeds[0]

    def recipe_at(self, lr: float | None = None):
        """The fast recipe with batches of ``batch_size`` and peak rate ``lr`` (default
        0.2 x batch / 256)."""
        return get_recipe(
            "fast", batch_size=self.batch_size, lr=0.2 * self.batch_size / 256 if lr is None else lr
        )

    @property
    def recipe(self):
        """The fast recipe with batches of ``batch_size``, peak rate 0.2 x batch / 256."""
        return self.recipe_at()


def configure(profile: str, **parameters: Any) -> Settings:
    """The :class:`Settings` of ``profile`` with ``parameters`` (names of :data:`PARAMETERS`;
    ``None`` takes the profile's default), each checked: a bad value raises an error that names
    it and says what is allowed."""
    profile = check_choice("profile", profile, DEFAULTS)
    unknown = [name for name in parameters if name not in PARAMETERS]
    if unknown:
        raise ValueError(f"unknown parameters {unknown}; the study's are {list(PARAMETERS)}")
    defaults = DEFAULTS[profile]

    def pick(name: str) -> Any:
        value = parameters.get(name)
        return defaults[name] if value is None else value

    count = {
        name: check_positive_int(name, pick(name))
        for name in (
            "epochs",
            "batch_size",
            "n_val",
            "n_test",
            "width",
            "quad_epochs",
            "quad_train",
            "quad_val",
            "quad_test",
            "item_factor",
            "canvas",
            "border_shift",
            "n_tuning",
        )
    }
    n_train = pick("n_train")
    seed = parameters.get("seed")
    lam_grid = pick("lam_grid")
    if not (isinstance(lam_grid, (list, tuple)) and len(lam_grid) == 3):
        raise ValueError(f"lam_grid must be (lowest, highest, steps), got {lam_grid!r}")
    lr_grid = pick("lr_grid")
    if lr_grid is not None:
        if (
            isinstance(lr_grid, (str, bytes))
            or not isinstance(lr_grid, (list, tuple))
            or not lr_grid
        ):
            raise ValueError(
                f"lr_grid must be a list of peak learning rates or None, got {lr_grid!r}"
            )
        lr_grid = tuple(
            sorted({check_number("lr_grid", r, minimum=0, strict=True) for r in lr_grid})
        )
    return Settings(
        profile=profile,
        seed=check_positive_int("seed", 0 if seed is None else seed, minimum=0),
        n_seeds=check_positive_int("n_seeds", pick("n_seeds"), minimum=2),
        dataset=check_choice("dataset", pick("dataset"), DATASETS),
        n_train=None if n_train is None else check_positive_int("n_train", n_train),
        lam_grid=tuple(log_grid(*lam_grid)),
        rank_grid=tuple(check_positive_int("rank_grid", r) for r in pick("rank_grid")),
        gate=check_number("gate", pick("gate"), minimum=0, maximum=1),
        jitter=check_positive_int("jitter", pick("jitter"), minimum=0),
        n_spares=defaults["spares"],
        lr_grid=lr_grid,
        eval_landscape=check_bool("eval_landscape", pick("eval_landscape")),
        **count,
    )


@dataclass(frozen=True)
class Choices:
    """What the tuning runs chose on validation: ``lam`` (the P-objective's weight) and
    ``rank`` (the LRLC layer's), with the tables they were chosen from (one row per
    candidate: ``mean`` validation accuracy, ``std``, ``n``, ``chosen``)."""

    lam: float
    rank: int
    lam_table: Any
    rank_table: Any


class PositionStudy:
    """The study's settings, data and runs.

    settings: from :func:`configure`; device: where runs train (default
    :func:`pilcro_lib.utils.get_device`). Loads the classification data at once: ``train_set``
    and ``val_set`` (a seeded split of the training images) and ``test_set``, images
    ``[N, C, H, W]``. Every run goes through :meth:`train`, which keeps the records it read
    (``records``, by key) for the pages' provenance lines (:meth:`note`).
    """

    def __init__(self, settings: Settings, device: str | torch.device | None = None):
        check_type("settings", settings, Settings, "Settings from configure()")
        self.settings = s = settings
        self.device = get_device(device)
        subset = None if s.n_train is None else s.n_train + s.n_val
        pool = load_dataset(s.dataset, "train", subset=subset, seed=0)
        self.train_set, self.val_set = train_val_split(pool, s.n_val / len(pool), seed=0)
        self.test_set = load_dataset(s.dataset, "test", subset=s.n_test, seed=0)
        self.records: dict[str, Any] = {}
        self.rates: dict[str, float] = {}  # arm -> its peak rate, chosen by tune_rates

    @property
    def data(self) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
        """``(train_set, val_set, test_set)``."""
        return self.train_set, self.val_set, self.test_set

    def train(
        self,
        seed: int,
        *,
        data: Sequence[ImageDataset] | None = None,
        n_epochs: int | None = None,
        **options: Any,
    ) -> Mapping[str, Any]:
        """The metrics of one run of :func:`pilcro_lib.position.run_position_arm` (its record:
        read if current, else trained and stored under :data:`RECORD_NAME`).

        data: ``(train, val, test)`` (default :attr:`data`); n_epochs: default the settings'
        ``epochs``; lr: the peak rate (default the recipe's); options go to the run: network
        options, ``lam``, ``border_shift``.
        """
        s = self.settings
        lr = options.pop("lr", None)
        if s.eval_landscape:  # only then: the key of a run without it stays as it was
            options.setdefault("eval_landscape", True)
        train_set, val_set, test_set = data or self.data
        record = cached_run(
            run_position_arm,
            name=RECORD_NAME,
            train_set=train_set,
            val_set=val_set,
            test_set=test_set,
            epochs=s.epochs if n_epochs is None else n_epochs,
            seed=seed,
            recipe=s.recipe_at(lr),
            width=s.width,
            normalization=NORMALIZATION[s.dataset],
            device=self.device,
            **options,
        )
        self.records.setdefault(record.key, record)  # the first reading says if it was computed
        return record.metrics

    def gated(self, arms: Mapping[str, Mapping[str, Any]], **common: Any) -> dict[str, GatedSeeds]:
        """Each arm's runs on the final seeds behind the gate (validation accuracy at least the
        settings' ``gate``; a seed that fails is replaced by a spare): arm -> GatedSeeds.
        ``arms`` maps a name to the options of :meth:`train`, ``common`` adds options to all.
        Every run on the final seeds is asked for before any is read."""
        s = self.settings
        arms = {
            arm: {**options, "lr": self.rates[arm]} if arm in self.rates else options
            for arm, options in arms.items()
        }
        for options in arms.values():
            for seed in s.seeds:
                self.train(seed, **common, **options)
        return {
            arm: gated_seeds(
                lambda seed, options=options: self.train(seed, **common, **options),
                s.seeds,
                gate=lambda m: m["val_acc"] >= s.gate,
                spares=s.spares,
            )
            for arm, options in arms.items()
        }

    def tune_rates(self, arms: Mapping[str, Mapping[str, Any]], **common: Any) -> dict[str, Any]:
        """Each arm's peak learning rate, chosen on validation: every rate of the settings'
        ``lr_grid`` on every tuning seed, the best mean validation accuracy (ties: the lower
        rate); kept in ``rates``, which :meth:`gated` then uses. Every run is asked for before
        any is read. Returns arm -> :class:`pilcro_lib.protocol.Choice`."""
        s = self.settings
        if s.lr_grid is None:
            raise ValueError("tune_rates needs the settings' lr_grid (a list of peak rates)")
        runs = {
            arm: {
                lr: [self.train(t, lr=lr, **common, **options) for t in s.tuning_seeds]
                for lr in s.lr_grid
            }
            for arm, options in arms.items()
        }
        choices = {
            arm: choose_on_validation({lr: [m["val_acc"] for m in ms] for lr, ms in by.items()})
            for arm, by in runs.items()
        }
        self.rates |= {arm: choice.best for arm, choice in choices.items()}
        return choices

    def ladder(self, n_epochs: int, **options: Any) -> dict[int, Mapping[str, Any]]:
        """The run-length ladder on the tuning seed: half, once and twice ``n_epochs``
        (epochs -> metrics)."""
        return {
            e: self.train(self.settings.tuning_seed, n_epochs=e, **options)
            for e in ladder_epochs(n_epochs)
        }

    def choices(self) -> Choices:
        """The P-objective's weight and the LRLC rank of best mean validation accuracy over the
        tuning seeds (ties go to the smaller value); every run is asked for before any is
        read."""
        s = self.settings
        lam_runs = {lam: [self.train(t, lam=lam) for t in s.tuning_seeds] for lam in s.lam_grid}
        rank_runs = {
            r: [self.train(t, first="lrlc", rank=r) for t in s.tuning_seeds] for r in s.rank_grid
        }
        lam, rank = (
            choose_on_validation({v: [m["val_acc"] for m in ms] for v, ms in runs.items()})
            for runs in (lam_runs, rank_runs)
        )
        return Choices(lam.best, rank.best, lam.table, rank.table)

    def mark(self) -> int:
        """How many records were read so far (for :meth:`note`)."""
        return len(self.records)

    def note(self, since: int = 0) -> str:
        """The provenance line of the records read since the ``since``-th."""
        return provenance_note(list(self.records.values())[since:])

    def training_hours(self, since: int = 0) -> float:
        """Single-thread hours of training behind the records read since the ``since``-th."""
        records = list(self.records.values())[since:]
        return sum(r.provenance["wall_time_s"] for r in records) / 3600


# --- tables ----------------------------------------------------------------------------------

COLUMN_KINDS = {  # how each per-run figure reads (pilcro_lib.results.format_number's kinds)
    "test accuracy": "accuracy",
    "shift consistency": "accuracy",
    "accuracy left - right": "accuracy",
    "accuracy up - down": "accuracy",
    "lowest after first 95%": "accuracy",
    "steps to 95%": "steps",
    "epoch of the lowest": "steps",
}
UNIT_WORDS = {"accuracy": "points", "steps": "", "value": ""}


def setup_table(study: PositionStudy) -> StyledTable:
    """The study's set-up as a two-column table (setting, value), every value whole."""
    s = study.settings
    rows = {
        "data": (
            f"{s.dataset}: {len(study.train_set):,} train / {len(study.val_set):,} validation"
            f" / {len(study.test_set):,} test images"
        ),
        "network": f"position_net, width {s.width}",
        "recipe": (
            f"fast, batches of {s.batch_size}, peak rate {s.recipe.lr:g}, {s.epochs} epochs"
        ),
        "seeds": (
            f"{', '.join(map(str, s.seeds))} (spares {', '.join(map(str, s.spares))}; "
            f"tuning {'seed' if s.n_tuning == 1 else 'seeds'} "
            f"{', '.join(map(str, s.tuning_seeds))})"
        ),
        "gate": f"validation accuracy at least {format_number(s.gate, 'accuracy')} points",
        "λ grid, P-objective": ", ".join(f"{v:g}" for v in s.lam_grid),
        "rank grid, LRLC": ", ".join(map(str, s.rank_grid)),
    }
    frame = pd.DataFrame({"setting": list(rows), "value": list(rows.values())})
    return table_style(frame, left=["setting", "value"])


def _points(value: float) -> str:
    return format_number(value, "accuracy")


def ladder_display(runs: Mapping[int, Mapping[str, Any]], title: str) -> StyledTable:
    """A run-length ladder (epochs -> metrics) as a table: epochs, steps, validation accuracy
    and its gain over the next shorter run, in points."""
    longest = max(runs)
    table = ladder_table(
        {e: m["val_acc"] for e, m in runs.items()},
        steps_per_epoch=runs[longest]["steps_per_epoch"],
    ).reset_index()
    return table_style(
        table.rename(columns={"validation accuracy": "validation accuracy (points)"}),
        {
            "validation accuracy (points)": _points,
            "gain": lambda v: "–" if math.isnan(v) else f"{100 * v:+.2f}",
            "steps": "{:,}",
        },
        caption=f"Run-length ladder ({title}), tuning seed; gain in points",
    )


def choice_table(table: Any, name: str) -> StyledTable:
    """A :class:`Choices` table (candidate -> mean validation accuracy, chosen) as a table."""
    frame = pd.DataFrame(
        {
            name: [f"{v:g}" for v in table.index],
            "validation accuracy (points)": [_points(v) for v in table["mean"]],
            "chosen": ["yes" if c else "" for c in table["chosen"]],
        }
    )
    tuning = "tuning seed" if table["n"].max() == 1 else f"mean of {table['n'].max()} tuning seeds"
    return table_style(frame, caption=f"{name}, chosen on validation ({tuning})")


def gate_table(groups: Mapping[str, GatedSeeds], gate: float) -> StyledTable:
    """Every final and spare seed's validation accuracy (points), one row per arm; the caption
    names the seeds that failed the gate and were replaced."""
    runs = {arm: {**g.learnt, **g.failed} for arm, g in groups.items()}
    seeds = sorted({s for by_seed in runs.values() for s in by_seed})
    frame = pd.DataFrame(
        [
            {
                "arm": arm,
                **{
                    f"seed {s}": _points(by_seed[s]["val_acc"]) if s in by_seed else ""
                    for s in seeds
                },
            }
            for arm, by_seed in runs.items()
        ]
    )
    failed = [
        f"{arm} seed {s} ({g.reasons.get(s, GATE_MISSED)})"
        for arm, g in groups.items()
        for s in g.failed
    ]
    return table_style(
        frame,
        caption=(
            f"Validation accuracy (points) of every run; gate: at least {_points(gate)}. "
            f"Seeds that failed the gate (replaced): {', '.join(failed) or 'none'}"
        ),
    )


def seed_table(frame: pd.DataFrame, columns: Sequence[str], *, caption: str | None = None):
    """Per-seed values of ``columns`` of a long table (one row per run: ``arm``, ``seed`` and
    the columns), one row per figure and arm: every seed, mean, std and n. Each figure reads
    in its kind (:data:`COLUMN_KINDS`: accuracies in points, steps whole, else 3 digits)."""
    from pilcro_lib.experiments import per_seed

    if frame.empty:
        empty = pd.DataFrame({"figure": [], "arm": []})
        return table_style(empty, caption=f"{caption or 'per-seed values'} (no runs)")
    table = per_seed(frame, list(columns))
    rows = []
    for (figure, arm), row in table.iterrows():
        kind = COLUMN_KINDS.get(figure, "value")
        unit = UNIT_WORDS[kind]
        cells = {"figure": f"{figure} ({unit})" if unit else figure, "arm": arm}
        for column, value in row.items():
            cells[column] = str(int(value)) if column == "n" else format_number(value, kind)
        rows.append(cells)
    return table_style(pd.DataFrame(rows), caption=caption, left=["figure", "arm"])


# --- H1: shift consistency -------------------------------------------------------------------


def classification_arms(lam: float, rank: int) -> dict[str, dict[str, Any]]:
    """The arms of H1 (and of H4 and H5, which read their runs): name -> run options."""
    return {
        "plain": {},
        "BlurPool": {"downsampling": "blur"},
        "circular padding": {"padding": "circular"},
        "reflect padding": {"padding": "reflect"},
        "circular + BlurPool": {"padding": "circular", "downsampling": "blur"},
        "P-objective": {"lam": lam},
        "LRLC": {"first": "lrlc", "rank": rank},
        "LRLC + P-objective": {"first": "lrlc", "rank": rank, "lam": lam},
    }


def _landscape(metrics: Mapping[str, Any], epoch: int | str) -> torch.Tensor:
    return torch.tensor(metrics["landscapes"][str(epoch)])


def classification_frame(groups: Mapping[str, GatedSeeds]) -> pd.DataFrame:
    """One row per learnt run: ``arm``, ``seed``, ``test accuracy``, ``shift consistency``,
    ``curvature (init)``, ``curvature (final)`` and ``cv (final)`` (of the landscape at
    initialisation and after the last epoch)."""
    rows = []
    for arm, g in groups.items():
        for seed, m in g.learnt.items():
            init, end = _landscape(m, 0), _landscape(m, len(m["history"]))
            final = flatness(end)
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "test accuracy": m["test_acc"],
                    "shift consistency": m["consistency"],
                    "curvature (init)": flatness(init)["curvature"],
                    "curvature (final)": final["curvature"],
                    "cv (final)": final["cv"],
                }
            )
    return pd.DataFrame(rows)


SHIFT_PANELS = {
    "pooling and padding": [
        "plain",
        "BlurPool",
        "circular padding",
        "reflect padding",
        "circular + BlurPool",
    ],
    "P-objective and LRLC": ["plain", "P-objective", "LRLC", "LRLC + P-objective"],
}


def shift_figure(frame: pd.DataFrame) -> Figure:
    """Shift consistency against test accuracy (both in %), one dot per seed and a diamond per
    arm's mean, in two panels (:data:`SHIFT_PANELS`) on the same axes; an arm keeps its colour
    in both."""
    fig, axes = plotting.new_figure(
        1, 2, width=4.0, height=3.6, layout="constrained", sharex=True, sharey=True
    )
    arms = list(dict.fromkeys(a for panel in SHIFT_PANELS.values() for a in panel))
    colours = {arm: f"C{i}" for i, arm in enumerate(arms)}
    for ax, (title, panel) in zip(axes[0], SHIFT_PANELS.items()):
        for arm in panel:
            rows = frame[frame["arm"] == arm]
            x, y = 100 * rows["test accuracy"], 100 * rows["shift consistency"]
            ax.scatter(x, y, s=14, alpha=0.5, color=colours[arm])
            ax.scatter(
                x.mean(), y.mean(), color=colours[arm], marker="D", s=50, edgecolor="k", label=arm
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("test accuracy (%)")
        ax.legend(fontsize=8, loc="center right")
    axes[0, 0].set_ylabel("shift consistency (%, 1 px, 8 directions)")
    return fig


# --- H2: the quadrant task -------------------------------------------------------------------


def quadrant_arms(lam: float, rank: int) -> dict[str, dict[str, Any]]:
    """The arms of H2: name -> run options."""
    return {
        "zero padding": {},
        "reflect padding": {"padding": "reflect"},
        "circular padding": {"padding": "circular"},
        "valid padding": {"padding": "valid"},
        "full padding": {"padding": "full"},
        "P-objective": {"lam": lam},
        "CoordConv": {"first": "coordconv"},
        "LRLC": {"first": "lrlc", "rank": rank},
    }


def quadrant_data(settings: Settings) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """The quadrant task's (train, val, test): images downsampled by ``item_factor`` and pasted
    in a quadrant of a ``canvas``-pixel canvas (:func:`pilcro_lib.position.quadrant_task`),
    ``[N, C, canvas, canvas]``."""
    s = settings
    items = {
        split: downsample(load_dataset(s.dataset, split, subset=n, seed=1), s.item_factor)
        for split, n in (("train", s.quad_train + s.quad_val), ("test", s.quad_test))
    }
    train, val = train_val_split(items["train"], s.quad_val / len(items["train"]), seed=1)
    return tuple(
        quadrant_task(d, s.canvas, jitter=s.jitter, seed=i)
        for i, d in enumerate((train, val, items["test"]))
    )


def probe_set(settings: Settings, *, seed: int = 2) -> tuple[ImageDataset, torch.Tensor]:
    """The position probe's items: the quadrant task's test items (downsampled by
    ``item_factor``) pasted at uniform random positions of the ``canvas``, for
    :func:`pilcro_lib.position.position_probe`: ``(canvases [N, C, canvas, canvas], offsets
    [N, 2])``."""
    s = settings
    items = downsample(load_dataset(s.dataset, "test", subset=s.quad_test, seed=1), s.item_factor)
    offsets = random_offsets(len(items), items.image_shape[-1], s.canvas, seed=seed)
    return paste(items, s.canvas, offsets), offsets


def _first_epoch(history: Sequence[Mapping[str, Any]], target: float) -> int | None:
    return next((r["epoch"] for r in history if r["val_acc"] >= target), None)


def quadrant_frame(
    runs: Mapping[str, Mapping[int, Mapping[str, Any]]], *, target: float = 0.95
) -> pd.DataFrame:
    """One row per run (arm -> seed -> metrics): ``arm``, ``seed``, ``test accuracy`` and
    ``steps to 95%``, the steps until the first epoch whose validation accuracy reaches
    ``target`` (a run that never does counts one epoch after its end)."""
    from pilcro_lib.experiments import steps_to_reach

    rows = []
    for arm, by_seed in runs.items():
        for seed, m in by_seed.items():
            spe = m["steps_per_epoch"]
            steps, _ = steps_to_reach(m["history"], target, steps_per_epoch=spe)
            never = (len(m["history"]) + 1) * spe  # never reached: one epoch after the end
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "test accuracy": m["test_acc"],
                    "steps to 95%": never if math.isnan(steps) else steps,
                }
            )
    return pd.DataFrame(rows)


COLLAPSE_COLUMNS = (
    "arm",
    "seed",
    "first epoch at 95%",
    "lowest after first 95%",
    "epoch of the lowest",
    "back for good",
)


def collapse_frame(
    runs: Mapping[str, Mapping[int, Mapping[str, Any]]], *, target: float = 0.95
) -> pd.DataFrame:
    """What happens after a run first reaches ``target`` validation accuracy, from its per-epoch
    history: one row per run that reaches it, with ``arm``, ``seed``, ``first epoch at 95%``,
    ``lowest after first 95%`` (the lowest validation accuracy of the later epochs; NaN if
    there is none), ``epoch of the lowest`` and ``back for good`` (the epoch from which every
    later epoch stays at ``target`` or above)."""
    rows = []
    for arm, by_seed in runs.items():
        for seed, m in by_seed.items():
            accuracy = [r["val_acc"] for r in m["history"]]
            first = _first_epoch(m["history"], target)
            if first is None:
                continue
            later = accuracy[first:]
            low = int(np.argmin(later)) if later else None
            below = [e for e, a in enumerate(accuracy, 1) if a < target]
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "first epoch at 95%": first,
                    "lowest after first 95%": later[low] if later else math.nan,
                    "epoch of the lowest": first + 1 + low if later else math.nan,
                    "back for good": max(below, default=0) + 1,
                }
            )
    return pd.DataFrame(rows, columns=list(COLLAPSE_COLUMNS))


def collapse_summary(collapse: pd.DataFrame, arm: str, *, floor: float) -> dict[str, Any]:
    """What a :func:`collapse_frame` says of ``arm`` and of the other arms, for the prose.

    Of ``arm``'s runs whose lowest point after first reaching 95% is below ``floor``:
    ``n_fell``, their lowest points (``fell_low``, ``fell_high``), first epochs at 95%
    (``first_low``, ``first_high``), epochs of the lowest points (``when_first``,
    ``when_last``) and the latest ``back_for_good``; of the other arms: ``n_fell_others`` and
    the deepest dip (``deepest``, ``deepest_arm``, ``deepest_seed``). A figure with no run to
    describe is ``None``.
    """
    check_number("floor", floor, minimum=0, maximum=1)
    lowest = collapse["lowest after first 95%"]
    fell = collapse[lowest < floor]
    mine = fell[fell["arm"] == arm]
    others = collapse[(collapse["arm"] != arm) & lowest.notna()]

    def span(column: str, how: str) -> Any:
        return getattr(mine[column], how)() if len(mine) else None

    summary = {
        "n_fell": len(mine),
        "fell_low": span("lowest after first 95%", "min"),
        "fell_high": span("lowest after first 95%", "max"),
        "first_low": span("first epoch at 95%", "min"),
        "first_high": span("first epoch at 95%", "max"),
        "when_first": span("epoch of the lowest", "min"),
        "when_last": span("epoch of the lowest", "max"),
        "back_for_good": span("back for good", "max"),
        "n_fell_others": len(fell) - len(mine),
        "deepest": None,
        "deepest_arm": None,
        "deepest_seed": None,
    }
    if len(others):
        row = others.loc[others["lowest after first 95%"].idxmin()]
        summary |= {
            "deepest": row["lowest after first 95%"],
            "deepest_arm": row["arm"],
            "deepest_seed": row["seed"],
        }
    return summary


QUADRANT_PANELS = {
    "zero, reflect and circular padding": ["zero padding", "reflect padding", "circular padding"],
    "valid and full padding": ["valid padding", "full padding"],
    "CoordConv and LRLC": ["CoordConv", "LRLC"],
}


def quadrant_figure(
    runs: Mapping[str, Mapping[int, Mapping[str, Any]]], *, chance: float = 0.25
) -> Figure:
    """Validation accuracy (%) on the quadrant task against the training step: three panels of
    arms (mean line, each seed faint; zero padding's mean dashed where it is not an arm of the
    panel) and a fourth with every seed of the P-objective drawn in full."""
    fig, axes = plotting.new_figure(2, 2, width=4.0, height=2.7, layout="constrained")

    def curves(arm: str) -> tuple[np.ndarray, np.ndarray]:
        by_seed = runs[arm]
        acc = np.array([[100 * r["val_acc"] for r in m["history"]] for m in by_seed.values()])
        spe = next(iter(by_seed.values()))["steps_per_epoch"]
        return np.arange(1, acc.shape[1] + 1) * spe, acc

    steps, zero = curves("zero padding")
    for ax, (title, arms) in zip(axes.flat, QUADRANT_PANELS.items()):
        if "zero padding" not in arms:
            ax.plot(steps, zero.mean(0), color="grey", ls="--", label="zero padding (mean)")
        for i, arm in enumerate(arms):
            x, acc = curves(arm)
            ax.plot(x, acc.mean(0), color=f"C{i}", label=arm)
            ax.plot(x, acc.T, color=f"C{i}", alpha=0.25, lw=0.8)
        ax.set_title(title, fontsize=10)
    ax = axes[1, 1]
    ax.plot(steps, zero.mean(0), color="grey", ls="--", label="zero padding (mean)")
    x, acc = curves("P-objective")
    for seed, curve in zip(runs["P-objective"], acc):
        ax.plot(x, curve, lw=1.2, label=f"seed {seed}")
    ax.set_title("P-objective, each seed", fontsize=10)
    for ax in axes.flat:
        ax.axhline(100 * chance, color="black", ls=":", lw=1)
        ax.set_ylim(0, 105)
        ax.legend(fontsize=8, loc="lower right", ncol=2 if ax is axes[1, 1] else 1)
    for ax in axes[1]:
        ax.set_xlabel("training step")
    for ax in axes[:, 0]:
        ax.set_ylabel("validation accuracy (%)")
    return fig


# --- H3: stride 2 on even and odd inputs -----------------------------------------------------


def stride_sizes(size: int) -> dict[str, int]:
    """The even and the odd input size next to ``size`` (28 -> 28 and 29; 29 -> 30 and 29)."""
    size = check_positive_int("size", size)
    return {"even": size + size % 2, "odd": size + 1 - size % 2}


GROW_MODES = ("pad", "resample")


def grown(data: ImageDataset, target: int, how: str = "pad") -> ImageDataset:
    """``data`` at ``target`` pixels: ``[N, C, H, W]`` -> ``[N, C, target, target]`` (float in
    [0, 1]). ``how``: ``pad`` adds black rows and columns at the bottom and right (one-sided),
    ``resample`` interpolates bilinearly with the corner pixels kept in the corners, which
    commutes with mirroring: a symmetric image stays symmetric."""
    check_choice("how", how, GROW_MODES)
    size = data.image_shape[-1]
    if target < size:
        raise ValueError(f"target={target} is smaller than the {size}-px images")
    images = data.float_images()
    if how == "pad":
        images = F.pad(images, (0, target - size, 0, target - size))
    elif target != size:
        images = F.interpolate(images, size=(target, target), mode="bilinear", align_corners=True)
    suffix = "px" if how == "pad" else "px_resampled"
    return ImageDataset(images, data.labels, data.classes, f"{data.name}_{target}{suffix}")


def stride_data(study: PositionStudy, how: str = "pad") -> dict[str, tuple[ImageDataset, ...]]:
    """The study's (train, val, test) grown to the even and the odd size, by ``how`` (see
    :func:`grown`): ``"28 px"`` -> the three data sets (see :func:`stride_sizes`)."""
    sizes = stride_sizes(study.train_set.image_shape[-1])
    return {f"{n} px": tuple(grown(d, n, how) for d in study.data) for n in sizes.values()}


def stride_counts(sizes: Sequence[int]) -> dict[str, torch.Tensor]:
    """The path count ``[n, n]`` of the strided :func:`pilcro_lib.position.position_net` (its
    skeleton: 2 channels) for each input size ``n``: ``"28 px"`` -> map."""
    return {
        f"{n} px": path_count(position_net(1, 10, n, width=2, downsampling="stride"), (1, n, n))
        for n in sizes
    }


STRIDE_PERIOD = 4  # two stride-2 blocks: the strided network's pattern repeats every 4 px


def path_count_table(counts: Mapping[str, torch.Tensor]) -> StyledTable:
    """Mirror asymmetry (left/right, top/bottom), first / last column and the left/right border
    balance (:func:`pilcro_lib.landscape.border_balance` over :data:`STRIDE_PERIOD` columns:
    0 when only the stride's phase differs) of each path count."""
    frame = pd.DataFrame(
        [
            {
                "input size": label,
                "left/right asymmetry": float(asymmetry(c, -1)),
                "top/bottom asymmetry": float(asymmetry(c, -2)),
                "first / last column": float(c.sum(0)[0] / c.sum(0)[-1]),
                "left/right border balance": float(border_balance(c, -1, STRIDE_PERIOD)),
            }
            for label, c in counts.items()
        ]
    )
    formats = dict.fromkeys(frame.columns[1:], "{:.3f}")
    return table_style(frame, formats, caption="Path count of the strided network")


def period_two_asymmetry(size: int, low: float = 1.0, high: float = 2.0) -> float:
    """The left/right mirror asymmetry of a ``[size, size]`` map whose columns alternate
    ``high, low, high, ...``: a pure stride-2 pattern, with no difference between borders."""
    size = check_positive_int("size", size, minimum=2)
    row = torch.tensor([high if j % 2 == 0 else low for j in range(size)], dtype=torch.float64)
    return float(asymmetry(row.expand(size, size), -1))


def maps_figure(maps: Mapping[str, Any], *, title: str | None = None) -> Figure:
    """Maps ``[H, W]`` side by side (at most three) on one colour scale with one colour bar
    (:data:`pilcro_lib.plotting.LANDSCAPE_UNIT`); axes in pixels."""
    arrays = {k: np.asarray(v, dtype=float) for k, v in maps.items()}
    if not 0 < len(arrays) <= 3:
        raise ValueError(f"maps must hold one to three maps, got {len(arrays)}")
    low = min(a.min() for a in arrays.values())
    high = max(a.max() for a in arrays.values())
    fig, axes = plotting.new_figure(1, len(arrays), width=3.0, height=3.0, layout="constrained")
    for ax, (name, a) in zip(axes[0], arrays.items()):
        image = ax.imshow(a, vmin=low, vmax=high, cmap="viridis", interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(plotting.COLUMN_LABEL, fontsize=9)
        ax.set_ylabel(plotting.ROW_LABEL, fontsize=9)
        ax.tick_params(labelsize=8)
    bar = fig.colorbar(image, ax=list(axes[0]), shrink=0.8)
    bar.set_label(plotting.LANDSCAPE_UNIT, fontsize=9)
    bar.ax.tick_params(labelsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _balance(landscape: torch.Tensor) -> float:
    return float(border_balance(landscape, -1, STRIDE_PERIOD))


def border_balance_table(frame: pd.DataFrame) -> StyledTable:
    """Each arm's mean left/right border balance (:func:`stride_frame`) at initialisation and
    at the end, with its 95% t-interval over the seeds (> 0: the left border used more)."""
    rows = []
    for arm, runs in frame.groupby("arm", sort=False):
        row = {"arm": arm}
        for when in ("init", "final"):
            m = mean_interval(runs[f"left/right border balance ({when})"])
            row[f"{when}: mean"] = f"{m['mean']:.3f}"
            row[f"{when}: 95% CI"] = f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
        rows.append(row)
    caption = "Left/right border balance, log(left band / right band), one period a side"
    return table_style(pd.DataFrame(rows), caption=caption)


def stride_frame(groups: Mapping[str, GatedSeeds]) -> pd.DataFrame:
    """One row per learnt strided run: ``arm``, ``seed``, ``test accuracy``, the landscape's
    mirror asymmetry (left/right at initialisation and at the end, top/bottom at the end), the
    accuracy for items moved towards each border (left - right, up - down) and the left/right
    border balance at initialisation and at the end (:data:`STRIDE_PERIOD` columns a side)."""
    rows = []
    for arm, g in groups.items():
        for seed, m in g.learnt.items():
            init, end = _landscape(m, 0), _landscape(m, len(m["history"]))
            moved = m["shift_acc"]
            rows.append(
                {
                    "arm": arm,
                    "seed": seed,
                    "test accuracy": m["test_acc"],
                    "left/right asymmetry (init)": float(asymmetry(init, -1)),
                    "left/right asymmetry (final)": float(asymmetry(end, -1)),
                    "top/bottom asymmetry (final)": float(asymmetry(end, -2)),
                    "accuracy left - right": moved["left"] - moved["right"],
                    "accuracy up - down": moved["up"] - moved["down"],
                    "left/right border balance (init)": _balance(init),
                    "left/right border balance (final)": _balance(end),
                }
            )
    return pd.DataFrame(rows)


# --- H4: the landscape against the path count ------------------------------------------------


def path_count_correlations(
    groups: Mapping[str, GatedSeeds], count: torch.Tensor
) -> dict[str, dict[int, list[float]]]:
    """Pearson correlation of every recorded landscape (epoch 0 to the last) with ``count``
    ``[H, W]``: arm -> seed -> one value per epoch."""
    return {
        arm: {
            seed: [pearson(count, _landscape(m, e)) for e in range(len(m["history"]) + 1)]
            for seed, m in g.learnt.items()
        }
        for arm, g in groups.items()
    }


def correlation_frame(correlations: Mapping[str, Mapping[int, Sequence[float]]]) -> pd.DataFrame:
    """One row per run: ``arm``, ``seed``, ``correlation (init)`` and ``correlation (final)``."""
    return pd.DataFrame(
        [
            {"arm": arm, "seed": s, "correlation (init)": c[0], "correlation (final)": c[-1]}
            for arm, by_seed in correlations.items()
            for s, c in by_seed.items()
        ]
    )


def correlation_figure(correlations: Mapping[str, Mapping[int, Sequence[float]]]) -> Figure:
    """The correlation with the path count against the epoch: each arm's mean (line and dots)
    and each seed (faint)."""
    fig, axes = plotting.new_figure(width=6.4, height=3.4, layout="constrained")
    ax = axes[0, 0]
    for arm, by_seed in correlations.items():
        c = np.array(list(by_seed.values()))
        line = ax.plot(c.mean(0), marker="o", ms=3, label=f"{arm} (mean)")[0]
        ax.plot(c.T, color=line.get_color(), alpha=0.2, lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("Pearson r with the path count")
    ax.legend(fontsize=8)
    return fig


# --- claims and verdicts ---------------------------------------------------------------------

CLAIMS: dict[str, dict[str, tuple[str, str, str, bool]]] = {
    # claim: (treated arm, control arm, figure, higher is better), stated before the runs
    "H1": {
        "BlurPool: more consistent": ("BlurPool", "plain", "shift consistency", True),
        "BlurPool: more accurate": ("BlurPool", "plain", "test accuracy", True),
        "circular padding: more consistent": (
            "circular padding",
            "plain",
            "shift consistency",
            True,
        ),
        "reflect padding: more consistent": (
            "reflect padding",
            "plain",
            "shift consistency",
            True,
        ),
        "circular + BlurPool: more consistent than BlurPool": (
            "circular + BlurPool",
            "BlurPool",
            "shift consistency",
            True,
        ),
        "P-objective: more consistent": ("P-objective", "plain", "shift consistency", True),
        "P-objective: more accurate": ("P-objective", "plain", "test accuracy", True),
    },
    "H2": {
        **{
            f"{arm}: reads less position (lower accuracy)": (
                arm,
                "zero padding",
                "test accuracy",
                False,
            )
            for arm in (
                "circular padding",
                "full padding",
                "valid padding",
                "reflect padding",
                "P-objective",
            )
        },
        **{
            f"{arm}: learns position faster (steps to 95%)": (
                arm,
                "zero padding",
                "steps to 95%",
                False,
            )
            for arm in ("CoordConv", "LRLC")
        },
    },
    "H3": {
        "even input: more left/right asymmetric at init": (
            "28 px",
            "29 px",
            "left/right asymmetry (init)",
            True,
        ),
        "even input: more left/right asymmetric after training": (
            "28 px",
            "29 px",
            "left/right asymmetry (final)",
            True,
        ),
        "even input: more top/bottom asymmetric after training": (
            "28 px",
            "29 px",
            "top/bottom asymmetry (final)",
            True,
        ),
        "even input: items moved right lose more (left - right)": (
            "28 px",
            "29 px",
            "accuracy left - right",
            True,
        ),
        "even input: items moved down lose more (up - down)": (
            "28 px",
            "29 px",
            "accuracy up - down",
            True,
        ),
    },
    "H4": {
        "plain: training lowers it": ("plain, final", "plain, init", "r", False),
        "P-objective: lowers it more than plain": (
            "P-objective, final",
            "plain, final",
            "r",
            False,
        ),
    },
    "H5": {
        "LRLC + P-objective: flatter than LRLC": (
            "LRLC + P-objective",
            "LRLC",
            "curvature (final)",
            False,
        ),
        "LRLC + P-objective: more accurate than LRLC": (
            "LRLC + P-objective",
            "LRLC",
            "test accuracy",
            True,
        ),
        "LRLC + P-objective: more accurate than P-objective": (
            "LRLC + P-objective",
            "P-objective",
            "test accuracy",
            True,
        ),
        "LRLC: flatter than plain (exploratory)": (
            "LRLC",
            "plain",
            "curvature (final)",
            False,
        ),
    },
}
CAPTIONS = {
    "H1": "H1: shift consistency, each arm against its control",
    "H2": "H2: the quadrant task, each arm against zero padding",
    "H3": "H3: even (28 px) against odd (29 px) input",
    "H4": "H4: correlation with the path count",
    "H5": "H5: the P-objective on an LRLC network",
}


def claim_units(family: str) -> dict[str, str]:
    """Claim -> unit kind of the family's claims (accuracies and consistency in points)."""
    claims = CLAIMS[check_choice("family", family, CLAIMS)]
    return {claim: COLUMN_KINDS.get(entry[2], "value") for claim, entry in claims.items()}


def init_and_final(frame: pd.DataFrame) -> pd.DataFrame:
    """A :func:`correlation_frame` in long form for H4's claims: ``arm`` is ``"plain, init"``,
    ``"plain, final"``, ...; ``r`` the correlation."""
    return pd.concat(
        [
            frame.assign(arm=frame["arm"] + ", " + when, r=frame[f"correlation ({when})"])
            for when in ("init", "final")
        ],
        ignore_index=True,
    )


def claim_values(
    table: pd.DataFrame, claims: Mapping[str, str], *, scale: float = 1.0
) -> dict[str, float]:
    """The numbers of claims of a verdict table, named for the prose's glue: for each
    ``prefix -> claim``, ``{prefix}_treated``, ``_control``, ``_diff``, ``_low``, ``_high`` and
    ``_detectable`` (times ``scale``: 100 for points) and ``{prefix}_p`` (Holm's p)."""
    values = {}
    for prefix, claim in claims.items():
        if claim not in table.index:
            raise ValueError(
                f"claims[{prefix!r}]: no claim {claim!r}; the table has {list(table.index)}"
            )
        row = table.loc[claim]
        for name, column in COLUMNS_GLUED.items():
            values[f"{prefix}_{name}"] = scale * float(row[column])
        values[f"{prefix}_p"] = float(row["p_holm"])
    return values


COLUMNS_GLUED = {
    "treated": "treated",
    "control": "control",
    "diff": "difference",
    "low": "ci_low",
    "high": "ci_high",
    "detectable": "detectable",
}


def verdict_counts(tables: Mapping[str, pd.DataFrame]) -> StyledTable:
    """How many claims of each family (family -> verdict table) got each verdict."""
    frame = pd.DataFrame(
        [
            {
                "hypothesis": family,
                **{v: int((table["verdict"] == v).sum()) for v in VERDICTS},
            }
            for family, table in tables.items()
        ]
    )
    return table_style(frame, caption="Verdicts: claims per hypothesis")


def verdict_metrics(tables: Mapping[str, pd.DataFrame]) -> dict[str, int]:
    """``"H1: claims supported"`` -> count (and contradicted) of each family, for the page's
    headline numbers."""
    return {
        f"{family}: claims {verdict}": int((table["verdict"] == verdict).sum())
        for family, table in tables.items()
        for verdict in ("supported", "contradicted")
    }
