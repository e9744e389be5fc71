"""Tests of the P-objective (pilcro_lib.objective, .cost, .experiments): gradients, sanity cases,
BatchNorm, regularisers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from pilcro_lib.cost import ReuseForwardPenalty, cost_arms, step_cost
from pilcro_lib.data import ImageDataset
from pilcro_lib.experiments import (
    LandscapeRecorder,
    claim_verdicts,
    make_arm,
    per_seed,
    run_arm,
    spearman,
    steps_to_reach,
)
from pilcro_lib.landscape import curvature, cv, gradient_energy, normalize, saliency
from pilcro_lib.objective import (
    DEFAULT_EVERY,
    DEFAULT_SUB_BATCH,
    MEASURES,
    InputGradientPenalty,
    PObjective,
    batch_landscape,
    frozen_batchnorm_stats,
    input_gradient,
    landscape_measure,
    pilcro_penalty,
)
from pilcro_lib.train import fit


def conv_net(
    padding_mode: str = "zeros",
    act: type[nn.Module] = nn.Tanh,
    width: int = 3,
    depth: int = 2,
    bn: bool = False,
) -> nn.Sequential:
    """A small all-conv net: depth x [3x3 conv (same size), (BN), act], global average pool,
    linear."""
    layers: list[nn.Module] = []
    c = 1
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1, padding_mode=padding_mode)]
        layers += [nn.BatchNorm2d(width)] if bn else []
        layers += [act()]
        c = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4))


class TinyResidual(nn.Module):
    """conv -> BN -> ReLU, one residual block, global average pool, linear."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.branch = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.head = nn.Sequential(
            nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(torch.relu(h + self.branch(h)))


def batch(n: int = 6, size: int = 8, seed: int = 0, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g, dtype=dtype), torch.randint(
        0, 4, (n,), generator=g
    )


@pytest.mark.parametrize("measure", MEASURES)
def test_gradcheck_wrt_parameters(measure):
    torch.manual_seed(0)
    net = conv_net(width=2).double()
    x, y = batch(3, 6, dtype=torch.float64)
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())

    def f(*ps):
        return pilcro_penalty(_Functional(net, dict(zip(names, ps))), x, y, measure=measure)

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6, rtol=1e-4)


class _Functional(nn.Module):
    """``net`` evaluated with the given parameter tensors (so gradcheck can vary them)."""

    def __init__(self, net: nn.Module, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.net, self.params = net, params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, self.params, (x,))


def test_measures_match_landscape_figures():
    lam = normalize(torch.rand(2, 7, 9, dtype=torch.float64) + 0.5)
    assert torch.allclose(landscape_measure(lam, "laplacian"), curvature(lam))
    assert torch.allclose(landscape_measure(lam, "gradient"), gradient_energy(lam))
    assert torch.allclose(landscape_measure(lam, "cv"), cv(lam) ** 2)


def test_batch_landscape_matches_per_sample_loop():
    torch.manual_seed(1)
    net = conv_net(act=nn.ReLU).double()
    x, y = batch(5, 8, dtype=torch.float64)
    maps = []
    for b in range(5):  # naive reference: one sample at a time
        xb = x[b : b + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(net(xb), y[b : b + 1]), xb)
        maps.append(g.abs().sum(1)[0])
    ref = torch.stack(maps).mean(0)
    got = batch_landscape(input_gradient(net, x, y))
    assert torch.allclose(got, ref / ref.mean(), atol=1e-12)
    assert torch.allclose(got, normalize(saliency(net, x, y).mean(0)), atol=1e-12)


def test_input_gradient_penalty_matches_per_sample_norms():
    torch.manual_seed(2)
    net = conv_net().double()
    x, y = batch(4, 6, dtype=torch.float64)
    norms = []
    for b in range(4):
        xb = x[b : b + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(net(xb), y[b : b + 1]), xb)
        norms.append(g.pow(2).sum())
    reg = InputGradientPenalty(0.5)
    assert torch.allclose(reg(net, x, y, None), 0.5 * torch.stack(norms).mean())


