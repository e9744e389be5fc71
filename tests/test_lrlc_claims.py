import matplotlib

matplotlib.use("Agg")

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats as sps

from pilcro_lib import lrlc_claims as study
from pilcro_lib.ledger import CH8, LEDGER
from pilcro_lib.protocol import GatedSeeds

MAX_PX = 845  # the widest figure the text column shows at 80% of its size


def record(val_acc=0.8, test_acc=0.8, key="k", **metrics):
    return SimpleNamespace(key=key, metrics={"val_acc": val_acc, "test_acc": test_acc, **metrics})


def group(*tests, failed=()):
    learnt = {s: record(test_acc=t) for s, t in enumerate(tests)}
    return GatedSeeds(learnt=learnt, failed={s: record(val_acc=0.1) for s in failed})


def width_px(fig) -> int:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return Image.open(buffer).width


def test_labels_and_the_order_of_specs():
    assert study.arm_label("lrlc_input", 8) == "input-dependent LRLC K=8"
    assert study.arm_label("conv", 8) == "conv"
    specs = [("translated", "conv", 1), ("real", "lrlc", 8), ("real", "conv", 1)]
    assert study.sort_specs(specs) == [specs[2], specs[1], specs[0]]
    with pytest.raises(ValueError, match="arm"):
        study.arm_label("mlp", 1)


def test_arm_runs_ask_for_train_arm_with_the_chosen_rate(monkeypatch):
    asked = []

    def fake_cached_run(fn, **inputs):
        asked.append(inputs)
        return record(val_acc=0.2 if inputs["seed"] == 1 else 0.9, key=str(len(asked)))

    monkeypatch.setattr(study, "cached_run", fake_cached_run)
    tasks = {"aligned": ("tr", "va", "te")}
    runs = study.ArmRuns(tasks, width=4, normalization=None, batch_size=8, epochs=3)
    with pytest.raises(ValueError, match="peak learning rate"):
        runs("aligned", "conv", 0)
    runs("aligned", "conv", 0, peak_lr=0.1)
    runs.lr = 0.4
    groups = runs.gated([("aligned", "lrlc_input", 8)], [0, 1], gate=0.5, epochs=6)
    first = asked[0]
    assert (first["lr"], first["epochs"], first["examples"], first["train"]) == (0.1, 3, 0, "tr")
    # both seeds asked before either is read; seed 1 fails the gate and the spare 2 replaces it
    assert [a["seed"] for a in asked[1:3]] == [0, 1]
    assert asked[1]["lr"] == 0.4 and asked[1]["epochs"] == 6 and asked[1]["examples"] == 6
    g = groups[("aligned", "lrlc_input", 8)]
    assert list(g.learnt) == [0, 2] and list(g.failed) == [1]
    assert g.reasons[1].startswith("validation accuracy") and g.reasons[1].endswith(
        "below the gate"
    )
    assert all(a["name"] == "08_lrlc_experiments" for a in asked) and len(runs.records) == 6
    with pytest.raises(ValueError, match="task"):
        runs("rotated", "conv", 0)


