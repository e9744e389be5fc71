"""The experiment protocol shared by the chapters: choices on validation, seeds behind a gate.

Every experiment chapter chooses what it tunes (a penalty weight, a rank, a run length) on the
validation split with :func:`choose_on_validation`, over a grid such as :func:`log_grid`; then
trains its final runs with :func:`gated_seeds`, which keeps the seeds that pass a "did it learn"
gate stated in advance and replaces (and reports) those that do not; :func:`per_seed_table`
shows every seed's value beside the mean. The statistics are in :mod:`pilcro_lib.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from pilcro_lib.utils import check_bool, check_number, check_positive_int

GRID_DIGITS = 12  # significant digits of a log_grid value: the same on every machine


def log_grid(low: float, high: float, steps: int) -> list[float]:
    """``steps`` values from ``low`` to ``high`` (both included), evenly spaced in log scale and
    rounded to :data:`GRID_DIGITS` significant digits (``log_grid(0.003, 3, 4)`` is
    ``[0.003, 0.03, 0.3, 3.0]`` on every machine)."""
    low = check_number("low", low, minimum=0, strict=True)
    high = check_number("high", high, minimum=low)
    steps = check_positive_int("steps", steps)
    if steps == 1:
        if high != low:
            raise ValueError(f"steps=1 needs low == high, got low={low!r}, high={high!r}")
        return [low]
    # rounded to 12 significant digits: np.geomspace's last bit depends on the CPU (0.03 comes
    # out as 0.03000000000000001 on one machine and 0.030000000000000013 on another), and a
    # value that differs in its last bit is another run key
    return [float(f"{v:.{GRID_DIGITS}g}") for v in np.geomspace(low, high, steps)]


@dataclass(frozen=True)
class Choice:
    """What :func:`choose_on_validation` chose: ``best`` and the ``table`` it chose from
    (one row per candidate: ``mean``, ``std``, ``n`` and ``chosen``)."""

    best: Hashable
    table: Any  # pandas.DataFrame


def _scores(name: str, values: Any) -> np.ndarray:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of numbers (one per seed), got {values!r}")
    try:
        array = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a sequence of numbers (one per seed), got {values!r}"
        ) from None
    if np.isinf(array).any():
        raise ValueError(f"{name} holds an infinite value: {array.tolist()}")
    return array


def choose_on_validation(
    scores: Mapping[Hashable, Sequence[float]], *, higher_is_better: bool = True
) -> Choice:
    """The candidate with the best mean validation score (ties: the first in ``scores``' order).

    ``scores`` maps each candidate (e.g. a penalty weight) to its per-seed validation scores;
    NaN values (a run that diverged) are left out of the mean, and a candidate with none left
    cannot be chosen.
    """
    import pandas as pd

    check_bool("higher_is_better", higher_is_better)
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError(
            f"scores must be a non-empty mapping of candidate -> per-seed scores, got {scores!r}"
        )
    rows = {}
    for candidate, values in scores.items():
        array = _scores(f"scores[{candidate!r}]", values)
        kept = array[~np.isnan(array)]
        rows[candidate] = {
            "mean": kept.mean() if len(kept) else math.nan,
            "std": kept.std(ddof=1) if len(kept) > 1 else math.nan,
            "n": len(kept),
        }
    means = {c: r["mean"] for c, r in rows.items() if not math.isnan(r["mean"])}
    if not means:
        raise ValueError("scores: every candidate's scores are NaN: nothing to choose from")
    sign = 1.0 if higher_is_better else -1.0
    best = max(means, key=lambda c: sign * means[c])  # max keeps the first of equal keys
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["chosen"] = [c == best for c in rows]
    return Choice(best=best, table=table)


def strongest_within_one_se(choice: Choice, n_val: int) -> Hashable:
    """The pre-stated "strong" arm: the largest candidate (e.g. penalty weight) whose mean
    validation accuracy is within one standard error of the best's, the standard error being that
    of the best's accuracy ``a`` on ``n_val`` validation images, ``sqrt(a (1 - a) / n_val)`` (as in
    :func:`plateau_verdict`). ``choice``: :func:`choose_on_validation` of accuracies (higher is
    better) over orderable candidates."""
    n_val = check_positive_int("n_val", n_val)
    table = choice.table
    best = float(table.loc[choice.best, "mean"])
    if not 0 <= best <= 1:
        raise ValueError(f"choice: the best mean {best} is not an accuracy in [0, 1]")
    standard_error = math.sqrt(best * (1 - best) / n_val)
    close = [c for c, mean in table["mean"].items() if mean >= best - standard_error]
    return max(close)


GATE_MISSED = "did not pass the gate"  # the reason of a failed seed that is not degenerate


@dataclass(frozen=True)
class GatedSeeds:
    """The results of :func:`gated_seeds`: ``learnt`` (seed -> result, passed the gate),
    ``failed`` (seed -> result, did not: reported, never averaged in) and ``reasons`` (failed
    seed -> why, in words)."""

    learnt: dict[int, Any]
    failed: dict[int, Any]
    reasons: dict[int, str] = field(default_factory=dict)


def degenerate_reason(result: Any) -> str | None:
    """Why a run's result is degenerate, from the ``diverged`` or ``degenerate`` entry a run
    function records (e.g. :func:`pilcro_lib.experiments.run_arm`: fit's message, or which
    landscape cannot be measured and why), else ``None``."""
    if not isinstance(result, Mapping):
        return None
    if result.get("diverged"):
        return f"diverged: {result['diverged']}"
    found = result.get("degenerate")
    if not found:
        return None
    if isinstance(found, Mapping):
        return "; ".join(f"{what}: {why}" for what, why in found.items())
    return str(found)


def gated_seeds(
    run: Callable[[int], Any],
    seeds: Sequence[int],
    *,
    gate: Callable[[Any], bool],
    spares: Iterable[int] | None = None,
) -> GatedSeeds:
    """Run ``run(seed)`` for each seed; a result that fails ``gate``, or is degenerate
    (:func:`degenerate_reason`: a network whose landscape cannot be measured is a failed seed, not
    an error), is kept in ``failed`` with its reason and its place is taken by the next spare seed,
    until ``len(seeds)`` seeds have learnt or the spares run out. ``spares`` defaults to the
    ``len(seeds)`` integers after ``max(seeds)``.
    """
    if not callable(run):
        raise TypeError(f"run must be a function of the seed, got {run!r}")
    if not callable(gate):
        raise TypeError(
            f"gate must be a function of a run's result returning True/False, got {gate!r}"
        )
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"seeds must be a non-empty sequence of seeds, got {seeds!r}")
    seeds = [check_positive_int(f"seeds[{i}]", s, minimum=0) for i, s in enumerate(seeds)]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds!r}")
    if spares is None:
        spares = range(max(seeds) + 1, max(seeds) + 1 + len(seeds))
    spare_seeds = iter([check_positive_int("spares", s, minimum=0) for s in spares])
    out = GatedSeeds(learnt={}, failed={})
    for seed in chain(seeds, spare_seeds):  # lazily: a spare runs only when one is needed
        if len(out.learnt) == len(seeds):
            break
        if seed in out.learnt or seed in out.failed:
            raise ValueError(f"spares: seed {seed} was already run")
        result = run(seed)
        degenerate = degenerate_reason(result)
        passed = gate(result) if degenerate is None else False
        if not isinstance(passed, (bool, np.bool_)):
            raise TypeError(f"gate must return True or False, got {passed!r} for seed {seed}")
        if passed:
            out.learnt[seed] = result
        else:
            out.failed[seed] = result
            out.reasons[seed] = degenerate or GATE_MISSED
    return out


def per_seed_table(values: Mapping[Hashable, Mapping[int, float]], *, digits: int | None = None):
    """One row per arm: every seed's value (``seed 0``, ``seed 1``, ...; empty where the arm has
    no such seed), then ``mean``, ``std`` (n - 1) and ``n``; rounded to ``digits`` if given."""
    import pandas as pd

    if not isinstance(values, Mapping) or not values:
        raise ValueError(
            f"values must be a non-empty mapping of arm -> {{seed: value}}, got {values!r}"
        )
    for arm, by_seed in values.items():
        if not isinstance(by_seed, Mapping):
            raise TypeError(f"values[{arm!r}] must map seed -> value, got {by_seed!r}")
        _scores(f"values[{arm!r}]", by_seed.values())
    seeds = sorted({s for by_seed in values.values() for s in by_seed})
    table = pd.DataFrame(
        [[float(values[a].get(s, math.nan)) for s in seeds] for a in values],
        index=list(values),
        columns=[f"seed {s}" for s in seeds],
    )
    cells = table.to_numpy()
    table["mean"] = np.nanmean(cells, axis=1)
    table["std"] = [
        np.nanstd(row, ddof=1) if np.count_nonzero(~np.isnan(row)) > 1 else math.nan
        for row in cells
    ]
    table["n"] = np.count_nonzero(~np.isnan(cells), axis=1)
    if digits is not None:
        table = table.round(check_positive_int("digits", digits, minimum=0))
    return table


def ladder_epochs(epochs: int) -> list[int]:
    """The run lengths of a run-length ladder around ``epochs``: half (at least 1), once and twice.

    Each length is a run of its own, its schedule ending at its last epoch; when twice as long
    gains less than the validation split's noise, ``epochs`` is at the plateau.
    """
    epochs = check_positive_int("epochs", epochs)
    return sorted({max(1, epochs // 2), epochs, 2 * epochs})


def ladder_table(accuracies: Mapping[int, float], *, steps_per_epoch: int | None = None):
    """A run-length ladder, one row per length (index ``epochs``, increasing): its final
    validation accuracy and the ``gain`` over the next shorter length (NaN for the shortest);
    with ``steps_per_epoch``, also the ``steps`` of each run."""
    import pandas as pd

    if not isinstance(accuracies, Mapping) or not accuracies:
        raise ValueError(
            f"accuracies must be a non-empty mapping of epochs -> accuracy, got {accuracies!r}"
        )
    lengths = sorted(check_positive_int("accuracies (epochs)", e) for e in accuracies)
    values = _scores("accuracies", [accuracies[e] for e in lengths])
    table = pd.DataFrame({"validation accuracy": values}, index=pd.Index(lengths, name="epochs"))
    table["gain"] = table["validation accuracy"].diff()
    if steps_per_epoch is not None:
        steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
        table.insert(0, "steps", [e * steps_per_epoch for e in lengths])
    return table


def plateau_verdict(table: Any, epochs: int, n_val: int) -> tuple[bool, str]:
    """Whether ``epochs`` is at its plateau in a :func:`ladder_table`, and a sentence that says why.

    At the plateau: the run twice as long gains less than one standard error of the ``epochs``
    run's validation accuracy, ``sqrt(a (1 - a) / n_val)`` for accuracy ``a`` on ``n_val`` images.
    """
    epochs = check_positive_int("epochs", epochs)
    n_val = check_positive_int("n_val", n_val)
    for length in (epochs, 2 * epochs):
        if length not in table.index:
            raise ValueError(
                f"table has no run of {length} epochs (it has {table.index.tolist()}): "
                "a ladder around epochs holds epochs and 2 * epochs"
            )
    accuracy = float(table.loc[epochs, "validation accuracy"])
    standard_error = math.sqrt(accuracy * (1 - accuracy) / n_val)
    gain = float(table.loc[2 * epochs, "validation accuracy"]) - accuracy
    flat = gain < standard_error
    return flat, (
        f"{epochs} -> {2 * epochs} epochs: {gain:+.2%} validation accuracy, against a standard "
        f"error of {standard_error:.2%} ({n_val} images): {epochs} epochs "
        + ("is at the plateau" if flat else "is NOT at the plateau")
    )