@pytest.mark.parametrize("measure", MEASURES)
def test_flat_for_linear_circular_net_positive_for_zero_padding(measure):
    torch.manual_seed(3)
    x, y = batch(8, 10, dtype=torch.float64)
    circular = conv_net("circular", act=nn.Identity, depth=3).double()
    zeros = conv_net("zeros", act=nn.Identity, depth=3).double()
    assert pilcro_penalty(circular, x, y, measure=measure).item() < 1e-20
    assert pilcro_penalty(zeros, x, y, measure=measure).item() > 1e-3


def test_penalty_steps_reduce_curvature_of_zero_padded_net():
    torch.manual_seed(4)
    net = conv_net("zeros", act=nn.ReLU, width=8, depth=4)
    x, y = batch(32, 16, seed=4)
    x_test, y_test = batch(64, 16, seed=5)

    def held_out_curvature() -> float:
        return curvature(normalize(saliency(net, x_test, y_test).mean(0))).item()

    before = held_out_curvature()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        pilcro_penalty(net, x, y).backward()
        opt.step()
    assert held_out_curvature() < 0.3 * before


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_train_mode_running_stats_untouched(momentum):
    torch.manual_seed(5)
    net = conv_net(act=nn.ReLU, bn=True, width=4)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum
    x, y = batch(8, 8)
    net(x)  # one ordinary training forward
    bn = net[1]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    p = pilcro_penalty(net, x, y, sub_batch=4)
    p.backward()
    assert net.training and bn.momentum == momentum
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(torch.isfinite(q.grad).all() for q in net.parameters())
    with frozen_batchnorm_stats(net):  # the context also restores after an exception
        with pytest.raises(RuntimeError):
            net(torch.rand(2, 3, 8, 8))
    assert bn.momentum == momentum


def test_max_pooling_and_residual_nets():
    torch.manual_seed(6)
    net = TinyResidual()
    x, y = batch(6, 8)
    for measure in MEASURES:
        net.zero_grad()
        p = pilcro_penalty(net, x, y, measure=measure)
        p.backward()
        assert p.item() > 0
        assert all(q.grad is not None and torch.isfinite(q.grad).all() for q in net.parameters())


def test_cifar_resnet18():
    models = pytest.importorskip("pilcro_lib.models")
    if not hasattr(models, "cifar_resnet18"):
        pytest.skip("pilcro_lib.models.cifar_resnet18 not available")
    torch.manual_seed(7)
    net = models.cifar_resnet18(num_classes=10, width=8)
    x, y = torch.rand(2, 3, 32, 32), torch.randint(0, 10, (2,))
    p = pilcro_penalty(net, x, y)
    p.backward()
    assert torch.isfinite(p) and p.item() > 0
    assert all(q.grad is None or torch.isfinite(q.grad).all() for q in net.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_matches_cpu():
    torch.manual_seed(8)
    net = conv_net(act=nn.ReLU).double()
    x, y = batch(6, 8, dtype=torch.float64)
    cpu = pilcro_penalty(net, x, y)
    gpu = pilcro_penalty(net.cuda(), x.cuda(), y.cuda())
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-8)


def test_pobjective_schedule_log_and_resume():
    torch.manual_seed(9)
    net = conv_net(act=nn.ReLU)
    x, y = batch(6, 8)
    reg = PObjective(2.0, every=2, sub_batch=4, warmup_epochs=1)
    reg.on_epoch_start(0)
    assert reg(net, x, y, None) is None  # warm-up
    log = reg.epoch_log()
    assert math.isnan(log["penalty"]) and math.isnan(log["landscape_cv"])
    reg.on_epoch_start(1)
    out = [reg(net, x, y, None) for _ in range(3)]  # steps 1, 2, 3: only step 2 is penalised
    assert out[0] is None and out[2] is None
    assert torch.allclose(out[1], 2.0 * pilcro_penalty(net, x, y, sub_batch=4))
    log = reg.epoch_log()
    assert log["penalty"] == pytest.approx(out[1].item() / 2.0, rel=1e-6)
    assert log["landscape_curvature"] > 0 and log["landscape_border_ratio"] > 0

    resumed = PObjective(2.0, every=2, sub_batch=4, warmup_epochs=1)
    resumed.load_state_dict(reg.state_dict())
    for _ in range(3):
        assert (reg(net, x, y, None) is None) == (resumed(net, x, y, None) is None)
    short = PObjective(1.0, sub_batch=16)  # a short last batch uses all its samples
    assert torch.allclose(short(net, x, y, None), pilcro_penalty(net, x, y))
    assert PObjective(0.0)(net, x, y, None) is None