def test_each_spec_gets_the_rate_its_own_tuning_runs_chose(monkeypatch):
    asked = []
    best = {"conv": 0.4, "lrlc_input": 0.1}  # the rate at which each arm validates best

    def fake_cached_run(fn, **inputs):
        asked.append(inputs)
        val = 0.9 - abs(inputs["lr"] - best[inputs["arm"]]) - 0.001 * (inputs["seed"] % 2)
        spread = 0.0001 if inputs["seed"] == 1 else 0.03  # seed 1's head is dead
        return record(val_acc=val, key=str(len(asked)), across_examples=spread)

    monkeypatch.setattr(study, "cached_run", fake_cached_run)
    runs = study.ArmRuns({"aligned": ("tr", "va", "te")}, 4, None, 8, 3)
    specs = [("aligned", "conv", 1), ("aligned", "lrlc_input", 4)]
    choices = runs.tune_rates(specs, [0.8, 0.1, 0.4, 0.2], [1000, 1001, 1002])
    # every run asked for (to plan it) before any is read, then read: 2 x 2 arms x 4 rates x 3 seeds
    assert len(asked) == 2 * 24 and len({(a["arm"], a["lr"], a["seed"]) for a in asked}) == 24
    assert [a["seed"] for a in asked[:3]] == [1000, 1001, 1002]
    assert runs.lrs == {specs[0]: 0.4, specs[1]: 0.1}
    assert list(choices[specs[0]].table.index) == [0.1, 0.2, 0.4, 0.8]
    table = study.rate_table(choices)
    assert table.loc[("aligned", "conv"), "chosen rate"] == 0.4
    assert table.loc[("aligned", "input-dependent LRLC K=4"), "rate 0.1"] == pytest.approx(
        np.mean([90.0, 89.9, 90.0])
    )
    asked.clear()
    groups = runs.gated(specs, [0, 1], gate=0.5, head_eps=0.005)
    assert {(a["arm"], a["lr"]) for a in asked} == {("conv", 0.4), ("lrlc_input", 0.1)}
    assert list(groups[specs[0]].learnt) == [0, 1]  # the head check is for the head's arm only
    assert list(groups[specs[1]].learnt) == [0, 2] and list(groups[specs[1]].failed) == [1]
    assert groups[specs[1]].reasons == {1: "head inactive: spread 0.0001 below 0.005"}
    text = study.gate_report(groups, n_seeds=2)
    assert "aligned, input-dependent LRLC K=4, seed 1: head inactive: spread 0.0001" in text
    assert study.head_active(record(across_examples=0.005), 0.005)
    assert not study.head_active(record(across_examples=0.0049), 0.005)


def test_each_spec_runs_to_its_plateau_by_the_books_rule(monkeypatch):
    asked = []
    # validation accuracy by (arm, epochs): conv is flat from 4 epochs, LRLC gains 5 points
    # from 4 to 8 and then nothing, LC keeps gaining
    curves = {
        "conv": {4: 0.80, 8: 0.801},
        "lrlc": {4: 0.80, 8: 0.85, 16: 0.851},
        "lc": {4: 0.60, 8: 0.65, 16: 0.70},
    }

    def fake_cached_run(fn, **inputs):
        asked.append((inputs["arm"], inputs["epochs"]))
        val = curves[inputs["arm"]][inputs["epochs"]] + 0.0001 * inputs["seed"]
        return record(val_acc=val, key=str(len(asked)))

    monkeypatch.setattr(study, "cached_run", fake_cached_run)
    runs = study.ArmRuns({"aligned": ("tr", "va", "te")}, 4, None, 8, 4, lr=0.1)
    specs = [("aligned", "conv", 1), ("aligned", "lrlc", 8), ("aligned", "lc", 1)]
    kept, table = runs.to_plateau(specs, [0, 1], gate=0.5, n_val=2000, doublings=2)
    # SE on 2,000 images is about 0.9 points: conv is flat at 4, LRLC at 8, LC never
    assert table["epochs kept"].tolist() == [4, 8, 16]
    assert table["at plateau"].tolist() == [True, True, False]
    assert ("conv", 16) not in asked and ("lrlc", 16) in asked and ("lc", 16) in asked
    assert kept[specs[1]].learnt[0].metrics["val_acc"] == pytest.approx(0.85)
    assert table.loc[("aligned", "LC"), "val. % at 16"] == pytest.approx(70.005)
    assert np.isnan(table.loc[("aligned", "conv"), "val. % at 16"])


