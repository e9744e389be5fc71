"""Path counts against an independent brute-force count over an explicit connectivity graph.

The reference below never calls a convolution or pooling kernel: it lists, with plain Python
loops, which input position every output position reads (window by window, through the padding
rule), stores these edges in a matrix and counts paths by multiplying the matrices (dynamic
programming over layers). Output sizes are taken from running the real module.
"""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from pilcro_lib import landscape, models, paths


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _source(p, n, mode):
    if 0 <= p < n:
        return p
    if mode == "zeros":
        return None
    if mode == "circular":
        return p % n
    if mode == "replicate":
        return 0 if p < 0 else n - 1
    return abs(p) if p < 0 else 2 * n - 2 - p  # reflect: mirror without repeating the edge


def _windows_matrix(h, w, oh, ow, windows):
    """Edge-count matrix ``[oh*ow, h*w]``; ``windows(oi, oj)`` lists the (i, j) each output
    reads."""
    m = np.zeros((oh * ow, h * w))
    for oi in range(oh):
        for oj in range(ow):
            for i, j in windows(oi, oj):
                m[oi * ow + oj, i * w + j] += 1
    return m


def _out_hw(module, h, w):
    with torch.no_grad():
        c = getattr(module, "in_channels", 1)
        return module(torch.zeros(1, c, h, w)).shape[-2:]


def _conv_matrix(m: nn.Conv2d, h, w):
    (kh, kw), (sh, sw), (dh, dw) = m.kernel_size, m.stride, m.dilation
    if m.padding == "same":
        top, left = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    elif m.padding == "valid":
        top = left = 0
    else:
        top, left = m.padding
    oh, ow = _out_hw(m, h, w)

    def windows(oi, oj):
        for a in range(kh):
            for b in range(kw):
                i = _source(oi * sh - top + a * dh, h, m.padding_mode)
                j = _source(oj * sw - left + b * dw, w, m.padding_mode)
                if i is not None and j is not None:
                    yield i, j

    return oh, ow, _windows_matrix(h, w, oh, ow, windows)


def _pool_matrix(m, h, w):
    (kh, kw), (sh, sw), (ph, pw) = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
    dh, dw = _pair(getattr(m, "dilation", 1))
    oh, ow = _out_hw(m, h, w)

    def windows(oi, oj):
        for a in range(kh):
            for b in range(kw):
                i, j = oi * sh - ph + a * dh, oj * sw - pw + b * dw
                if 0 <= i < h and 0 <= j < w:
                    yield i, j

    return oh, ow, _windows_matrix(h, w, oh, ow, windows)


def _adaptive_matrix(m, h, w):
    oh, ow = _out_hw(m, h, w)

    def span(o, n, out):
        return range(int(np.floor(o * n / out)), int(np.ceil((o + 1) * n / out)))

    def windows(oi, oj):
        return ((i, j) for i in span(oi, h, oh) for j in span(oj, w, ow))

    return oh, ow, _windows_matrix(h, w, oh, ow, windows)


def brute_force(module, h, w):
    """``(oh, ow, M)`` with ``M[out, in]`` the number of paths between spatial positions."""
    if isinstance(module, nn.Conv2d):
        return _conv_matrix(module, h, w)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return _pool_matrix(module, h, w)
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return _adaptive_matrix(module, h, w)
    if isinstance(module, nn.Flatten):  # every position reaches the one sink
        return 1, 1, np.ones((1, h * w))
    if isinstance(
        module,
        (
            torchvision.models.resnet.BasicBlock,
            models.BasicBlock,
            torchvision.models.resnet.Bottleneck,
        ),
    ):
        convs = [module.conv1, module.conv2] + ([module.conv3] if hasattr(module, "conv3") else [])
        oh, ow, main = brute_force(nn.Sequential(*convs), h, w)
        short = (
            np.eye(h * w) if module.downsample is None else brute_force(module.downsample, h, w)[2]
        )
        return oh, ow, main + short
    if isinstance(module, torchvision.models.ResNet):
        seq = [
            module.conv1,
            module.maxpool,
            module.layer1,
            module.layer2,
            module.layer3,
            module.layer4,
            module.avgpool,
        ]
        return brute_force(nn.Sequential(*seq, nn.Flatten()), h, w)
    if isinstance(module, nn.Sequential):
        total = np.eye(h * w)
        for child in module:
            h, w, m = brute_force(child, h, w)
            total = m @ total
        return h, w, total
    return (
        h,
        w,
        np.eye(h * w),
    )  # ReLU, BatchNorm, Dropout, Identity, Normalize, Linear (after the sink)