def test_errors_name_the_argument():
    net = conv_net()
    x, y = batch(4, 6)
    with pytest.raises(ValueError, match="lam"):
        PObjective(-1.0)
    with pytest.raises(ValueError, match="lam"):
        InputGradientPenalty(float("nan"))
    with pytest.raises(ValueError, match="measure"):
        PObjective(1.0, measure="hessian")
    with pytest.raises(ValueError, match="measure"):
        pilcro_penalty(net, x, y, measure="hessian")
    with pytest.raises(ValueError, match="score"):
        pilcro_penalty(net, x, y, score="margin")
    with pytest.raises(ValueError, match="sub_batch"):
        pilcro_penalty(net, x, y, sub_batch=5)
    with pytest.raises(ValueError, match="sub_batch"):
        pilcro_penalty(net, x, y, sub_batch=0)
    with pytest.raises(ValueError, match="sub_batch"):
        PObjective(1.0, sub_batch=0)
    with pytest.raises(ValueError, match="every"):
        PObjective(1.0, every=0)
    with pytest.raises(ValueError, match="warmup_epochs"):
        PObjective(1.0, warmup_epochs=-1)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(36, 4))
    with pytest.raises(ValueError, match="inputs"):
        pilcro_penalty(mlp, x.flatten(1), y)
    with pytest.raises(ValueError, match="inputs"):
        PObjective(1.0)(mlp, x.flatten(1), y, None)


