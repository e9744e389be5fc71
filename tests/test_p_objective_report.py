import matplotlib

matplotlib.use("Agg")

import io

import pytest
import torch
from PIL import Image
from torch import nn

from pilcro_lib import objective
from pilcro_lib import p_objective_report as report
from pilcro_lib.landscape import flatness
from pilcro_lib.protocol import GatedSeeds


def test_a_circular_linear_net_is_flat_and_a_zero_padded_one_is_not():
    torch.manual_seed(0)
    x, y = torch.rand(4, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (4,))
    nets = {"circular": report.linear_net("circular"), "zeros": report.linear_net("zeros")}
    table = report.penalty_table(nets, x, y)
    assert list(table.index) == list(objective.MEASURES) and table.index.name == "measure"
    assert (table["circular"] < 1e-20).all() and (table["zeros"] > 1e-3).all()
    with pytest.raises(ValueError, match="padding_mode"):
        report.linear_net("mirror")


def test_the_gradcheck_passes_and_leaves_the_model_alone():
    torch.manual_seed(0)
    tiny = report.tiny_tanh_net()
    before = [p.detach().clone() for p in tiny.parameters()]
    x, y = torch.rand(2, 1, 5, 5, dtype=torch.float64), torch.tensor([0, 2])
    assert report.penalty_gradcheck(tiny, x, y, measure="cv")
    assert all(torch.equal(a, b) for a, b in zip(before, tiny.parameters()))


def test_the_per_sample_loop_matches_a_hand_computed_landscape():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(9, 3)).double()
    x, y = torch.rand(2, 1, 3, 3, dtype=torch.float64), torch.tensor([1, 2])
    # a linear model: d CE / d x = W^T (softmax - onehot), per sample
    w = net[1].weight.detach()
    grads = []
    for b in range(2):
        p = torch.softmax(net(x[b : b + 1]), 1)[0]
        p[y[b]] -= 1
        grads.append((w.T @ p).abs().reshape(3, 3))
    expected = torch.stack(grads).mean(0)
    got = report.per_sample_landscape(net, x, y)
    torch.testing.assert_close(got, expected / expected.mean())


def test_running_statistics_are_copies_of_the_batch_norm_buffers():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    stats = report.running_statistics(net)
    assert set(stats) == {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    net(torch.rand(4, 1, 5, 5))  # train mode: the buffers move, the copies do not
    assert torch.equal(stats["1.running_mean"], torch.zeros(2))
    assert not torch.equal(stats["1.running_mean"], net[1].running_mean)


def test_flatness_table_rows_are_the_flatness_of_each_map():
    torch.manual_seed(0)
    maps = {"flat": torch.ones(8, 8), "bumpy": torch.rand(8, 8) + 0.5}
    table = report.flatness_table(maps)
    assert list(table.columns) == list(report.FLATNESS_COLUMNS)
    assert table.loc["flat", "curvature"] == 0 and table.loc["flat", "border_ratio"] == 1
    assert table.loc["bumpy", "cv"] == pytest.approx(flatness(maps["bumpy"])["cv"])
    assert set(report.FLATNESS_HEADERS) == set(report.FLATNESS_COLUMNS)


def test_penalty_only_figure_fits_the_column_with_one_colour_bar():
    torch.manual_seed(0)
    fig = report.penalty_only_figure(torch.rand(6, 6), torch.rand(6, 6), [0.3, 0.2, 0.1])
    assert len(fig.axes) == 4  # two maps, the curve, one colour bar
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    assert Image.open(buffer).width <= 845


def test_cost_table_divides_by_the_plain_step():
    table = report.cost_table({"plain": 0.1, "full batch": 0.45})
    assert table.loc["full batch", "ms per step"] == pytest.approx(450)
    assert table.loc["full batch", "x plain"] == pytest.approx(4.5)
    with pytest.raises(ValueError, match="plain"):
        report.cost_table({"full batch": 0.45})


def test_setting_runs_ask_for_the_penalty_each_setting_names(monkeypatch):
    asked = []

    class Fake:
        def __init__(self, key, metrics):
            self.key, self.metrics = key, metrics

    def fake_cached_run(fn, **inputs):
        asked.append(inputs)
        return Fake(str(len(asked) % 2), {"val_acc": 0.9})

    monkeypatch.setattr(report, "cached_run", fake_cached_run)
    runs = report.SettingRuns({"lam": 0.3}, epochs=8)
    assert runs("plain", 0) == {"val_acc": 0.9}
    runs("sub_batch 16, every 2", 1, epochs=4)
    runs("full batch", 2)
    plain, sb16, full = asked
    assert plain["arm"] == "plain" and (plain["sub_batch"], plain["every"]) == (None, 1)
    assert sb16["arm"] == "p_objective" and (sb16["sub_batch"], sb16["every"]) == (16, 2)
    assert (sb16["epochs"], full["epochs"], full["sub_batch"]) == (4, 8, None)
    assert all(a["lam"] == 0.3 and a["name"] == "05_p_objective" for a in asked)
    assert set(runs.records) == {"0", "1"}  # the first record of each key is kept
    with pytest.raises(ValueError, match="setting"):
        runs("every 3", 0)


def test_gated_settings_ask_for_every_run_first_and_replace_failed_seeds():
    calls = []

    def runs(setting, seed):
        calls.append((setting, seed))
        return {"val_acc": 0.1 if (setting, seed) == ("b", 1) else 0.9}

    groups = report.gated_settings(
        runs, ["a", "b"], [0, 1], gate=lambda m: m["val_acc"] >= 0.5, spares=[2]
    )
    assert calls[:4] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert list(groups["b"].learnt) == [0, 2] and list(groups["b"].failed) == [1]
    metrics = {"flatness": {"curvature": 0.1, "cv": 0.2}, "test_acc": 0.8, "train_time_s": 3}
    frame = report.flatness_frame({"a": GatedSeeds(learnt={0: metrics}, failed={})}, ["a"])
    assert frame.iloc[0].tolist() == ["a", 0, 0.1, 0.2, 0.8, 3]
    claims = report.curvature_claims(["a"], "plain", "flatter than plain")
    assert claims == {"a, flatter than plain": ("a", "plain", "curvature κ", False)}


def test_equivalence_claims_test_each_setting_against_the_control_within_the_margin():
    import pandas as pd

    from pilcro_lib.stats import equivalence

    curvatures = {"full": [1.0, 1.1, 0.9], "close": [1.0, 1.05, 0.98], "far": [2.0, 2.1, 1.9]}
    frame = pd.DataFrame(
        [(k, s, v) for k, vs in curvatures.items() for s, v in enumerate(vs)],
        columns=["setting", "seed", "curvature κ"],
    )
    table = report.equivalence_claims(frame, ["close", "far"], "full", margin=0.3)
    assert list(table.index) == ["close, as flat as full", "far, as flat as full"]
    direct = equivalence(curvatures["close"], curvatures["full"], margin=0.3)
    row = table.loc["close, as flat as full"]
    assert (row["difference"], row["ci_low"], row["margin"]) == pytest.approx(
        (direct["difference"], direct["eq_low"], 0.3)
    )
    assert table["verdict"].tolist() == ["supported", "contradicted"]
