"""Chapter 6's study (pilcro_lib.p_objective_study): the pages' inputs to the run records, the
choices on validation, the gate, the verdicts against an independent computation, the tables
and the figures. Runs are faked (a seeded function of a run's inputs), so nothing trains."""

import io
import math
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats as sps

from pilcro_lib import p_objective_study as pos
from pilcro_lib.landscape import FLATNESS_FIGURES
from pilcro_lib.runs.records import Record

EPOCHS = 3


def fake_metrics(inputs: dict) -> dict:
    """Metrics shaped like run_arm's, drawn from a generator seeded by the run's inputs.
    Validation accuracy peaks at lam = 0.1 and 1.0 (a tie) and is low for the circular arm's
    seed 0 (a seed that fails a gate of 0.5)."""
    arm, seed, lam = inputs["arm"], inputs["seed"], inputs.get("lam", inputs.get("ig_lam", 0))
    key = repr((arm, seed, lam, inputs.get("measure"), inputs["epochs"], inputs["model"]))
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    epochs = inputs["epochs"]
    val = 0.8 - 0.02 * abs(math.log10(lam) + 0.5) if lam else 0.79
    if arm == "circular" and seed == 0:
        val = 0.2
    history = [
        {
            "epoch": e,
            "epoch_time_s": 1.0 + rng.random(),
            "val_acc": val * e / epochs + rng.normal(0, 0.05),
            "train_acc": 0.9,
        }
        for e in range(1, epochs + 1)
    ]
    flat = {
        str(e): {f: float(rng.uniform(0.5, 1.5)) for f in FLATNESS_FIGURES}
        for e in range(epochs + 1)
    }
    test = float(rng.uniform(0.8, 0.9))
    metrics = {
        "history": history,
        "steps_per_epoch": 10,
        "val_acc": val,
        "test_acc": test,
        "corrupt_acc": {name: test * rng.uniform(0.5, 1) for name in inputs["corruptions"]},
        "flatness_by_epoch": flat,
        "flatness": flat[str(epochs)],
        "landscapes": {str(e): rng.uniform(0.5, 1.5, (4, 4)).tolist() for e in range(epochs + 1)},
        "spearman_init_final": float(rng.uniform(-1, 1)),
        "train_time_s": sum(r["epoch_time_s"] for r in history),
    }
    if "position_sets" in inputs:
        metrics["position_acc"] = rng.uniform(0.6, 0.9, len(inputs["position_sets"])).tolist()
    if inputs.get("eval_landscape"):
        metrics["flatness_eval"] = {f: float(rng.uniform(0.5, 1.5)) for f in FLATNESS_FIGURES}
    return metrics


@pytest.fixture
def asked(monkeypatch):
    """Fake cached_run: records every call's inputs (in a list it returns) and answers with
    :func:`fake_metrics`."""
    calls = []

    def cached_run(run_fn, /, *, name, **inputs):
        calls.append({"name": name, "run_fn": run_fn, **inputs})
        provenance = {"wall_time_s": 36.0, "commit": "abc", "dirty": False, "device": "cpu"}
        key = f"{len(calls):04d}"
        return Record(key, name, fake_metrics(inputs), provenance, Path(key), reused=True)

    monkeypatch.setattr(pos, "cached_run", cached_run)
    return calls


def small_study(**overrides):
    parameters = dict(
        epochs=EPOCHS,
        n_seeds=3,
        gate=0.5,
        lam_grid=(0.01, 10.0, 4),
        ig_grid=(0.1, 1.0, 2),
        measure_grid=(0.1, 1.0, 2),
        second_grid=(0.1, 1.0, 2),
        position_epochs=2,
    )
    return pos.Study("smoke", device="cpu", **(parameters | overrides))


