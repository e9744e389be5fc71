"""The shared machinery of Part IV's pages: parameters, the run wrapper, the tables, figures and
claims, each checked against a computation of its own."""

import io
import math
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pilcro_lib import position_study as ps
from pilcro_lib.data import ImageDataset
from pilcro_lib.protocol import GatedSeeds


def _history(accuracies):
    return [{"epoch": e, "val_acc": a, "epoch_time_s": 1.0} for e, a in enumerate(accuracies, 1)]


def test_configure_fills_defaults_and_checks_each_parameter():
    s = ps.configure("book", seed=3, n_seeds=None, epochs=4, lam_grid=(0.01, 1.0, 3))
    assert (s.n_seeds, s.epochs, s.n_train, s.dataset) == (5, 4, 12000, "fashion_mnist")
    assert s.seeds == [3, 4, 5, 6, 7] and s.spares == [8, 9] and s.tuning_seed == 1003
    np.testing.assert_allclose(s.lam_grid, np.geomspace(0.01, 1.0, 3))
    assert s.recipe.lr == pytest.approx(0.2 * 64 / 256) and s.recipe.batch_size == 64
    assert ps.configure("paper").n_train is None and ps.configure("smoke").seed == 0
    with pytest.raises(ValueError, match="n_seeds"):
        ps.configure("book", n_seeds=1)
    with pytest.raises(ValueError, match="dataset"):
        ps.configure("book", dataset="imagenet")
    with pytest.raises(ValueError, match="lam_grid must be"):
        ps.configure("book", lam_grid=(0.1, 1.0))
    with pytest.raises(ValueError, match="gate"):
        ps.configure("book", gate=1.5)
    with pytest.raises(ValueError, match="unknown parameters \\['epoch'\\]"):
        ps.configure("book", epoch=3)
    with pytest.raises(ValueError, match="profile"):
        ps.configure("huge")


def test_every_profile_sets_every_parameter():
    for profile, defaults in ps.DEFAULTS.items():
        missing = [p for p in ps.PARAMETERS if p != "seed" and p not in defaults]
        assert not missing, (profile, missing)


@pytest.fixture
def study(monkeypatch):
    """A smoke-profile study whose runs are faked: val_acc 0.2 for seed 1, else 0.9."""
    calls = []

    def fake_cached_run(run_fn, /, *, name, **inputs):
        calls.append({"name": name, **inputs})
        key = f"{inputs['seed']}-{inputs['epochs']}-{sorted(k for k in inputs)}"
        metrics = {"val_acc": 0.2 if inputs["seed"] == 1 else 0.9, "steps_per_epoch": 4}
        return SimpleNamespace(key=key, metrics=metrics)

    monkeypatch.setattr(ps, "cached_run", fake_cached_run)
    study = ps.PositionStudy(ps.configure("smoke", gate=0.5), device="cpu")
    study.calls = calls
    return study


def test_train_asks_for_the_chapters_record_with_the_settings(study):
    s = study.settings
    study.train(7, lam=0.5)
    call = study.calls[-1]
    assert call["name"] == ps.RECORD_NAME == "09_where_position_hides"
    assert call["epochs"] == s.epochs and call["seed"] == 7 and call["lam"] == 0.5
    assert call["train_set"] is study.train_set and call["test_set"] is study.test_set
    assert call["width"] == s.width and call["recipe"].lr == s.recipe.lr
    data = tuple(d.subset(torch.arange(4)) for d in study.data)
    study.train(7, data=data, n_epochs=9)
    assert study.calls[-1]["val_set"] is data[1] and study.calls[-1]["epochs"] == 9
    assert study.mark() == 2 and len(study.train_set) + len(study.val_set) == 256 + 64


def test_gated_asks_every_final_run_first_and_replaces_a_failed_seed(study):
    groups = study.gated({"a": {}, "b": {"lam": 1.0}}, border_shift=2)
    seeds = [c["seed"] for c in study.calls]
    assert seeds[:4] == [0, 1, 0, 1]  # every final run before any is read
    for g in groups.values():
        assert list(g.learnt) == [0, 2] and list(g.failed) == [1]  # seed 1 failed: spare 2
    assert all(c["border_shift"] == 2 for c in study.calls)
    table = ps.gate_table(groups, 0.5)
    reason = "(did not pass the gate)"
    assert f"a seed 1 {reason}, b seed 1 {reason}" in table.html and "20.0" in table.html