def test_seed_tables_and_the_gate_report():
    groups = {("real", "conv", 1): group(0.8, 0.9), ("real", "lc", 1): group(0.7, failed=[5])}
    assert study.accuracies(groups, ("real", "conv", 1)) == pytest.approx({0: 80, 1: 90})
    table = study.seed_table(groups, list(groups))
    assert table.loc[("real", "conv"), "mean"] == pytest.approx(85)
    assert table.loc[("real", "LC"), "n"] == 1
    text = study.gate_report(groups, n_seeds=2)
    assert "real, LC, seed 5: validation accuracy 10.0%" in text
    assert text.endswith("arms short of learnt seeds: LC")
    assert study.gate_report({("real", "conv", 1): group(0.8)}, 1).startswith("every seed")


def test_choose_lengths_keeps_the_better_length_and_the_shorter_on_a_tie():
    def g(*vals):
        return GatedSeeds(learnt={s: record(val_acc=v) for s, v in enumerate(vals)}, failed={})

    a, b = ("aligned", "conv", 1), ("aligned", "lc", 1)
    short = {a: g(0.80, 0.82), b: g(0.85, 0.85)}
    long = {a: g(0.83, 0.83), b: g(0.86, 0.84)}
    chosen, table = study.choose_lengths({24: short, 48: long}, [a, b])
    assert chosen[a] is long[a] and chosen[b] is short[b]
    assert table.loc[("aligned", "conv"), "epochs kept"] == 48
    assert table.loc[("aligned", "LC"), "val. % at 48"] == pytest.approx(85)


def test_the_claims_are_the_ledgers_and_their_verdicts_follow_welch_and_holm():
    claims = study.lrlc_claims(8)
    endpoints = {e.endpoint for e in LEDGER if e.chapter == CH8}
    assert endpoints <= set(claims) and len(claims) == 10
    assert claims["aligned: LRLC beats wide conv"] == (
        ("aligned", "lrlc", 8),
        ("aligned", "wide_conv", 8),
    )
    treated, control, other = [0.84, 0.85, 0.86], [0.80, 0.82, 0.81], [0.845, 0.855, 0.85]
    groups = {
        ("real", "lrlc", 8): group(*treated),
        ("real", "conv", 1): group(*control),
        ("real", "lc", 1): group(*other),
    }
    two = {k: v for k, v in claims.items() if k.startswith("real")}
    table = study.lrlc_verdicts(two, groups)
    assert list(table.columns) == study.VERDICT_COLUMNS
    welch = sps.ttest_ind(np.multiply(treated, 100), np.multiply(control, 100), equal_var=False)
    p_other = sps.ttest_ind(
        np.multiply(treated, 100), np.multiply(other, 100), equal_var=False
    ).pvalue
    first = table.loc["real: LRLC beats conv"]
    assert first["difference"] == pytest.approx(100 * (np.mean(treated) - np.mean(control)))
    assert first["p_holm"] == pytest.approx(min(1, 2 * min(welch.pvalue, p_other)))
    assert first["verdict"] == "supported"
    assert table.loc["real: LRLC beats LC", "verdict"] == "not resolved"
    roles = study.lrlc_verdicts(two, groups, primary=["real: LRLC beats conv"])
    assert roles["role"].tolist() == ["primary", "secondary"]
    assert roles.loc["real: LRLC beats conv", "p_holm"] == pytest.approx(welch.pvalue)  # alone
    after = table.assign(verdict=["supported", "supported"])
    changes = study.verdict_changes(table, after, names=("at 24", "kept"))
    assert changes["changed"].tolist() == [False, True]
    assert list(changes.columns)[:2] == ["difference, at 24", "verdict, at 24"]
    with pytest.raises(ValueError, match="same claims"):
        study.verdict_changes(table, after.iloc[::-1])


def history(key, values):
    return [{"epoch": i + 1, key: v} for i, v in enumerate(values)]