def brute_force_count(model, h, w):
    _, _, m = brute_force(model, h, w)
    return torch.from_numpy(m.sum(0).reshape(h, w))


def seq(*layers):
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))


CASES = {
    "conv_zeros_stack": seq(*[nn.Conv2d(2, 2, 3, padding=1) for _ in range(3)]),
    "conv_valid": seq(nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3, padding="valid")),
    "conv_rect_same": seq(
        nn.Conv2d(2, 2, (2, 3), padding="same"), nn.Conv2d(2, 2, (4, 1), padding="same")
    ),
    "conv_stride_dilation_groups": seq(
        nn.Conv2d(2, 4, 3, stride=(2, 1), dilation=2, padding=2, groups=2),
        nn.Conv2d(4, 2, 5, stride=2, padding=(1, 2)),
    ),
    "conv_full": seq(nn.Conv2d(2, 2, 3, padding=2), nn.Conv2d(2, 2, 3, padding=2)),
    "maxpool": seq(nn.Conv2d(2, 2, 3, padding=1), nn.MaxPool2d(2), nn.MaxPool2d(3, 1, padding=1)),
    "maxpool_overlap_ceil_dilation": seq(
        nn.MaxPool2d(3, 2, padding=1),
        nn.MaxPool2d(2, 2, ceil_mode=True),
        nn.MaxPool2d(2, 1, dilation=2),
    ),
    "avgpool": seq(
        nn.AvgPool2d(3, 2, padding=1), nn.AvgPool2d(2, ceil_mode=True), nn.AvgPool2d((1, 2))
    ),
    "adaptive": nn.Sequential(
        nn.Conv2d(2, 2, 3, padding=1),
        nn.AdaptiveAvgPool2d((3, 2)),
        nn.AdaptiveMaxPool2d((2, None)),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, 3),
    ),
    "elementwise": nn.Sequential(
        models.Normalize((0.5, 0.5), (0.2, 0.3)),
        nn.Conv2d(2, 2, 3, padding=1),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Identity(),
        nn.Dropout2d(),
        nn.Flatten(),
        nn.Linear(2 * 11 * 9, 4),
        nn.ReLU(),
        nn.BatchNorm1d(4),
        nn.Linear(4, 2),
    ),
    "pilcro_blocks": seq(
        models.BasicBlock(2, 2), models.BasicBlock(2, 2, stride=2, padding_mode="reflect")
    ),
    "torchvision_blocks": nn.Sequential(
        torchvision.models.resnet.BasicBlock(2, 2),
        torchvision.models.resnet.Bottleneck(
            2, 1, downsample=nn.Sequential(nn.Conv2d(2, 4, 1, 2), nn.BatchNorm2d(4)), stride=2
        ),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ),
}
for mode in ("reflect", "replicate", "circular"):
    CASES[f"conv_{mode}"] = seq(
        nn.Conv2d(2, 2, 3, padding=1, padding_mode=mode),
        nn.Conv2d(2, 2, 5, padding=2, stride=2, padding_mode=mode),
        nn.Conv2d(2, 2, (2, 3), padding="same", padding_mode=mode),
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_path_count_equals_brute_force(name):
    n = paths.path_count(CASES[name], (2, 11, 9))
    assert n.dtype == torch.float64 and n.shape == (11, 9)
    assert n.min() >= 0 and n.sum() > 0
    assert torch.equal(n, brute_force_count(CASES[name], 11, 9))


def test_torchvision_resnet18_matches_brute_force():
    model = torchvision.models.resnet18()
    n = paths.path_count(model, (3, 16, 16))
    torch.testing.assert_close(n, brute_force_count(model, 16, 16), rtol=1e-12, atol=0)


def test_vgg_and_cifar_resnet_supported():
    vgg = torchvision.models.vgg11_bn()
    n = paths.path_count(vgg, (3, 32, 32))
    features = nn.Sequential(vgg.features, nn.Flatten())
    assert torch.equal(
        n, brute_force_count(features, 32, 32) * 49
    )  # 1x1 map copied to the 7x7 adaptive pool
    for mode in models.PADDING_MODES:
        assert paths.path_count(
            models.cifar_resnet18(padding_mode=mode, width=4), (3, 16, 16)
        ).shape == (16, 16)


def test_circular_padding_gives_constant_count():
    model = seq(*[nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular") for _ in range(5)])
    n = paths.path_count(model, (2, 12, 12))
    assert landscape.cv(landscape.normalize(n)).item() < 1e-12
    assert torch.all(n == 3.0**10)  # 9 windows per layer, 5 layers


def test_stride2_checkerboard_4_2_2_1():
    n = paths.path_count(seq(nn.Conv2d(2, 2, 3, stride=2, padding=1)), (2, 9, 9))
    interior = n[1:7, 1:7]
    assert torch.equal(interior[::2, ::2], torch.full((3, 3), 4.0, dtype=torch.float64))
    assert torch.equal(interior[1::2, ::2], torch.full((3, 3), 2.0, dtype=torch.float64))
    assert torch.equal(interior[::2, 1::2], torch.full((3, 3), 2.0, dtype=torch.float64))
    assert torch.equal(interior[1::2, 1::2], torch.ones(3, 3, dtype=torch.float64))


def test_uneven_padding_is_asymmetric():
    even = paths.path_count(seq(nn.Conv2d(2, 2, 3, stride=2, padding=1)), (2, 9, 9))
    odd = paths.path_count(seq(nn.Conv2d(2, 2, 3, stride=2, padding=1)), (2, 8, 8))
    assert torch.equal(even, even.flip(0).flip(1))  # (9 + 2 - 3) % 2 == 0: symmetric
    assert not torch.equal(odd, odd.flip(0).flip(1))  # (8 + 2 - 3) % 2 == 1: the last pad is unused


@pytest.mark.parametrize(
    "padding, mode",
    [(p, "zeros") for p in ("same", "valid", "full", 2)]
    + [(p, m) for p in ("same", 2) for m in ("reflect", "replicate", "circular")],
)
def test_stacked_convs_factorise_into_1d_profiles(padding, mode):
    pad = {"same": 1, "valid": 0, "full": 2}.get(padding, padding)
    model = seq(*[nn.Conv2d(2, 2, 3, padding=pad, padding_mode=mode) for _ in range(3)])
    n = paths.path_count(model, (2, 10, 10))
    p = paths.conv_profile_1d(10, 3, 3, padding=padding, padding_mode=mode)
    assert torch.equal(n, torch.outer(p, p))


def test_valid_closed_form_and_full_padding():
    for k, depth in [(3, 1), (3, 4), (5, 2), (2, 6)]:
        assert torch.equal(
            paths.valid_profile_closed_form(20, k, depth),
            paths.conv_profile_1d(20, k, depth, padding="valid"),
        )
    assert torch.all(paths.conv_profile_1d(7, 3, 4, padding="full") == 3.0**4)


def test_variance_weighting_is_proportional_for_plain_chains():
    model = seq(
        nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)
    )
    a = landscape.normalize(paths.path_count(model, (2, 8, 8)))
    b = landscape.normalize(paths.path_count(model, (2, 8, 8), weighting="variance"))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_variance_weighting_of_a_fixed_blur_filter():
    blur = nn.Conv2d(2, 2, 3, padding=1, groups=2, bias=False)
    taps = torch.tensor([1.0, 2.0, 1.0])
    blur.weight.data[:] = torch.outer(taps, taps) / 16
    blur.weight.requires_grad_(False)
    n = paths.path_count(seq(blur), (2, 5, 5), weighting="variance")
    # each input pixel: sum of squared taps of the windows that read it
    squared = (torch.outer(taps, taps) / 16).double().pow(2)
    expected = torch.zeros(5, 5, dtype=torch.float64)
    for oi in range(5):
        for oj in range(5):
            for a in range(3):
                for b in range(3):
                    i, j = oi - 1 + a, oj - 1 + b
                    if 0 <= i < 5 and 0 <= j < 5:
                        expected[i, j] += squared[a, b]
    torch.testing.assert_close(
        n, expected / 25**2, rtol=1e-12, atol=0
    )  # global average pool: 1 / 25^2


def _linear_net(mode="zeros"):
    return nn.Sequential(
        *[nn.Conv2d(c, 8, 3, padding=1, padding_mode=mode, bias=False) for c in (1, 8, 8, 8)],
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


def test_monte_carlo_squared_gradient_matches_path_count():
    result = paths.compare_with_monte_carlo(_linear_net, (1, 12, 12), n_inits=150, n_inputs=1)
    mc = landscape.monte_carlo_landscape(_linear_net, (1, 12, 12), n_inits=150, n_inputs=1)
    assert torch.equal(result.maps["Monte Carlo"], mc)
    analytic = landscape.normalize(paths.path_count(_linear_net(), (1, 12, 12)))
    torch.testing.assert_close(result.maps["path count"], analytic)
    torch.testing.assert_close(
        result.maps["second moment"], analytic
    )  # zero padding: no weight reuse
    assert (
        result.r["path count"] == landscape.pearson(analytic, mc) and result.r["path count"] >= 0.98
    )
    assert (
        "second moment"
        not in paths.compare_with_monte_carlo(
            _linear_net, (1, 12, 12), n_inits=2, second_moment=False
        ).maps
    )


def test_monte_carlo_linear_residual_net_matches_variance_weighting():
    def build():
        blocks = [models.BasicBlock(8, 8), models.BasicBlock(8, 8, stride=2)]
        for block in blocks:
            block.relu = (
                nn.Identity()
            )  # a linear net: the derivation is exact up to Monte-Carlo error
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False),
            *blocks,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 4),
        )

    # eval mode: the variance weighting reads BatchNorm's running statistics (identity at init)
    mc = landscape.monte_carlo_landscape(build, (1, 10, 10), n_inits=300, n_inputs=1, mode="eval")
    variance = paths.path_count(build(), (1, 10, 10), weighting="variance")
    count = paths.path_count(build(), (1, 10, 10))
    assert landscape.pearson(mc, variance) >= 0.95
    # the pure count over-weights the deep branch; the variance weighting fits better
    assert landscape.pearson(mc, variance) > landscape.pearson(mc, count)


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match=r"GELU.*supported: Conv2d"):
        paths.path_count(nn.Sequential(nn.Conv2d(1, 1, 3), nn.GELU()), (1, 8, 8))
    with pytest.raises(TypeError, match="DenseNet"):
        paths.path_count(torchvision.models.densenet121(), (3, 32, 32))
    with pytest.raises(ValueError, match="input_size is too small"):
        paths.path_count(seq(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)), (1, 4, 4))
    with pytest.raises(ValueError, match="input_size is too small"):
        paths.path_count(seq(nn.Conv2d(1, 2, 3, padding=3, padding_mode="reflect")), (1, 3, 3))
    with pytest.raises(ValueError, match="input_size is too small"):
        paths.path_count(seq(nn.MaxPool2d(5)), (1, 4, 4))
    with pytest.raises(ValueError, match="input_size"):
        paths.path_count(seq(nn.Conv2d(1, 2, 3)), (8, 8))
    with pytest.raises(ValueError, match="input_size have 3 channels"):
        paths.path_count(seq(nn.Conv2d(1, 2, 3)), (3, 8, 8))
    with pytest.raises(ValueError, match="weighting"):
        paths.path_count(seq(nn.Conv2d(1, 2, 3)), (1, 8, 8), weighting="sum")
    with pytest.raises(ValueError, match="padding"):
        paths.conv_profile_1d(8, 4, 2, padding="same")
    with pytest.raises(ValueError, match="too small"):
        paths.valid_profile_closed_form(4, 3, 2)