def test_choices_take_the_best_validation_accuracy_and_the_smaller_of_a_tie(monkeypatch, study):
    scores = {0.1: 0.8, 1.0: 0.8, 2: 0.7, 4: 0.9}

    def fake(run_fn, /, *, name, **inputs):
        value = inputs.get("rank", inputs.get("lam"))
        return SimpleNamespace(key=str(inputs), metrics={"val_acc": scores[value]})

    monkeypatch.setattr(ps, "cached_run", fake)
    choices = study.choices()
    assert (choices.lam, choices.rank) == (0.1, 4)
    assert "yes" in ps.choice_table(choices.rank_table, "LRLC rank").html


def test_choices_average_over_the_tuning_seeds(monkeypatch):
    asked = []

    def fake(run_fn, /, *, name, **inputs):
        asked.append(inputs)
        seed, value = inputs["seed"], inputs.get("rank", inputs.get("lam"))
        # 0.1 wins on seed 1000 alone, 1.0 on the mean over three seeds
        val = {0.1: [0.9, 0.5, 0.5], 1.0: [0.8, 0.8, 0.8]}.get(value, [0.7] * 3)[seed - 1000]
        return SimpleNamespace(key=str(len(asked)), metrics={"val_acc": val})

    monkeypatch.setattr(ps, "cached_run", fake)
    settings = ps.configure("smoke", n_tuning=3)
    assert settings.tuning_seeds == [1000, 1001, 1002] and settings.tuning_seed == 1000
    choices = ps.PositionStudy(settings, device="cpu").choices()
    assert choices.lam == 1.0 and choices.lam_table.loc[0.1, "n"] == 3
    assert {a["seed"] for a in asked} == {1000, 1001, 1002}
    assert "mean of 3 tuning seeds" in ps.choice_table(choices.lam_table, "λ").html
    one = ps.PositionStudy(ps.configure("smoke"), device="cpu").choices()
    assert one.lam == 0.1  # one tuning seed, as the book's stored runs were chosen
    with pytest.raises(ValueError, match="n_tuning must be an integer >= 1"):
        ps.configure("smoke", n_tuning=0)


def test_every_arm_gets_its_rate_from_one_grid_on_the_same_tuning_seeds(monkeypatch):
    asked = []
    best = {"plain": 0.1, "blur": 0.4}  # the rate each arm validates best at

    def fake(run_fn, /, *, name, **inputs):
        asked.append(inputs)
        arm = "blur" if inputs.get("downsampling") == "blur" else "plain"
        val = 0.9 - abs(inputs["recipe"].lr - best[arm]) - 0.001 * (inputs["seed"] % 2)
        return SimpleNamespace(key=str(len(asked)), metrics={"val_acc": val})

    monkeypatch.setattr(ps, "cached_run", fake)
    settings = ps.configure("smoke", n_tuning=2, lr_grid=[0.4, 0.1, 0.2])
    assert settings.lr_grid == (0.1, 0.2, 0.4)
    study = ps.PositionStudy(settings, device="cpu")
    arms = {"plain": {}, "blur": {"downsampling": "blur"}}
    choices = study.tune_rates(arms)
    assert len(asked) == 2 * 3 * 2 and {a["seed"] for a in asked} == {1000, 1001}
    assert study.rates == {"plain": 0.1, "blur": 0.4}
    assert list(choices["blur"].table.index) == [0.1, 0.2, 0.4]
    asked.clear()
    study.gated(arms)
    assert {(a.get("downsampling"), a["recipe"].lr) for a in asked} == {(None, 0.1), ("blur", 0.4)}
    untuned = ps.PositionStudy(ps.configure("smoke"), device="cpu")
    with pytest.raises(ValueError, match="tune_rates needs the settings' lr_grid"):
        untuned.tune_rates(arms)
    asked.clear()
    untuned.train(0)  # no lr: the recipe's own rate, as the stored runs were keyed
    assert asked[0]["recipe"].lr == ps.configure("smoke").recipe.lr
    with pytest.raises(ValueError, match="lr_grid must be a list of peak learning rates"):
        ps.configure("smoke", lr_grid="0.1")
    assert "eval_landscape" not in asked[0]  # off in the smoke and book profiles
    asked.clear()
    ps.PositionStudy(ps.configure("smoke", eval_landscape=True), device="cpu").train(0)
    assert asked[0]["eval_landscape"] is True


def test_quadrant_frame_counts_steps_to_the_first_epoch_at_95():
    runs = {
        "zero padding": {
            0: {"history": _history([0.5, 0.96, 0.2]), "steps_per_epoch": 16, "test_acc": 1.0},
            1: {"history": _history([0.5, 0.6, 0.7]), "steps_per_epoch": 16, "test_acc": 0.7},
        }
    }
    frame = ps.quadrant_frame(runs)
    assert frame["steps to 95%"].tolist() == [32, 64]  # never: one epoch after the end
    assert frame["test accuracy"].tolist() == [1.0, 0.7]