def tiny_dataset(n: int = 48, size: int = 10, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(
        torch.rand(n, 1, size, size, generator=g),
        torch.randint(0, 3, (n,), generator=g),
        ["a", "b", "c"],
        "tiny",
    )


class _Interrupt(Exception):
    pass


def interrupted(reg: PObjective, stop_at: int) -> PObjective:
    """``reg``, made to raise once its step counter reaches ``stop_at`` (a killed run); it still
    describes itself as the same PObjective, so the run can be resumed with a plain one."""
    penalty = reg.penalty

    def stopping(grad, land):
        if reg.step > stop_at:  # the step counter has already moved past this step
            raise _Interrupt
        return penalty(grad, land)

    reg.penalty = stopping
    return reg


def test_fit_with_pobjective_resumes_exactly(tmp_path):
    data = tiny_dataset()

    def train(run_dir, reg):
        torch.manual_seed(0)
        net, _ = make_arm("plain", input_size=10, num_classes=3, width=4)
        return net, fit(
            net,
            data,
            data,
            epochs=2,
            batch_size=16,
            run_dir=run_dir,
            regularizer=reg,
            progress=False,
        )

    net_a, hist_a = train(tmp_path / "a", PObjective(1.0, every=2, sub_batch=8))
    killed = interrupted(
        PObjective(1.0, every=2, sub_batch=8), stop_at=4
    )  # in the second epoch (3 steps per epoch)
    with pytest.raises(_Interrupt):
        train(tmp_path / "b", killed)
    net_b, hist_b = train(tmp_path / "b", PObjective(1.0, every=2, sub_batch=8))
    for p, q in zip(net_a.state_dict().values(), net_b.state_dict().values()):
        assert torch.equal(p, q)
    assert [r["penalty"] for r in hist_a.records] == [r["penalty"] for r in hist_b.records]


def test_landscape_recorder_records_each_epoch_with_batch_statistics_and_round_trips():
    data = tiny_dataset()
    torch.manual_seed(1)
    net, _ = make_arm("plain", input_size=10, num_classes=3, width=4)
    probe_x, probe_y = data.float_images()[:8], data.labels[:8]
    recorder = LandscapeRecorder(probe_x, probe_y, PObjective(1.0))
    net.eval()
    running = [b.clone() for b in net.buffers()]
    initial = recorder.record(net, 0)
    assert not net.training and all(torch.equal(a, b) for a, b in zip(running, net.buffers()))
    net.train()  # batch statistics of the probe batch, as a training step sees the network
    assert torch.allclose(initial, saliency(net, probe_x, probe_y).mean(0).double())
    net.eval()
    assert not torch.allclose(initial, saliency(net, probe_x, probe_y).mean(0).double())
    eval_mode = LandscapeRecorder(probe_x, probe_y, mode="eval").record(net, 0)
    assert torch.allclose(eval_mode, saliency(net, probe_x, probe_y).mean(0).double())
    fit(net, data, data, epochs=2, batch_size=16, regularizer=recorder, progress=False)
    assert sorted(recorder.landscapes) == [0, 1, 2]
    copy = LandscapeRecorder(probe_x, probe_y, PObjective(1.0))
    copy.load_state_dict(recorder.state_dict())
    assert copy.inner.step == recorder.inner.step
    assert all(torch.equal(copy.landscapes[k], recorder.landscapes[k]) for k in recorder.landscapes)
    with pytest.raises(ValueError, match="mode='test' is not allowed"):
        LandscapeRecorder(probe_x, probe_y, mode="test")


def test_run_arm_metrics():
    data = tiny_dataset(32, 12)
    grid = [((0, 0), data), ((1, 1), data)]
    corruptions = {"none": ("shift", 0), "corner": ("corner_occlusion", 12)}
    m = run_arm(
        "p_objective",
        data,
        data,
        data,
        epochs=1,
        width=4,
        probe_size=8,
        position_sets=grid,
        corruptions=corruptions,
        recipe="classic",
    )
    assert set(m) >= {
        "history",
        "test_acc",
        "corrupt_acc",
        "landscapes",
        "flatness",
        "flatness_init",
        "flatness_by_epoch",
        "spearman_init_final",
        "position_acc",
        "val_acc",
        "steps_per_epoch",
    }
    assert list(m["landscapes"]) == ["0", "1"] and len(m["landscapes"]["1"]) == 12
    assert (
        list(m["flatness_by_epoch"]) == ["0", "1"] and m["flatness_by_epoch"]["1"] == m["flatness"]
    )
    assert list(m["corrupt_acc"]) == ["none", "corner"] and len(m["position_acc"]) == 2
    assert m["corrupt_acc"]["none"] == m["test_acc"] == m["position_acc"][0]
    assert m["steps_per_epoch"] == 1 and m["val_acc"] == m["history"][-1]["val_acc"]
    assert m["history"][0]["penalty"] > 0
    with pytest.raises(ValueError, match="corruptions must map a name to"):
        run_arm("plain", data, data, data, epochs=1, width=4, corruptions={"x": "blur"})


def test_run_arm_can_store_the_deployed_networks_landscape(monkeypatch):
    from pilcro_lib import experiments
    from pilcro_lib.landscape import flatness_or_nan, importance_landscape

    built = []
    make_arm = experiments.make_arm
    monkeypatch.setattr(
        experiments, "make_arm", lambda *a, **k: built.append(make_arm(*a, **k)) or built[-1]
    )
    data = tiny_dataset(32, 12)
    m = run_arm("plain", data, data, data, epochs=1, width=4, probe_size=8, eval_landscape=True)
    model, _ = built[0]  # the trained network
    probe = data.subset(torch.arange(8))
    deployed = importance_landscape(
        model, probe.float_images(), probe.labels, batch_size=8, normalize=False, mode="eval"
    )
    assert torch.tensor(m["landscape_eval"], dtype=torch.float64).equal(deployed)
    assert m["flatness_eval"] == flatness_or_nan(deployed)
    assert m["landscape_eval"] != m["landscapes"]["1"]  # batch statistics give another map
    plain = run_arm("plain", data, data, data, epochs=1, width=4, probe_size=8)
    assert "landscape_eval" not in plain and "flatness_eval" not in plain


def test_run_arm_reports_a_diverged_run(monkeypatch):
    import pilcro_lib.train

    def diverge(*args, **kwargs):
        raise FloatingPointError("the training loss is nan at epoch 1, step 2 of 3: stopped.")

    monkeypatch.setattr(pilcro_lib.train, "fit", diverge)
    data = tiny_dataset(32, 12)
    m = run_arm("p_objective", data, data, data, epochs=1, width=4, probe_size=8, lam=1e6)
    assert m["diverged"].startswith("the training loss is nan") and m["history"] == []
    assert (
        math.isnan(m["val_acc"])
        and math.isnan(m["test_acc"])
        and math.isnan(m["flatness"]["curvature"])
    )


def test_a_network_that_ignores_its_input_is_a_failed_seed_not_a_traceback(monkeypatch):
    import pilcro_lib.experiments as experiments
    from pilcro_lib.protocol import gated_seeds

    class IgnoreInput(nn.Module):
        def forward(self, x):
            return x * 0

    make_arm = experiments.make_arm

    def dead_arm(*args, **kwargs):
        model, regulariser = make_arm(*args, **kwargs)
        return nn.Sequential(IgnoreInput(), model), regulariser

    monkeypatch.setattr(experiments, "make_arm", dead_arm)
    data = tiny_dataset(32, 12)
    m = run_arm("plain", data, data, data, epochs=1, width=4, probe_size=8)
    assert m["degenerate"] == {
        "landscape at epoch 0": "all zero",
        "landscape at epoch 1": "all zero",
    }
    assert math.isnan(m["flatness"]["cv"]) and math.isnan(m["spearman_init_final"])
    out = gated_seeds(lambda seed: m, [0], gate=lambda r: True, spares=[])
    assert out.learnt == {} and out.reasons == {
        0: "landscape at epoch 0: all zero; landscape at epoch 1: all zero"
    }


def test_make_arm_padding_and_errors():
    plain, reg = make_arm("plain", width=4)
    assert reg is None and plain[0].padding_mode == "zeros" and plain[0].padding == (1, 1)
    circ, _ = make_arm("circular", width=4)
    assert circ[0].padding_mode == "circular"
    full, _ = make_arm("full", width=4)
    assert full[0].padding == (2, 2)
    fast, _ = make_arm("circular", model="fast_cnn", width=4)
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(m.padding_mode == "circular" for m in convs)
    _, reg = make_arm("p_objective", lam=3.0, sub_batch=8, every=4)
    assert isinstance(reg, PObjective) and (reg.lam, reg.sub_batch, reg.every) == (3.0, 8, 4)
    assert reg.measure == "laplacian"
    _, reg = make_arm("p_objective", measure="cv")
    assert reg.measure == "cv"
    _, reg = make_arm("input_gradient", ig_lam=0.5)
    assert isinstance(reg, InputGradientPenalty) and reg.lam == 0.5
    with pytest.raises(ValueError, match="arm"):
        make_arm("dropout")
    with pytest.raises(ValueError, match="full"):
        make_arm("full", model="resnet18")
    with pytest.raises(ValueError, match="model"):
        make_arm("plain", model="vgg")


def test_spearman_and_steps_to_reach():
    a = torch.rand(5, 6, dtype=torch.float64)
    b = a.pow(3) + 0.01 * torch.rand(5, 6, dtype=torch.float64)  # a monotone map of a, nearly
    ranks = lambda t: t.flatten().argsort().argsort().double()  # noqa: E731 (no ties here)
    ra, rb = ranks(a), ranks(b)
    ref = torch.corrcoef(torch.stack([ra, rb]))[0, 1].item()
    assert spearman(a, b) == pytest.approx(ref)
    assert spearman(a, -a) == pytest.approx(-1.0)
    hist = [
        {"epoch": 1, "val_acc": 0.5, "epoch_time_s": 2.0},
        {"epoch": 2, "val_acc": 0.8, "epoch_time_s": 3.0},
    ]
    assert steps_to_reach(hist, 0.7, steps_per_epoch=10) == (20.0, 5.0)
    assert steps_to_reach(hist, 0.5, steps_per_epoch=10) == (10.0, 2.0)
    assert all(math.isnan(v) for v in steps_to_reach(hist, 0.9, steps_per_epoch=10))


def test_reuse_forward_penalty_equals_second_forward():
    torch.manual_seed(10)
    net = conv_net(act=nn.ReLU, bn=True).double()
    x, y = batch(6, 8, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    reused = ReuseForwardPenalty(2.0)(net, xr, y, net(xr))
    assert torch.allclose(reused, 2.0 * pilcro_penalty(net, x, y))
    with pytest.raises(ValueError, match="names"):
        step_cost(names=["no such arm"])


def test_per_seed_and_claim_verdicts():
    import pandas as pd

    from pilcro_lib.stats import compare

    frame = pd.DataFrame(
        {
            "arm": ["a"] * 3 + ["b"] * 3,
            "seed": [0, 1, 2, 0, 1, 3],
            "acc": [0.5, 0.7, 0.6, 0.1, 0.2, 0.15],
            "loss": [1.0, 2.0, 3.0, 1.0, 1.1, 1.2],
        }
    )
    table = per_seed(frame, "acc")
    assert list(table.index) == ["a", "b"] and list(table.columns[:4]) == [
        "seed 0",
        "seed 1",
        "seed 2",
        "seed 3",
    ]
    assert table.loc["a", "mean"] == pytest.approx(0.6) and table.loc["b", "n"] == 3
    assert math.isnan(table.loc["a", "seed 3"])
    claims = {"more accurate": ("a", "b", "acc", True), "lower loss": ("a", "b", "loss", False)}
    verdict = claim_verdicts(frame, claims)
    ref = compare([0.5, 0.7, 0.6], [0.1, 0.2, 0.15])
    assert verdict.loc["more accurate", "p"] == pytest.approx(ref["p"])
    assert verdict.loc["more accurate", "p_holm"] == pytest.approx(min(1, 2 * ref["p"]))
    assert verdict.loc["more accurate", "verdict"] == "supported"
    assert verdict.loc["lower loss", "verdict"] == "not resolved"
    primary = claim_verdicts(frame, claims, primary=["more accurate"])
    assert primary.loc["more accurate", "p_holm"] == pytest.approx(ref["p"])  # its own family
    assert primary["role"].tolist() == ["primary", "secondary"]
    with pytest.raises(ValueError, match="names arm 'c'"):
        claim_verdicts(frame, {"x": ("c", "b", "acc", True)})
    with pytest.raises(ValueError, match="names column 'nope'"):
        claim_verdicts(frame, {"x": ("a", "b", "nope", True)})
    with pytest.raises(
        ValueError, match="must be \\(treated, control, column, higher_is_better\\)"
    ):
        claim_verdicts(frame, {"x": ("a", "b")})
    with pytest.raises(ValueError, match="frame lacks the columns \\['seed'\\]"):
        per_seed(frame.drop(columns="seed"), "acc")


def test_defaults_are_the_cheap_setting_and_cost_arms_are_explicit():
    for reg in (PObjective(1.0), InputGradientPenalty(1.0)):
        assert (reg.sub_batch, reg.every) == (DEFAULT_SUB_BATCH, DEFAULT_EVERY)
    arms = cost_arms()
    assert (arms["full batch"].sub_batch, arms["full batch"].every) == (None, 1)
    assert (arms["sub_batch 8"].sub_batch, arms["every 4"].every) == (8, 4)
    assert arms["input-gradient penalty, full batch"].sub_batch is None