def test_second_moment_equals_path_count_without_weight_reuse():
    model = seq(
        nn.Conv2d(2, 2, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(2, 2, 3, stride=2, padding=1),
        nn.AvgPool2d(2),
    )
    torch.testing.assert_close(
        landscape.normalize(paths.second_moment(model, (2, 12, 12))),
        landscape.normalize(paths.path_count(model, (2, 12, 12))),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "zeros"])
def test_second_moment_of_one_conv_counts_reused_taps(mode):
    # one conv, global average pooling: g_u = const * sum_k w_k c_k(u), c_k(u) = outputs reading u
    # through tap k, so E[g_u^2] = const * sum_k c_k(u)^2 (the path count would be sum_k c_k(u))
    model = seq(nn.Conv2d(2, 2, 3, padding=1, padding_mode=mode))
    h, w = 6, 5
    c = np.zeros((9, h, w))
    for oi in range(h):
        for oj in range(w):
            for a in range(3):
                for b in range(3):
                    i, j = _source(oi - 1 + a, h, mode), _source(oj - 1 + b, w, mode)
                    if i is not None and j is not None:
                        c[a * 3 + b, i, j] += 1
    expected = torch.from_numpy((c**2).sum(0))
    torch.testing.assert_close(
        landscape.normalize(paths.second_moment(model, (2, h, w))), landscape.normalize(expected)
    )


