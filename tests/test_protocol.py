import math

import numpy as np
import pytest

from pilcro_lib.protocol import (
    choose_on_validation,
    degenerate_reason,
    gated_seeds,
    ladder_epochs,
    ladder_table,
    log_grid,
    per_seed_table,
    plateau_verdict,
    strongest_within_one_se,
)


def test_log_grid_is_geometric_with_both_ends():
    grid = log_grid(1e-3, 10.0, 5)
    assert grid[0] == pytest.approx(1e-3) and grid[-1] == pytest.approx(10.0)
    assert np.diff(np.log10(grid)) == pytest.approx([1.0] * 4)
    assert log_grid(0.5, 0.5, 1) == [0.5]


@pytest.mark.parametrize(
    "args, match",
    [
        ((0.0, 1.0, 3), "low"),
        ((-1.0, 1.0, 3), "low"),
        ((1.0, 0.5, 3), "high"),
        ((1e-3, 1.0, 0), "steps"),
        ((1e-3, 1.0, 1), "steps=1"),
        ((1e-3, math.nan, 3), "high"),
        (("a", 1.0, 3), "low"),
    ],
)
def test_log_grid_refuses_bad_input(args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        log_grid(*args)


def test_choose_on_validation_takes_the_best_mean_and_shows_the_table():
    choice = choose_on_validation({0.01: [0.80, 0.84], 0.1: [0.86, 0.82], 1.0: [0.70, 0.72]})
    assert choice.best == 0.1  # mean 0.84 beats 0.82
    assert choice.table.loc[0.1, "mean"] == pytest.approx(0.84)
    assert choice.table.loc[0.01, "std"] == pytest.approx(np.std([0.80, 0.84], ddof=1))
    assert choice.table["chosen"].tolist() == [False, True, False]
    assert choose_on_validation({"a": [2.0], "b": [1.0]}, higher_is_better=False).best == "b"


def test_choose_on_validation_ties_go_to_the_first_and_nan_is_left_out():
    assert choose_on_validation({"x": [0.5], "y": [0.5]}).best == "x"
    choice = choose_on_validation({"diverged": [math.nan, math.nan], "ok": [0.6, math.nan]})
    assert choice.best == "ok" and choice.table.loc["ok", "n"] == 1
    assert math.isnan(choice.table.loc["diverged", "mean"])


@pytest.mark.parametrize(
    "scores, match",
    [
        ({}, "non-empty"),
        ([0.1, 0.2], "mapping"),
        ({"a": "0.5"}, r"scores\['a'\]"),
        ({"a": [math.inf]}, "infinite"),
        ({"a": [math.nan]}, "NaN"),
        ({"a": 0.5}, r"scores\['a'\]"),
    ],
)
def test_choose_on_validation_refuses_bad_input(scores, match):
    with pytest.raises((ValueError, TypeError), match=match):
        choose_on_validation(scores)


def test_gated_seeds_replaces_failed_seeds_by_spares_and_reports_them():
    ran = []

    def run(seed):
        ran.append(seed)
        return {"acc": 0.1 if seed in (1, 3) else 0.9}

    result = gated_seeds(run, [0, 1, 2], gate=lambda r: r["acc"] > 0.5)
    assert ran == [0, 1, 2, 3, 4]  # spare 3 failed too, spare 4 learnt; spare 5 never ran
    assert list(result.learnt) == [0, 2, 4] and list(result.failed) == [1, 3]
    assert result.failed[1] == {"acc": 0.1}
    assert result.reasons == {1: "did not pass the gate", 3: "did not pass the gate"}


def test_a_degenerate_run_is_a_failed_seed_with_its_reason_never_an_error():
    def run(seed):
        if seed == 1:  # a dead network: its landscape is all zeros, its accuracy even passes
            return {"acc": 0.9, "degenerate": {"landscape at epoch 2": "all-zero landscape"}}
        return {"acc": 0.9, "degenerate": {}}

    def gate(result):
        return result["acc"] > 0.5

    out = gated_seeds(run, [0, 1], gate=gate)
    assert list(out.learnt) == [0, 2] and list(out.failed) == [1]
    assert out.reasons == {1: "landscape at epoch 2: all-zero landscape"}
    assert degenerate_reason({"degenerate": "non-finite"}) == "non-finite"
    assert degenerate_reason({"diverged": "loss is nan"}) == "diverged: loss is nan"
    assert degenerate_reason(0.5) is None and degenerate_reason({"acc": 1.0}) is None


def test_gated_seeds_stops_when_spares_run_out_and_runs_no_spare_when_all_learn():
    out = gated_seeds(lambda s: s, [0, 1], gate=lambda r: False, spares=[7])
    assert out.learnt == {} and list(out.failed) == [0, 1, 7]
    ran = []
    gated_seeds(lambda s: ran.append(s) or s, [5, 6], gate=lambda r: True)
    assert ran == [5, 6]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(run=None), "run"),
        (dict(gate=0.5), "gate"),
        (dict(seeds=[]), "seeds"),
        (dict(seeds=[1, 1]), "distinct"),
        (dict(seeds=[-1]), r"seeds\[0\]"),
        (dict(spares=[0]), "already run"),
        (dict(gate=lambda r: 1), "True or False"),
    ],
)
def test_gated_seeds_refuses_bad_input(kwargs, match):
    args = dict(run=lambda s: s, seeds=[0], gate=lambda r: False, spares=[1]) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        gated_seeds(args.pop("run"), args.pop("seeds"), **args)