def test_curves_and_ladder():
    runs_ = {s: record(history=history("val_acc", [0.5 + 0.1 * s, 0.7])) for s in range(2)}
    g = GatedSeeds(learnt=runs_, failed={})
    np.testing.assert_allclose(study.mean_curve(g, "val_acc"), [0.55, 0.7])
    specs = [("real", a, 1) for a in ("conv", "lc", "coordconv")]
    fig = study.validation_curves_figure(dict.fromkeys(specs, g), {"real": specs, "again": specs})
    legend = fig.axes[0].get_legend()
    assert len(legend.get_texts()) == 3 and legend.get_texts()[0].get_fontsize() >= 8
    assert width_px(fig) <= MAX_PX
    with pytest.raises(ValueError, match="more than 4"):
        study.validation_curves_figure({}, {"x": [specs[0]] * 5})

    def runs(task, arm, seed, rank, epochs):
        return record(val_acc=epochs / 100 + seed / 1000)

    ladder = study.ladder_runs(runs, [("aligned", "conv", 1)], [12, 24], [0, 1])
    assert ladder.loc[("conv", 24), "seed 1"] == pytest.approx(24.1)
    assert ladder.index.names == ["arm", "epochs"]


def test_entropy_figure_and_swing():
    def lrlc_run(values):
        return record(initial_entropy=1.0, history=history("entropy", values))

    shared = GatedSeeds(learnt={0: lrlc_run([0.99, 0.98, 0.98])}, failed={})
    moving = GatedSeeds(
        learnt={0: lrlc_run([0.6, 0.2, 0.5]), 1: lrlc_run([0.7, 0.7, 0.6])}, failed={}
    )
    assert study.entropy_swing(moving) == pytest.approx(0.4)
    assert study.entropy_swing(GatedSeeds(learnt={0: lrlc_run([0.5])}, failed={})) == 0
    specs = [("aligned", "lrlc", 8), ("translated", "lrlc_input", 8)]
    fig = study.entropy_figure(dict(zip(specs, [shared, moving])), specs)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["combining weights shared by all images", "input-dependent combining weights"]
    assert len(fig.axes[1].get_lines()) == 3  # two seeds and their mean
    assert width_px(fig) <= MAX_PX


def test_maps_of_the_combining_weights_share_one_colour_bar():
    alpha = np.random.default_rng(0).dirichlet(np.ones(8), size=(6, 6))  # [H, W, K]
    fig = study.weight_maps_figure(alpha)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 8 and len(fig.axes) == 9  # eight maps and one colour bar
    assert {im.get_clim() for im in images} == {(alpha.min(), alpha.max())}
    assert width_px(fig) <= MAX_PX
    weights = np.random.default_rng(1).dirichlet(np.ones(4), size=(6, 5, 5))  # [n, H, W, K]
    fig = study.example_weights_figure(np.zeros((6, 7, 7)), weights)
    lows = [ax.images[0] for ax in fig.axes[:12] if ax.images][6:]
    np.testing.assert_allclose(lows[2].get_array(), weights[2].max(-1))
    assert lows[0].get_clim() == (0.25, 1) and width_px(fig) <= MAX_PX


def test_task_figure_spread_and_variation_tables():
    data = SimpleNamespace(
        classes=["a", "b"], labels=torch.tensor([1]), float_images=lambda: torch.zeros(1, 1, 5, 5)
    )
    fig = study.task_examples_figure({"real": (data, None, None), "aligned": (data, None, None)})
    assert fig.axes[0].get_title() == "real: b" and width_px(fig) <= MAX_PX
    g = GatedSeeds(
        learnt={
            0: record(across_examples=0.03, across_positions=0.006, kernel_variation=0.1),
            3: record(across_examples=0.0002, across_positions=0.0, kernel_variation=0.2),
        },
        failed={},
    )
    spread = study.spread_table(g)
    assert spread.loc["across examples", "seed 3"] == 0.0002
    assert spread.loc["across positions", "mean"] == pytest.approx(0.003)
    variation = study.variation_table(
        {("aligned", "lrlc", 8): g, ("aligned", "conv", 1): g},
        [
            ("aligned", "lrlc", 8),
            ("aligned", "conv", 1),
        ],
    )
    assert list(variation.index) == [("aligned", "LRLC K=8")]
    assert variation.loc[("aligned", "LRLC K=8"), "mean"] == pytest.approx(0.15)