def test_second_moment_matches_monte_carlo_where_path_count_fails():
    build = lambda: _linear_net("reflect")  # noqa: E731
    mc = landscape.monte_carlo_landscape(build, (1, 10, 10), n_inits=200, n_inputs=1)
    assert landscape.pearson(mc, paths.second_moment(build(), (1, 10, 10))) >= 0.97
    assert landscape.pearson(mc, paths.path_count(build(), (1, 10, 10))) < 0.9


def test_second_moment_errors():
    with pytest.raises(ValueError, match="more than 4096 pixels"):
        paths.second_moment(seq(nn.Conv2d(1, 2, 3)), (1, 65, 64))
    with pytest.raises(TypeError, match="GELU"):
        paths.second_moment(nn.Sequential(nn.Conv2d(1, 1, 3), nn.GELU()), (1, 8, 8))
    with pytest.raises(ValueError, match="input_size is too small"):
        paths.second_moment(seq(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)), (1, 4, 4))


def test_toy_net_layout():
    net = paths.toy_net(
        2, width=4, padding_mode="circular", relu=True, batchnorm=True, pool=lambda: nn.AvgPool2d(2)
    )
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "AvgPool2d"] * 2 + [
        "AdaptiveAvgPool2d",
        "Flatten",
        "Linear",
    ]
    assert net[0].padding_mode == "circular" and net[0].bias is None
    assert net(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    with pytest.raises(ValueError, match="depth"):
        paths.toy_net(0)


def test_blur_pool_is_a_fixed_binomial_filter():
    blur = paths.blur_pool(3)
    assert not blur.weight.requires_grad
    x = torch.rand(2, 3, 8, 8)
    y = blur(x)
    assert y.shape == (2, 3, 4, 4)
    manual = sum(
        torch.tensor([1.0, 2.0, 1.0])[a]
        * torch.tensor([1.0, 2.0, 1.0])[b]
        / 16
        * torch.nn.functional.pad(x, (1, 1, 1, 1))[..., a : a + 8 : 2, b : b + 8 : 2]
        for a in range(3)
        for b in range(3)
    )
    torch.testing.assert_close(y, manual)
    # a blur is deterministic, so its taps' cross terms stay: with one blur and global average
    # pooling, E[g_u^2] is proportional to (sum of the taps that read u)^2
    taps = torch.outer(torch.tensor([1.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])).double() / 16
    reads = torch.zeros(8, 8, dtype=torch.float64)
    for oi in range(4):
        for oj in range(4):
            for a in range(3):
                for b in range(3):
                    i, j = 2 * oi - 1 + a, 2 * oj - 1 + b
                    if 0 <= i < 8 and 0 <= j < 8:
                        reads[i, j] += taps[a, b]
    torch.testing.assert_close(
        landscape.normalize(paths.second_moment(seq(paths.blur_pool(2)), (2, 8, 8))),
        landscape.normalize(reads**2),
    )


class _SkipFirst(nn.Sequential):
    """A Sequential whose forward skips its first layer: walking its children in order is wrong."""

    def forward(self, x):
        for layer in list(self)[1:]:
            x = layer(x)
        return x


class _Reversed(nn.Sequential):
    def forward(self, x):
        for layer in reversed(self):
            x = layer(x)
        return x


class _StridedConv(nn.Conv2d):
    """A conv that reads every other row and column first: a stride the skeleton would not see."""

    def forward(self, x):
        return super().forward(x[..., ::2, ::2])


class _Plain(nn.Sequential):
    """A Sequential subclass that keeps Sequential's forward."""


class _ResNetWithoutMaxpool(torchvision.models.ResNet):
    def _forward_impl(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _skip_net():
    return _SkipFirst(
        nn.Conv2d(2, 2, 5, padding=2),
        nn.Conv2d(2, 2, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 3),
    )


@pytest.mark.parametrize(
    "build, where, base",
    [
        (_skip_net, "model is a _SkipFirst", "Sequential"),
        (
            lambda: _Reversed(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)),
            "model is a _Reversed",
            "Sequential",
        ),
        (
            lambda: seq(nn.Conv2d(2, 2, 3, padding=1), _StridedConv(2, 2, 3, padding=1)),
            "model.1 is a _StridedConv",
            "Conv2d",
        ),
        (
            lambda: seq(nn.Sequential(nn.ReLU(), _SkipFirst(nn.Conv2d(2, 2, 3), nn.ReLU()))),
            "model.0.1 is a _SkipFirst",
            "Sequential",
        ),
    ],
)
@pytest.mark.parametrize("analytic", [paths.path_count, paths.second_moment])
def test_a_redefined_forward_is_refused_not_miscounted(build, where, base, analytic):
    model = build()
    with pytest.raises(
        TypeError,
        match=rf"^model must .*{where}, a subclass of {base} that redefines forward: "
        rf"{analytic.__name__} follows .*supported: Conv2d.*Sequential",
    ):
        analytic(model, (2, 8, 8))


def test_a_resnet_with_its_own_forward_impl_is_refused():
    model = _ResNetWithoutMaxpool(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=3)
    with pytest.raises(
        TypeError,
        match=r"model is a _ResNetWithoutMaxpool, a subclass of ResNet that redefines "
        r"_forward_impl",
    ):
        paths.path_count(model, (3, 16, 16))


def test_subclasses_that_keep_their_forward_are_counted():
    layers = [nn.Conv2d(2, 2, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=1)]
    plain = paths.path_count(seq(*layers), (2, 10, 10))
    assert torch.equal(paths.path_count(_Plain(*seq(*layers)), (2, 10, 10)), plain)
    torch.testing.assert_close(
        paths.second_moment(_Plain(*seq(*layers)), (2, 10, 10)),
        paths.second_moment(seq(*layers), (2, 10, 10)),
    )