def test_bad_parameters_are_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown parameters \['lam'\]"):
        pos.Study("smoke", lam=1)
    with pytest.raises(ValueError, match=r"lam_grid must be \(lowest, highest, steps\)"):
        pos.Study("smoke", lam_grid=(0.1, 1.0))
    with pytest.raises(ValueError, match="n_seeds must be an integer >= 2"):
        pos.Study("smoke", n_seeds=1)
    with pytest.raises(ValueError, match="profile='tiny' is not allowed"):
        pos.Study("tiny")


def test_a_run_is_asked_for_with_the_pages_inputs(asked):
    study = small_study()
    study.train("p_objective", 7, lam=0.3)
    call = asked[-1]
    assert call["name"] == pos.RECORD_NAME == "06_p_objective_experiments"
    assert call["run_fn"].__name__ == "run_arm" and call["seed"] == 7 and call["lam"] == 0.3
    assert call["corruptions"] is pos.CORRUPTIONS and call["epochs"] == EPOCHS
    assert call["model"] == "fast_cnn" and call["width"] == pos.PROFILES["smoke"]["width"]
    assert call["recipe"].lr == pytest.approx(0.2 * 64 / 256) and call["recipe"].batch_size == 64
    assert len(call["train_set"]) == 256 and len(call["val_set"]) == 64
    study.train("plain", 1, corruptions={}, n_epochs=5, net="resnet18", net_width=2)
    call = asked[-1]
    assert call["corruptions"] == {} and call["epochs"] == 5 and call["model"] == "resnet18"
    assert call["width"] == 2 and len(study.records) == 2


def test_stage1_chooses_on_validation_and_a_tie_goes_to_the_weaker_weight(asked):
    stage1 = small_study().stage1
    assert sorted(stage1.ladder) == [1, 3, 6]  # half, once, twice the run length
    assert list(stage1.p_grid) == [0.01, 0.1, 1.0, 10.0]
    assert stage1.lam_p == 0.1  # 0.1 and 1.0 tie in fake_metrics
    assert stage1.lam_ig == 0.1 and stage1.lam_measures == {"gradient": 0.1, "cv": 0.1}
    assert stage1.plateau == pytest.approx(0.79)
    assert stage1.targets == pytest.approx({"90%": 0.711, "95%": 0.7505, "99%": 0.7821})
    assert {c["seed"] for c in asked} == {1000}  # the tuning seed only


def test_weights_are_chosen_on_the_mean_over_tuning_seeds_with_a_strong_weight(asked):
    study = small_study(n_tuning=3, eval_landscape=False)
    stage1 = study.stage1
    assert study.tuning_seeds == [1000, 1001, 1002]
    tuning = [c for c in asked if c["arm"] == "p_objective" and "measure" not in c]
    assert len(tuning) == 4 * 3 and {c["seed"] for c in tuning} == {1000, 1001, 1002}
    assert all("eval_landscape" not in c for c in asked)  # off: the keys stay as they were
    runs = stage1.tuning["p_objective"]
    means = {lam: np.mean([m["val_acc"] for m in ms]) for lam, ms in runs.items()}
    assert stage1.lam_p == max(means, key=means.get) == 0.1  # the tie goes to the weaker
    assert stage1.p_grid == {lam: ms[0] for lam, ms in runs.items()}  # the first seed's
    se = math.sqrt(means[0.1] * (1 - means[0.1]) / len(study.val_set))
    assert study.lam_strong == max(lam for lam, m in means.items() if m >= means[0.1] - se)
    assert study.lam_strong == 10.0  # 64 validation images: a wide standard error
    strong = study.strong
    assert {c["lam"] for c in asked[-3:]} == {10.0} and list(strong.learnt) == [0, 1, 2]
    ladder = study.penalised_ladder
    assert sorted(ladder) == [1, 3, 6] and asked[-1]["lam"] == 0.1 and asked[-1]["seed"] == 1000


