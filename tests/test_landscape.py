"""Landscapes against Captum's Saliency, naive per-sample loops and closed forms; state and
errors."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import Saliency
from torch import nn

from pilcro_lib import landscape
from pilcro_lib.data import ImageDataset


def small_net(in_channels=2, bn=True):
    torch.manual_seed(1)
    norm = [nn.BatchNorm2d(6)] if bn else []
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 3, padding=1),
        *norm,
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    )


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(37, 2, 9, 9, generator=g), torch.randint(4, (37,), generator=g)


def close(a, b):
    torch.testing.assert_close(a.double(), b.double(), rtol=1e-6, atol=1e-9)


def captum_map(forward, x, **kwargs):
    return (
        Saliency(forward)
        .attribute(x.clone().requires_grad_(True), abs=True, **kwargs)
        .sum(1)
        .mean(0)
    )


@pytest.mark.parametrize("train", [False, True])
def test_logit_matches_captum(data, train):
    x, y = data
    model = small_net().train(train)
    # one batch of 64 >= 37: in train mode BatchNorm couples the batch exactly as in Captum's call
    ours = landscape.importance_landscape(
        model, x, y, score="logit", batch_size=64, normalize=False
    )
    close(ours, captum_map(model, x, target=y))
    if not train:  # in eval mode the batch size does not matter
        close(
            landscape.importance_landscape(
                model, x, y, score="logit", batch_size=5, normalize=False
            ),
            ours,
        )


def test_loss_and_logsumexp_match_captum(data):
    x, y = data
    model = small_net().eval()

    def loss(inp, target):
        return F.cross_entropy(model(inp), target, reduction="none")

    close(
        landscape.importance_landscape(model, x, y, batch_size=8, normalize=False),
        captum_map(loss, x, additional_forward_args=(y,)),
    )
    close(
        landscape.importance_landscape(model, x, score="logsumexp", batch_size=8, normalize=False),
        captum_map(lambda inp: model(inp).logsumexp(1), x),
    )


def test_squared_readout_matches_naive_loop(data):
    x, _ = data
    model = small_net().eval()
    v = landscape._fixed_readout(4, x)
    maps = []
    for xi in x:
        xi = xi[None].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xi)[0] @ v, xi)
        maps.append(g.pow(2).sum(1)[0])
    ours = landscape.importance_landscape(
        model, x, score="readout", squared=True, batch_size=10, normalize=False
    )
    close(ours, torch.stack(maps).mean(0))
    lam = landscape.importance_landscape(model, x, score="readout", squared=True, batch_size=10)
    close(lam, ours / ours.mean())
    assert lam.dtype == torch.float64 and lam.shape == (9, 9)


def test_dataset_inputs_equal_tensor_inputs(data):
    x, y = data
    model = small_net().eval()
    images = ImageDataset((x * 255).round().to(torch.uint8), y, ["a", "b", "c", "d"], "toy")
    float_x = images.float_images()
    ref = landscape.importance_landscape(model, float_x, y, batch_size=16)
    close(landscape.importance_landscape(model, images, batch_size=16), ref)
    close(
        landscape.importance_landscape(
            model, torch.utils.data.TensorDataset(float_x, y), batch_size=7
        ),
        ref,
    )


@pytest.mark.parametrize("train", [False, True])
def test_model_state_is_unchanged(data, train):
    x, y = data
    model = small_net().train(train)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    landscape.importance_landscape(model, x, y, batch_size=8)
    assert model.training == train
    assert all(m.training == train for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm running stats included
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(data):
    x, y = data
    model = small_net().eval()
    cpu = landscape.importance_landscape(model, x, y)
    gpu = landscape.importance_landscape(model.cuda(), x, y)
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-6)
    mc = landscape.monte_carlo_landscape(lambda: small_net(), (2, 9, 9), n_inits=2, device="cuda")
    assert mc.device.type == "cpu" and torch.isfinite(mc).all()


def test_pearson_matches_numpy():
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(5, 6, generator=g), torch.rand(5, 6, generator=g)
    assert landscape.pearson(a, b) == pytest.approx(
        np.corrcoef(a.flatten(), b.flatten())[0, 1], abs=1e-12
    )
    assert landscape.pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert np.isnan(landscape.pearson(torch.ones(3, 3), a[:3, :3]))
    assert np.isnan(landscape.pearson(a[:3, :3], 5 + 1e-12 * a[:3, :3]))


def test_monte_carlo_is_reproducible_and_leaves_global_rng():
    def build():
        return nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(3, 2),
        )

    state = torch.get_rng_state()
    mean, per_init = landscape.monte_carlo_landscape(
        build, (1, 6, 6), n_inits=4, return_per_init=True, seed=5
    )
    assert torch.equal(torch.get_rng_state(), state)
    assert per_init.shape == (4, 6, 6)
    close(mean, landscape.normalize(per_init.mean(0)))
    again = landscape.monte_carlo_landscape(build, (1, 6, 6), n_inits=4, seed=5)
    assert torch.equal(mean, again)
    images = torch.rand(10, 1, 6, 6)
    for inputs in (
        "uniform",
        images,
        torch.utils.data.TensorDataset(images, torch.randint(2, (10,))),
    ):
        m = landscape.monte_carlo_landscape(
            build, (1, 6, 6), n_inits=2, inputs=inputs, score="loss", mode="train"
        )
        assert m.shape == (6, 6) and torch.isfinite(m).all()


def test_running_cv_of_a_constant_signal_shrinks():
    g = torch.Generator().manual_seed(0)
    per_init = 1 + 0.3 * torch.randn(400, 8, 8, generator=g, dtype=torch.float64)
    r = landscape.running_cv(per_init)
    assert r.shape == (400,)
    close(r[0], landscape.cv(landscape.normalize(per_init[0])))
    close(r[-1], landscape.cv(landscape.normalize(per_init.mean(0))))
    assert 0.5 < (r[-1] * 20 / r[0]).item() < 2  # ~ 1 / sqrt(n)


def test_errors_name_the_argument(data):
    x, y = data
    model = small_net()
    with pytest.raises(ValueError, match="inputs must be 4-D"):
        landscape.importance_landscape(model, x[0], y)
    with pytest.raises(
        ValueError, match="inputs have 3 channels but the model's first spatial layer expects 2"
    ):
        landscape.importance_landscape(model, torch.rand(4, 3, 9, 9), y[:4])
    with pytest.raises(ValueError, match="targets are required for score='loss'"):
        landscape.importance_landscape(model, x)
    with pytest.raises(ValueError, match=r"targets must have shape \[37\]"):
        landscape.importance_landscape(model, x, y[:5])
    with pytest.raises(ValueError, match="inputs of spatial size .* too small"):
        landscape.importance_landscape(model, torch.rand(4, 2, 2, 2), y[:4])
    with pytest.raises(ValueError, match="score"):
        landscape.importance_landscape(model, x, y, score="margin")
    with pytest.raises(ValueError, match="batch_size"):
        landscape.importance_landscape(model, x, y, batch_size=0)
    with pytest.raises(ValueError, match="targets must be None"):
        landscape.importance_landscape(model, torch.utils.data.TensorDataset(x, y), y)
    with pytest.raises(TypeError, match="inputs must be a Tensor"):
        landscape.importance_landscape(model, x.numpy(), y)
    with pytest.raises(ValueError, match="inputs"):
        landscape.monte_carlo_landscape(small_net, (2, 9, 9), n_inits=1, inputs="pink")
    with pytest.raises(ValueError, match="n_inits"):
        landscape.monte_carlo_landscape(small_net, (2, 9, 9), n_inits=0)
    with pytest.raises(ValueError, match="input_size have 1 channels"):
        landscape.monte_carlo_landscape(small_net, (1, 9, 9), n_inits=1)
    with pytest.raises(ValueError, match="mode"):
        landscape.monte_carlo_landscape(small_net, (2, 9, 9), n_inits=1, mode="test")
    with pytest.raises(ValueError, match="same shape"):
        landscape.pearson(torch.rand(3, 3), torch.rand(3, 4))


def test_asymmetry():
    sym = torch.tensor([[1.0, 2.0, 1.0], [3.0, 0.0, 3.0]])
    assert landscape.asymmetry(sym).item() == 0
    assert landscape.asymmetry(sym, dim=-2).item() == pytest.approx(
        12 / 10
    )  # (|1-3| + |2-0| + |1-3|) twice, over 10
    with pytest.raises(ValueError, match="dim"):
        landscape.asymmetry(sym, dim=0)


def test_border_balance_ignores_the_strides_phase_and_sees_an_underused_border():
    for size, phase in ((28, 0), (28, 1), (29, 0), (30, 3)):
        columns = [2.0 if (j + phase) % 4 == 0 else 1.0 for j in range(size)]  # period 4
        pattern = torch.tensor(columns, dtype=torch.float64).expand(size, size)
        assert landscape.border_balance(pattern, period=4).item() == pytest.approx(0, abs=1e-12)
        assert landscape.asymmetry(pattern).item() > 0 or size % 4 == 1  # mirror sees the phase
    ramp = torch.linspace(2.0, 1.0, 12, dtype=torch.float64).expand(12, 12)  # right under-used
    by_hand = math.log(ramp[0, :3].mean() / ramp[0, -3:].mean())
    assert landscape.border_balance(ramp, period=3).item() == pytest.approx(by_hand)
    assert landscape.border_balance(ramp.T, dim=-2, period=3).item() == pytest.approx(by_hand)
    assert landscape.border_balance(ramp, dim=-2, period=3).item() == pytest.approx(0)
    with pytest.raises(ValueError, match="period=13 is larger than the 12x12 map"):
        landscape.border_balance(ramp, period=13)
    with pytest.raises(ValueError, match="dim must be"):
        landscape.border_balance(ramp, dim=1)


@pytest.mark.parametrize("kind", ["lc", "lrlc", "coordconv"])
def test_importance_landscape_accepts_models_led_by_any_spatial_layer(kind):
    from pilcro_lib.models import reference_net

    net = reference_net((kind, "conv", "conv"), width=4, input_size=12, rank=2).eval()
    x, y = torch.rand(3, 1, 12, 12), torch.tensor([0, 1, 2])
    assert landscape.importance_landscape(net, x, y).shape == (12, 12)
    with pytest.raises(
        ValueError, match="inputs have 2 channels but the model's first spatial layer expects 1"
    ):
        landscape.importance_landscape(net, torch.rand(3, 2, 12, 12), y)


# --- the network as it trains: batch statistics, running statistics untouched ---------------------


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, [
        m.training for m in model.modules()
    ]


def _batch_stats_by_hand(model, x, y):
    """The train-mode landscape computed directly: one training-mode pass, its buffers put back."""
    import copy

    twin = copy.deepcopy(model).train()
    return landscape.normalize(landscape.saliency(twin, x, y).mean(0).double())


@pytest.mark.parametrize("start_in_train", [False, True])
def test_train_mode_uses_batch_statistics_and_leaves_the_model_as_it_was(data, start_in_train):
    x, y = data
    model = small_net().train(start_in_train)
    with torch.no_grad():  # running statistics far from the batch's, so the two modes differ
        model[1].running_mean.fill_(3.0)
        model[1].running_var.fill_(9.0)
    before, flags = _state(model)
    train = landscape.importance_landscape(model, x, y, batch_size=64, mode="train")
    eval_ = landscape.importance_landscape(model, x, y, batch_size=64, mode="eval")
    after, flags_after = _state(model)
    assert flags_after == flags
    for key, value in before.items():
        assert torch.equal(after[key], value), f"{key} changed by measuring"
    close(train, _batch_stats_by_hand(model, x, y))
    assert (train - eval_).abs().max() > 1e-3
    as_is = landscape.importance_landscape(model, x, y, batch_size=64)
    close(as_is, train if start_in_train else eval_)


def test_train_mode_keeps_dropout_off_and_restores_its_flag(data):
    x, y = data
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(2, 6, 3),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    ).train()
    first = landscape.importance_landscape(model, x, y, batch_size=64, mode="train")
    second = landscape.importance_landscape(model, x, y, batch_size=64, mode="train")
    assert torch.equal(first, second)  # no random mask
    assert model[3].training
    with landscape.measurement_mode(model, "train") as inside:
        assert inside[1].training and not inside[3].training
    with pytest.raises(ValueError, match="mode='test' is not allowed"):
        with landscape.measurement_mode(model, "test"):
            pass


def _cifar_resnet_landscape(mode):
    from functools import partial

    from pilcro_lib.models import cifar_resnet18

    return landscape.monte_carlo_landscape(
        partial(cifar_resnet18, width=8), (3, 32, 32), n_inits=3, n_inputs=8, mode=mode, seed=0
    )


def test_cifar_resnet_at_init_has_no_period_8_grid_with_batch_statistics():
    """With PyTorch's default conv init, eval-mode BatchNorm is the identity at init and the 1x1
    stride-2 shortcuts dominate: a period-8 grid. With batch statistics (the network as it trains)
    the branches are balanced and the grid is gone."""
    train = _cifar_resnet_landscape("train")
    eval_ = _cifar_resnet_landscape("eval")
    assert 1 / 1.5 < landscape.grid_ratio(train).item() < 1.5
    assert landscape.grid_ratio(eval_).item() > 3


def test_batch_statistics_copy_predicts_the_train_mode_grid():
    from pilcro_lib import paths
    from pilcro_lib.models import cifar_resnet18

    torch.manual_seed(0)
    net = cifar_resnet18(width=8)
    before, _ = _state(net)
    x = torch.randn(16, 3, 32, 32)
    trained_view = landscape.with_batch_statistics(net, x)
    assert all(torch.equal(v, _state(net)[0][k]) for k, v in before.items())
    bn = trained_view[1]
    with torch.no_grad():
        first = net[0](x)
    torch.testing.assert_close(bn.running_var, first.var(dim=(0, 2, 3)), rtol=1e-3, atol=1e-6)
    grid = {
        name: landscape.grid_ratio(
            landscape.normalize(paths.path_count(m, (3, 32, 32), weighting="variance"))
        )
        for name, m in (("eval", net), ("train", trained_view))
    }
    assert grid["eval"] > 3 and 1 / 1.5 < grid["train"] < 1.5


def test_grid_ratio():
    lam = torch.ones(16, 16, dtype=torch.float64)
    assert landscape.grid_ratio(lam).item() == 1
    lam[::8, ::8] = 5.0
    assert landscape.grid_ratio(lam).item() == 5
    assert landscape.grid_ratio(lam, offset=1).item() < 1
    for kwargs, match in (
        (dict(period=1), "period"),
        (dict(period=32), "period=32 is larger"),
        (dict(offset=8), "offset=8"),
    ):
        with pytest.raises(ValueError, match=match):
            landscape.grid_ratio(lam, **kwargs)


def test_standard_error_and_bootstrap_shrink_like_one_over_sqrt_n():
    g = torch.Generator().manual_seed(0)
    per_init = 1 + 0.4 * torch.randn(400, 8, 8, generator=g, dtype=torch.float64)
    se = landscape.standard_error(per_init)
    assert se.shape == (8, 8)
    assert 0.8 < (se.mean() / (0.4 / 20)).item() < 1.2
    quarter = landscape.standard_error(per_init[:100]).mean()
    assert 1.6 < (quarter / se.mean()).item() < 2.4
    boot = landscape.bootstrap_flatness(per_init[:100], n_boot=50)
    assert set(boot) == set(landscape.flatness(per_init[0]))
    assert 0 < boot["cv"] < 0.05
    with pytest.raises(ValueError, match="per_init"):
        landscape.standard_error(per_init[:1])


def test_power_law_fit_recovers_an_exponent():
    count = torch.arange(1, 65, dtype=torch.float64).view(8, 8)
    p, r = landscape.power_law_fit(count, 3 * count.sqrt())
    assert p == pytest.approx(0.5) and r == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        landscape.power_law_fit(count - 1, count)
    with pytest.raises(ValueError, match="same shape"):
        landscape.power_law_fit(count, count.flatten())