def test_per_seed_table_shows_each_seed_beside_mean_and_std():
    table = per_seed_table({"plain": {0: 0.90, 1: 0.92}, "penalised": {0: 0.91, 2: 0.95}})
    assert list(table.columns) == ["seed 0", "seed 1", "seed 2", "mean", "std", "n"]
    assert math.isnan(table.loc["plain", "seed 2"])
    assert table.loc["penalised", "mean"] == pytest.approx(0.93)
    assert table.loc["plain", "std"] == pytest.approx(np.std([0.90, 0.92], ddof=1))
    assert table.loc["plain", "n"] == 2
    assert per_seed_table({"a": {0: 0.123456}}, digits=2).loc["a", "seed 0"] == 0.12


@pytest.mark.parametrize(
    "values, match",
    [
        ({}, "non-empty"),
        ({"a": [0.5]}, r"values\['a'\]"),
        ({"a": {0: "x"}}, r"values\['a'\]"),
    ],
)
def test_per_seed_table_refuses_bad_input(values, match):
    with pytest.raises((ValueError, TypeError), match=match):
        per_seed_table(values)


@pytest.mark.parametrize(("epochs", "rungs"), [(16, [8, 16, 32]), (5, [2, 5, 10]), (1, [1, 2])])
def test_ladder_epochs_are_half_once_and_twice(epochs, rungs):
    assert ladder_epochs(epochs) == rungs


def test_ladder_table_gives_each_length_its_gain_over_the_shorter_one():
    table = ladder_table({32: 0.886, 8: 0.877, 16: 0.8885}, steps_per_epoch=188)
    assert table.index.tolist() == [8, 16, 32] and table.index.name == "epochs"
    assert table["steps"].tolist() == [1504, 3008, 6016]
    assert table["validation accuracy"].tolist() == [0.877, 0.8885, 0.886]
    assert math.isnan(table["gain"].iloc[0])
    assert table["gain"].iloc[1:].tolist() == pytest.approx([0.8885 - 0.877, 0.886 - 0.8885])
    assert "steps" not in ladder_table({4: 0.5})


def test_plateau_verdict_compares_the_doubling_gain_with_one_standard_error():
    # accuracy 0.9 on 900 images: standard error sqrt(0.9 * 0.1 / 900) = 0.01 exactly
    table = ladder_table({8: 0.85, 16: 0.9, 32: 0.9099})
    flat, sentence = plateau_verdict(table, 16, 900)
    assert flat and "+0.99%" in sentence and "1.00%" in sentence and "is at the plateau" in sentence
    flat, sentence = plateau_verdict(ladder_table({8: 0.85, 16: 0.9, 32: 0.9101}), 16, 900)
    assert not flat and "is NOT at the plateau" in sentence
    assert plateau_verdict(ladder_table({8: 0.85, 16: 0.9, 32: 0.88}), 16, 900)[0]  # a loss is flat


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ladder_epochs(0), r"epochs must be an integer >= 1, got 0"),
        (lambda: ladder_table({}), r"accuracies must be a non-empty mapping"),
        (lambda: ladder_table({0: 0.5}), r"accuracies \(epochs\) must be an integer >= 1, got 0"),
        (lambda: ladder_table({4: "high"}), r"accuracies must be a sequence of numbers"),
        (
            lambda: ladder_table({4: 0.5}, steps_per_epoch=0),
            r"steps_per_epoch must be an integer >= 1, got 0",
        ),
        (
            lambda: plateau_verdict(ladder_table({4: 0.5, 8: 0.6}), 8, 100),
            r"table has no run of 16 epochs",
        ),
        (
            lambda: plateau_verdict(ladder_table({4: 0.5, 8: 0.6}), 4, 0),
            r"n_val must be an integer >= 1, got 0",
        ),
    ],
)
def test_ladders_refuse_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_log_grid_is_the_same_on_every_machine(monkeypatch):
    """A last-bit difference of np.geomspace between CPUs must not change the grid (run keys)."""
    import numpy as np

    assert log_grid(0.003, 3.0, 4) == [0.003, 0.03, 0.3, 3.0]
    geomspace = np.geomspace
    monkeypatch.setattr(np, "geomspace", lambda *a: np.nextafter(geomspace(*a), np.inf))
    assert log_grid(0.003, 3.0, 4) == [0.003, 0.03, 0.3, 3.0]


def test_strongest_within_one_se_takes_the_largest_weight_close_to_the_best():
    # n_val 2,000 at 0.894: one standard error is sqrt(0.894 * 0.106 / 2000) = 0.00688
    scores = {0.003: [0.887], 0.03: [0.894], 0.3: [0.8875], 3.0: [0.862]}
    choice = choose_on_validation(scores)
    assert choice.best == 0.03
    assert strongest_within_one_se(choice, 2000) == 0.3  # 0.8875 >= 0.894 - 0.00688
    assert strongest_within_one_se(choice, 100_000) == 0.03  # a tiny SE: only the best
    assert strongest_within_one_se(choose_on_validation({1: [0.5], 2: [float("nan")]}), 10) == 1
    with pytest.raises(ValueError, match="not an accuracy"):
        strongest_within_one_se(choose_on_validation({1: [3.0]}), 10)