def test_the_deployed_landscape_is_asked_for_and_tabled_when_the_profile_says(asked):
    study = small_study()  # the smoke profile measures the deployed network too
    study.train("plain", 0)
    assert asked[-1]["eval_landscape"] is True
    row = pos.run_row("plain", 0, fake_metrics(asked[-1]), {})
    assert row["curvature (final, eval)"] == fake_metrics(asked[-1])["flatness_eval"]["curvature"]
    assert "curvature (final, eval)" not in pos.run_row(
        "plain", 0, fake_metrics({**asked[-1], "eval_landscape": False}), {}
    )


def test_budget_ladder_and_manipulation_check(asked):
    study = small_study(epochs=16, eval_landscape=False)
    ladder = study.budgets
    assert sorted(ladder) == [2, 4, 8, 16] and set(ladder[2]) == {"plain", "p_objective"}
    assert {c["epochs"] for c in asked if c["seed"] < 1000} >= {2, 4, 8, 16}
    table = study.budget_verdicts()
    p, plain = (
        [m["test_acc"] for m in ladder[4][arm].learnt.values()] for arm in ("p_objective", "plain")
    )
    row = table.loc["more accurate after 4 epochs: test accuracy"]
    assert row["p"] == pytest.approx(sps.ttest_ind(p, plain, equal_var=False).pvalue)
    assert len(table) == 4  # Holm over the four budgets
    runs = pd.DataFrame(
        {"arm": ["plain", "plain", "P-objective", "P-objective"], "curvature (final)": [1, 3, 1, 1]}
    )
    check = pos.manipulation_check(runs, "p_objective")
    assert check == {"ratio": 0.5, "passed": True}
    runs["curvature (final)"] = [1.0, 3.0, 1.5, 1.5]  # cut by a quarter only
    assert pos.manipulation_check(runs, "p_objective") == {"ratio": 0.75, "passed": False}
    shown = pos.manipulation_table(runs).frame
    assert shown.iloc[0].tolist() == ["P-objective", "curvature", "0.75", "no"]


def test_a_seed_that_fails_the_gate_is_replaced_by_a_spare(asked):
    study = small_study()
    final = study.final
    assert list(final["circular"].failed) == [0] and list(final["circular"].learnt) == [1, 2, 3]
    assert all(list(g.learnt) == [0, 1, 2] for a, g in final.items() if a != "circular")
    final_arms = set(pos.ARM_NAMES) - {"p_objective_strong"}  # the strong arm runs on demand
    assert set(study.complete) == final_arms and study.shown == list(pos.MAIN_ARMS)
    table, failed = pos.gate_table(final)
    assert failed == ["circular padding seed 0 (did not pass the gate)"]
    assert "20.0" in table.text and "seed 3" in table.text


def test_run_row_reads_speed_accuracy_and_robustness_like_a_hand_count():
    history = [
        {"epoch": e, "epoch_time_s": 2.0, "val_acc": a} for e, a in ((1, 0.5), (2, 0.7), (3, 0.75))
    ]
    flat = {f: 1.0 for f in FLATNESS_FIGURES} | {"border_ratio": 2.0}
    metrics = {
        "history": history,
        "steps_per_epoch": 10,
        "test_acc": 0.8,
        "corrupt_acc": {"blur": 0.6},
        "flatness_by_epoch": {str(e): flat for e in range(4)},
        "spearman_init_final": 0.5,
        "train_time_s": 6.0,
    }
    row = pos.run_row("p_cv", 4, metrics, {"90%": 0.7, "99%": 0.9})
    assert row["arm"] == "P-objective, cv²" and row["seed"] == 4
    assert row["steps to 90%"] == 20 and row["time to 90% (s)"] == 4.0  # reached in epoch 2
    assert row["steps to 99%"] == 40 and row["time to 99% (s)"] == 8.0  # never: one epoch more
    assert row["drop: blur"] == pytest.approx(0.25)
    assert row["border distance (final)"] == pytest.approx(math.log(2.0))
    assert row["max / min (final)"] == 1.0 and row["test accuracy"] == 0.8