def test_collapse_frame_finds_the_lowest_point_after_the_first_95():
    runs = {
        "P-objective": {
            0: {"history": _history([0.5, 0.97, 0.3, 0.96, 0.8, 1.0, 1.0])},
            1: {"history": _history([0.5, 0.6])},  # never reaches 95%: no row
            2: {"history": _history([0.99])},  # reaches it at the last epoch: nothing after
        }
    }
    frame = ps.collapse_frame(runs).set_index("seed")
    assert frame.index.tolist() == [0, 2]
    row = frame.loc[0]
    assert row["first epoch at 95%"] == 2 and row["lowest after first 95%"] == 0.3
    assert row["epoch of the lowest"] == 3 and row["back for good"] == 6
    assert math.isnan(frame.loc[2, "lowest after first 95%"]) and frame.loc[2, "back for good"] == 1


def test_grown_adds_black_rows_and_columns_at_the_bottom_and_right():
    images = torch.rand(3, 1, 4, 4)
    data = ImageDataset(images, torch.tensor([0, 1, 0]), ["a", "b"], "toy")
    big = ps.grown(data, 6)
    assert big.image_shape == (1, 6, 6) and big.name == "toy_6px"
    torch.testing.assert_close(big.float_images()[:, :, :4, :4], images)
    assert big.float_images()[:, :, 4:, :].abs().sum() == 0
    assert big.float_images()[:, :, :, 4:].abs().sum() == 0
    with pytest.raises(ValueError, match="smaller"):
        ps.grown(data, 3)
    assert ps.stride_sizes(28) == {"even": 28, "odd": 29} and ps.stride_sizes(29)["even"] == 30


def test_resampled_inputs_stay_mirror_symmetric():
    images = torch.rand(3, 1, 28, 28)
    data = ImageDataset(images, torch.tensor([0, 1, 0]), ["a", "b"], "toy")
    flipped = ImageDataset(images.flip(-1), data.labels, data.classes, "toy")
    odd, odd_flipped = ps.grown(data, 29, "resample"), ps.grown(flipped, 29, "resample")
    assert odd.image_shape == (1, 29, 29) and odd.name == "toy_29px_resampled"
    # resampling commutes with mirroring: no side of the 29-px image is favoured
    torch.testing.assert_close(odd_flipped.float_images(), odd.float_images().flip(-1))
    corners = odd.float_images()[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    torch.testing.assert_close(corners, images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]])
    torch.testing.assert_close(ps.grown(data, 28, "resample").float_images(), images)
    with pytest.raises(ValueError, match="how='crop' is not allowed"):
        ps.grown(data, 29, "crop")


def test_a_pure_period_two_pattern_is_mirror_asymmetric_only_on_an_even_width():
    for low, high in ((1.0, 2.0), (1.0, 5.0)):
        assert ps.period_two_asymmetry(28, low, high) == pytest.approx(
            2 * (high - low) / (high + low)
        )
        assert ps.period_two_asymmetry(29, low, high) == 0


def test_the_strided_path_count_is_symmetric_on_odd_inputs_only():
    counts = ps.stride_counts([12, 13])
    odd, even = counts["13 px"], counts["12 px"]
    torch.testing.assert_close(odd, odd.flip(-1)) and torch.testing.assert_close(odd, odd.T)
    assert not torch.equal(even, even.flip(-1))
    assert "0.000" in ps.path_count_table(counts).html


def _gated(landscapes, **extra):
    m = {"history": [{}] * (len(landscapes) - 1), "test_acc": 0.9, "consistency": 0.8, **extra}
    m["landscapes"] = {str(e): lam.tolist() for e, lam in enumerate(landscapes)}
    return GatedSeeds(learnt={0: m}, failed={})


def test_classification_frame_measures_the_first_and_last_landscapes():
    flat = torch.ones(8, 8)
    bumpy = torch.rand(8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    frame = ps.classification_frame({"plain": _gated([flat, bumpy, bumpy * 2])})
    row = frame.iloc[0]
    assert row["curvature (init)"] == 0 and row["shift consistency"] == 0.8
    normalised = (bumpy / bumpy.mean()).double().numpy()
    assert row["cv (final)"] == pytest.approx(normalised.std())


def test_stride_frame_reads_the_moved_accuracies_and_asymmetries():
    lam = torch.tensor([1.0] * 4 + [3.0] * 4).expand(8, 8)  # the right half three times
    moved = {"left": 0.9, "right": 0.8, "up": 0.7, "down": 0.75}
    row = ps.stride_frame({"28 px": _gated([lam, lam], shift_acc=moved)}).iloc[0]
    assert row["accuracy left - right"] == pytest.approx(0.1)
    assert row["accuracy up - down"] == pytest.approx(-0.05)
    # |1 - 3| at each of the 64 pixels, over a total of 128
    assert row["left/right asymmetry (final)"] == pytest.approx(128 / 128)
    assert row["top/bottom asymmetry (final)"] == 0
    # one period (4 columns) a side: log(1 / 3), the left border used less
    assert row["left/right border balance (final)"] == pytest.approx(-math.log(3))
    shown = ps.border_balance_table(ps.stride_frame({"28 px": _gated([lam, lam], shift_acc=moved)}))
    assert "-1.099" in shown.html and "[nan, nan]" in shown.html  # one seed: no interval


def test_path_count_correlations_are_pearson_r_per_epoch():
    g = torch.Generator().manual_seed(1)
    count = torch.rand(6, 6, generator=g)
    maps = [torch.rand(6, 6, generator=g) for _ in range(3)]
    corr = ps.path_count_correlations({"plain": _gated(maps)}, count)
    expected = [np.corrcoef(count.flatten(), m.flatten())[0, 1] for m in maps]
    np.testing.assert_allclose(corr["plain"][0], expected, rtol=1e-6)
    frame = ps.correlation_frame(corr)
    long = ps.init_and_final(frame)
    assert long["arm"].tolist() == ["plain, init", "plain, final"]
    np.testing.assert_allclose(long["r"], [expected[0], expected[-1]], rtol=1e-6)


def test_seed_table_reads_accuracies_in_points_and_steps_whole():
    frame = pd.DataFrame(
        {
            "arm": ["a", "a", "b", "b"],
            "seed": [0, 1, 0, 1],
            "test accuracy": [0.8951, 0.8949, 0.5, 0.7],
            "steps to 95%": [48.0, 32.0, 64.0, 64.0],
        }
    )
    table = ps.seed_table(frame, ["test accuracy", "steps to 95%"]).frame
    row = table[(table["figure"] == "test accuracy (points)") & (table["arm"] == "b")].iloc[0]
    assert (row["seed 0"], row["mean"], row["std"], row["n"]) == ("50.0", "60.0", "14.1", "2")
    steps = table[table["figure"] == "steps to 95%"].iloc[0]
    assert (steps["seed 0"], steps["mean"]) == ("48", "40")


def test_verdict_counts_and_metrics_count_each_verdict():
    tables = {
        "H1": pd.DataFrame({"verdict": ["supported", "not resolved", "supported"]}),
        "H5": pd.DataFrame({"verdict": ["contradicted"]}),
    }
    counts = ps.verdict_counts(tables).frame.set_index("hypothesis")
    assert counts.loc["H1", "supported"] == "2" and counts.loc["H5", "contradicted"] == "1"
    assert ps.verdict_metrics(tables) == {
        "H1: claims supported": 2,
        "H1: claims contradicted": 0,
        "H5: claims supported": 0,
        "H5: claims contradicted": 1,
    }


def test_every_claim_names_a_figure_its_frame_has_and_reads_in_its_unit():
    maps = [torch.ones(8, 8), torch.ones(8, 8)]
    moved = dict.fromkeys(("left", "right", "up", "down"), 0.5)
    run = {"history": _history([0.5]), "steps_per_epoch": 4, "test_acc": 0.5}
    classification = set(ps.classification_frame({"x": _gated(maps)}).columns)
    corr = ps.correlation_frame({"plain": {0: [0.9, 0.4]}})
    columns = {
        "H1": classification,
        "H2": set(ps.quadrant_frame({"x": {0: run}}).columns),
        "H3": set(ps.stride_frame({"x": _gated(maps, shift_acc=moved)}).columns),
        "H4": set(ps.init_and_final(corr).columns),
        "H5": classification,
    }
    for family, claims in ps.CLAIMS.items():
        assert {entry[2] for entry in claims.values()} <= columns[family], family
    units = ps.claim_units("H1")
    assert units["BlurPool: more accurate"] == units["BlurPool: more consistent"] == "accuracy"
    assert set(ps.claim_units("H4").values()) == {"value"}
    assert set(ps.CAPTIONS) == set(ps.CLAIMS)


def _png_width(fig) -> int:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return Image.open(buffer).size[0]


def test_figures_fit_the_column_and_maps_share_one_colour_bar():
    histories = {
        arm: {
            s: {"history": _history([0.25 + 0.1 * e for e in range(5)]), "steps_per_epoch": 16}
            for s in (0, 1)
        }
        for arm in ps.quadrant_arms(0.1, 2)
    }
    frame = pd.DataFrame(
        [
            {"arm": arm, "seed": s, "test accuracy": 0.9, "shift consistency": 0.9}
            for arm in ps.classification_arms(0.1, 2)
            for s in (0, 1)
        ]
    )
    maps = ps.maps_figure({"a": np.ones((4, 4)), "b": np.zeros((4, 4))})
    assert len(maps.axes) == 3  # two maps, one colour bar
    corr = {"plain": {0: [0.9, 0.5, 0.4]}}
    for fig in (ps.quadrant_figure(histories), ps.shift_figure(frame), maps):
        assert _png_width(fig) <= 845
    assert _png_width(ps.correlation_figure(corr)) <= 845
    with pytest.raises(ValueError, match="one to three"):
        ps.maps_figure({str(i): np.ones((2, 2)) for i in range(4)})
    matplotlib.pyplot.close("all")


def test_setup_table_shows_every_value_whole(study):
    html = ps.setup_table(study).html
    assert "256 train / 64 validation / 128 test images" in html and "..." not in html
    assert "tuning seed 1000" in html


def test_collapse_summary_describes_the_arm_that_falls_and_the_others():
    runs = {
        "P-objective": {
            0: {"history": _history([0.96, 0.3, 0.5, 1.0])},
            1: {"history": _history([0.5, 0.97, 0.2, 0.99])},
            2: {"history": _history([0.96, 0.9, 1.0])},  # a dip above the floor
        },
        "zero padding": {0: {"history": _history([0.96, 0.8, 1.0])}},
    }
    summary = ps.collapse_summary(ps.collapse_frame(runs), "P-objective", floor=0.6)
    assert summary["n_fell"] == 2 and summary["n_fell_others"] == 0
    assert (summary["fell_low"], summary["fell_high"]) == (0.2, 0.3)
    assert (summary["first_low"], summary["first_high"]) == (1, 2)
    assert (summary["when_first"], summary["when_last"]) == (2, 3)
    assert summary["back_for_good"] == 4
    assert (summary["deepest"], summary["deepest_arm"], summary["deepest_seed"]) == (
        0.8,
        "zero padding",
        0,
    )
    empty = ps.collapse_summary(ps.collapse_frame({"x": {}}), "x", floor=0.6)
    assert empty["n_fell"] == 0 and empty["fell_low"] is None and empty["deepest"] is None
    assert "no runs" in ps.seed_table(ps.collapse_frame({"x": {}}), ["epoch of the lowest"]).html


def test_claim_values_name_a_claims_numbers_for_the_prose():
    table = pd.DataFrame(
        {
            "treated": [0.9],
            "control": [0.8],
            "difference": [0.1],
            "ci_low": [0.05],
            "ci_high": [0.15],
            "detectable": [0.02],
            "p_holm": [0.01],
            "verdict": ["supported"],
        },
        index=["a: more accurate"],
    )
    values = ps.claim_values(table, {"acc": "a: more accurate"}, scale=100)
    assert values == pytest.approx(
        {
            "acc_treated": 90.0,
            "acc_control": 80.0,
            "acc_diff": 10.0,
            "acc_low": 5.0,
            "acc_high": 15.0,
            "acc_detectable": 2.0,
            "acc_p": 0.01,
        }
    )
    with pytest.raises(ValueError, match="no claim 'b'"):
        ps.claim_values(table, {"b": "b"})


def test_training_hours_add_the_records_wall_times(study):
    study.records = {
        k: SimpleNamespace(provenance={"wall_time_s": t}) for k, t in (("a", 1800), ("b", 5400))
    }
    assert study.training_hours() == 2.0 and study.training_hours(1) == 1.5


def test_the_probe_set_pastes_test_items_where_its_offsets_say():
    settings = ps.configure("smoke")
    canvases, offsets = ps.probe_set(settings)
    images = canvases.float_images()
    assert images.shape[-1] == settings.canvas and offsets.shape == (settings.quad_test, 2)
    size = 28 // settings.item_factor
    r, c = offsets[0].tolist()
    item = images[0, :, r : r + size, c : c + size]
    assert item.sum() > 0 and images[0].sum() == pytest.approx(item.sum().item())
    assert len({tuple(o) for o in offsets.tolist()}) > 1  # positions vary