def _holm(p: list[float]) -> list[float]:
    """Holm's step-down adjustment, written out."""
    order = np.argsort(p)
    adjusted, running = np.empty(len(p)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def test_verdict_tables_apply_welch_and_holm_over_every_claim_of_a_comparison(asked):
    study = small_study(gate=0.0)
    tables = study.verdict_tables()
    assert list(tables) == [
        "P-objective against plain",
        "P-objective against input-gradient penalty",
        "P-objective against circular padding",
    ]
    table = tables["P-objective against plain"]
    claims = pos.comparison_claims(study.stage1.targets)
    assert list(table.index) == list(claims) and len(claims) == 16
    frame = pd.concat([study.runs, study.position.runs], ignore_index=True)
    p = []
    for column, _ in claims.values():
        a = frame.loc[frame["arm"] == "P-objective", column].dropna()
        b = frame.loc[frame["arm"] == "plain", column].dropna()
        if a.std() or b.std():
            p.append(sps.ttest_ind(a, b, equal_var=False).pvalue)
        else:  # no spread in either arm: certain, either way
            p.append(1.0 if a.mean() == b.mean() else 0.0)
    assert table["p_holm"].tolist() == pytest.approx(_holm(p))
    assert (
        "position: worst-position accuracy"
        not in tables["P-objective against input-gradient penalty"].index
    )  # the input-gradient penalty has no position runs
    flatter = pos.claims_under(table, "flatter")
    assert list(flatter.index) == [c for c in claims if c.startswith("flatter:")]
    assert flatter["p_holm"].equals(table.loc[flatter.index, "p_holm"])
    with pytest.raises(ValueError, match="heads must name"):
        pos.claims_under(table)
    ablation = study.ablation_verdicts()
    assert len(ablation) == 10 and study.second_verdicts().shape[0] == 5
    counts = pos.verdict_counts(tables)
    assert counts.frame["comparison"].tolist() == list(tables)
    assert all(
        sum(int(row[v]) for v in ("supported", "contradicted", "not resolved", "not measured"))
        == len(tables[row["comparison"]])
        for _, row in counts.frame.iterrows()
    )


def test_tables_show_units_and_nothing_cut(asked):
    study = small_study()
    text = pos.per_seed_display(study.runs, ["test accuracy", "steps to 95%"]).text
    assert "test accuracy (points)" in text and "steps to 95% of target" in text
    first = study.runs.loc[study.runs["arm"] == "plain", "test accuracy"].iloc[0]
    assert f"{100 * first:.1f}" in text
    settings = pos.settings_table(study).text
    assert "256 train / 64 validation / 128 test images" in settings and "..." not in settings
    ladder = pos.ladder_display(study.stage1.ladder, EPOCHS, title="plain").text
    assert "training accuracy (points)" in ladder and "90.0" in ladder


def _width(fig) -> int:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return Image.open(buffer).size[0]


def test_figures_fit_the_column_with_one_colour_bar_per_group(asked):
    study = small_study(gate=0.0)
    final, arms = study.final, study.shown
    figures = {
        "landscapes": pos.landscape_figure(final, arms, EPOCHS),
        "curvature": pos.curvature_figure(final, arms, EPOCHS),
        "speed": pos.speed_figure(final, arms, study.stage1.targets),
        "robustness": pos.robustness_figure(study.runs, arms),
        "position": pos.position_heatmap(study.position),
        "ladder": pos.ladder_figure(study.stage1.ladder, "plain"),
    }
    for name, fig in figures.items():
        assert _width(fig) <= 845, name
        assert fig.get_facecolor()[:3] == (1.0, 1.0, 1.0), name
    landscapes = figures["landscapes"]
    assert len(landscapes.axes) == 3 * len(arms) + 1  # three a row, one colour bar
    assert len({im.get_clim() for ax in landscapes.axes[:-1] for im in ax.get_images()}) == 1
    heat = figures["position"]
    assert len(heat.axes) == len(study.position.complete) + 1
    assert {im.get_clim() for ax in heat.axes[:-1] for im in ax.get_images()} == {
        pos.POSITION_SCALE
    }
