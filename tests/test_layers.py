"""Tests of pilcro_lib.layers against independent references: nn.Conv2d, a naive loop over
output positions, closed-form parameter and FLOP counts, gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pilcro_lib.layers import (
    COMBINE_COST,
    COMBINING_MODES,
    KERNEL_ROUTE_SLOWDOWN,
    NORMALIZATIONS,
    CoordConv2d,
    InputCombiningHead,
    LocallyConnected2d,
    LowRankLocallyConnected2d,
    same_padding,
)
from pilcro_lib.models import count_parameters

SHARED_MODES = ("row_col", "free", "row", "col")

NUMPY_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _randomize(layer: nn.Module, seed: int = 0, *, keep_weight: bool = False) -> nn.Module:
    """Give every parameter (but ``weight`` if ``keep_weight``) standard normal values, so biases
    and logits are not at their constant initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if not (keep_weight and name == "weight"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return layer


def _conv_reference(x, weight, bias, *, stride=1, padding=0, padding_mode="zeros"):
    """nn.Conv2d with the given weight/bias: the independent reference for a shared kernel."""
    f, c, kh, kw = weight.shape
    conv = nn.Conv2d(
        c,
        f,
        (kh, kw),
        stride=stride,
        padding=padding,
        padding_mode=padding_mode,
        bias=bias is not None,
    )
    conv = conv.to(weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv(x)


def _naive_lc(x, kernel, bias, stride, padding, padding_mode):
    """Locally connected layer as a python loop over output positions (numpy padding)."""
    xn = x.detach().numpy()
    pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    xp = np.pad(xn, pad, mode=NUMPY_PAD[padding_mode])
    h_out, w_out, f, c, kh, kw = kernel.shape
    k = kernel.detach().numpy()
    out = np.zeros((x.shape[0], f, h_out, w_out))
    for i in range(h_out):
        for j in range(w_out):
            patch = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = (
                np.einsum("ncab,fcab->nf", patch, k[i, j]) + bias.detach().numpy()[:, i, j]
            )
    return torch.from_numpy(out)


# ---------------------------------------------------------------- locally connected


@pytest.mark.parametrize(
    ("stride", "padding", "padding_mode"),
    [
        (1, 0, "zeros"),
        (2, 1, "zeros"),
        (1, 2, "reflect"),
        (2, 1, "replicate"),
        (1, 1, "circular"),
        (3, 2, "zeros"),
    ],
)
def test_lc_matches_naive_loop(stride, padding, padding_mode):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    lc = _randomize(
        LocallyConnected2d(
            3, 4, (3, 2), (7, 6), stride=stride, padding=padding, padding_mode=padding_mode
        ).double()
    )
    ref = _naive_lc(x, lc.kernel(), lc.bias, stride, padding, padding_mode)
    out = lc(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_lc_with_identical_kernels_is_a_conv():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 9, 9)
    lc = LocallyConnected2d(3, 5, 3, 9, padding=1)
    w, b = torch.randn(5, 3, 3, 3), torch.randn(5)
    lc.load_kernel(w.expand(9, 9, 5, 3, 3, 3), b[:, None, None].expand(5, 9, 9))
    torch.testing.assert_close(lc(x), _conv_reference(x, w, b, padding=1), rtol=1e-5, atol=1e-5)


def test_lc_same_padding_keeps_size():
    lc = LocallyConnected2d(2, 3, 4, (6, 5), padding="same")
    assert lc(torch.randn(1, 2, 6, 5)).shape == (1, 3, 6, 5)


def test_lc_zero_padding_taps_are_absent():
    """On a 4x4 input with 'same' 3x3 zero padding, a corner position sees 4 real pixels, an edge
    one 6 and an inner one 9: 4*4 + 8*6 + 4*9 = 100 taps per channel pair, not 16*9 = 144."""
    lc = LocallyConnected2d(2, 3, 3, 4, padding="same")
    assert count_parameters(lc) == 100 * 2 * 3 + 3 * 4 * 4
    kernel = lc.kernel()  # [H_out, W_out, F, C, kh, kw]
    assert (kernel[0, 0, :, :, 0, :] == 0).all() and (kernel[0, 0, :, :, :, 0] == 0).all()
    assert (kernel[0, 0, :, :, 1:, 1:] != 0).all() and (kernel[1, 2] != 0).all()
    # the taps that remain are those that see the input: the same numbers as a full kernel
    torch.manual_seed(15)
    full = torch.randn(4, 4, 3, 2, 3, 3)
    lc.load_kernel(full)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    ref = _naive_lc(x, full.double(), torch.zeros(3, 4, 4, dtype=torch.float64), 1, 1, "zeros")
    torch.testing.assert_close(lc.double()(x), ref)
    # other padding modes put real pixels on every tap: none is absent
    assert (
        count_parameters(LocallyConnected2d(2, 3, 3, 4, padding="same", padding_mode="reflect"))
        == 144 * 2 * 3 + 3 * 4 * 4
    )


# ---------------------------------------------------------------- padding


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (28, 3, 2, (0, 1)),
        (7, 4, 2, (1, 2)),
        (28, 3, 1, (1, 1)),
        (6, 4, 1, (1, 2)),
        (5, 1, 2, (0, 0)),
    ],
)
def test_same_padding_is_tensorflows(size, kernel, stride, expected):
    """TensorFlow's SAME: ceil(n/s) outputs; total max((ceil(n/s)-1)*s + k - n, 0), the odd pixel
    after. n=28, k=3, s=2: 13*2 + 3 - 28 = 1 -> (0, 1); n=7, k=4, s=2: 3*2 + 4 - 7 = 3 -> (1, 2)."""
    assert same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("layer_type", ["lc", "lrlc", "coordconv"])
def test_same_padding_with_stride(layer_type):
    """'same' with stride 2 on 7x7 with a 4x4 kernel: pad (1, 2) per axis, 4x4 outputs, as a
    conv of the explicitly padded input."""
    torch.manual_seed(16)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    padded = torch.nn.functional.pad(x, (1, 2, 1, 2))
    if layer_type == "coordconv":
        layer = CoordConv2d(3, 4, 4, stride=2, padding="same").double()
        coords = torch.stack(
            torch.meshgrid(torch.linspace(-1, 1, 7), torch.linspace(-1, 1, 7), indexing="ij")
        ).double()
        padded = torch.nn.functional.pad(torch.cat([x, coords.expand(2, 2, 7, 7)], 1), (1, 2, 1, 2))
        ref = _conv_reference(padded, layer.conv.weight, layer.conv.bias, stride=2)
    elif layer_type == "lrlc":
        layer = LowRankLocallyConnected2d(
            3, 4, 4, 7, 1, stride=2, padding="same", spatial_bias=False
        ).double()
        ref = _conv_reference(padded, layer.bases()[0], layer.bias, stride=2)
    else:
        layer = LocallyConnected2d(3, 4, 4, 7, stride=2, padding="same").double()
        ref = _naive_lc(padded, layer.kernel(), layer.bias, 2, 0, "zeros")
    out = layer(x)
    assert out.shape == (2, 4, 4, 4)
    torch.testing.assert_close(out, ref)


# ---------------------------------------------------------------- low-rank identities


@pytest.mark.parametrize("normalize", ["softmax", "l2"])
@pytest.mark.parametrize("combining", SHARED_MODES)
def test_rank1_lrlc_is_conv_with_its_bank(combining, normalize):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 8, 8)
    layer = LowRankLocallyConnected2d(
        3,
        4,
        3,
        8,
        1,
        padding=1,
        padding_mode="reflect",
        combining=combining,
        normalize=normalize,
        spatial_bias=False,
    )
    _randomize(layer)
    if normalize == "l2":  # a positive logit normalises to weight 1 at rank 1
        for p in (layer.row_logits, layer.col_logits, layer.logits):
            if p is not None:
                p.data.abs_()
    ref = _conv_reference(x, layer.bases()[0], layer.bias, padding=1, padding_mode="reflect")
    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize("rank", [1, 2, 5])
@pytest.mark.parametrize("combining", COMBINING_MODES)
def test_initial_lrlc_is_conv_with_scaled_mean_bank(rank, combining, normalize):
    """softmax starts at the mean bank; l2 and none at sqrt(K) times it (weights 1/sqrt(K));
    the input-dependent layer too with combining_init='zeros'."""
    torch.manual_seed(3)
    x = torch.randn(2, 3, 10, 9)
    init = dict(combining_init="zeros") if combining == "input" else {}
    layer = LowRankLocallyConnected2d(
        3, 4, 3, (10, 9), rank, stride=2, combining=combining, normalize=normalize, **init
    )
    scale = 1.0 if normalize == "softmax" else math.sqrt(rank)
    ref = _conv_reference(x, scale * layer.bases().mean(0), layer.bias, stride=2)
    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)


def test_uniform_weights_any_logits_constant_over_k():
    """Logits that vary over positions but not over k still give the mean bank under softmax."""
    torch.manual_seed(4)
    x = torch.randn(3, 2, 7, 7)
    layer = LowRankLocallyConnected2d(2, 3, 3, 7, 4, spatial_bias=False)
    with torch.no_grad():
        layer.row_logits.copy_(torch.randn(5, 1).expand(5, 4))
        layer.col_logits.copy_(torch.randn(5, 1).expand(5, 4))
        layer.bias.normal_()
    torch.testing.assert_close(
        layer(x), _conv_reference(x, layer.bases().mean(0), layer.bias), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("combining", SHARED_MODES)
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_initial_logits_are_the_authors(combining, normalize):
    """Every logit 1/sqrt(K) (K=4: 0.5; row_col: 0.25 in each of row and column): unit-norm
    logits, so l2 starts with logit gradients of the authors' scale; weights 1/K under softmax,
    1/sqrt(K) = 0.5 under l2 and none."""
    layer = LowRankLocallyConnected2d(2, 3, 3, 6, 4, combining=combining, normalize=normalize)
    logits = layer._shared_logits()
    torch.testing.assert_close(logits, torch.full((4, 4, 4), 0.5))
    torch.testing.assert_close(logits.norm(dim=-1), torch.ones(4, 4))
    if combining == "row_col":
        torch.testing.assert_close(layer.row_logits, torch.full((4, 4), 0.25))
    alpha = layer.combining_weights()
    torch.testing.assert_close(
        alpha, torch.full_like(alpha, 0.25 if normalize == "softmax" else 0.5)
    )


@pytest.mark.parametrize(
    ("combining", "normalize", "stride", "padding", "padding_mode"),
    [
        ("row_col", "softmax", 1, 0, "zeros"),
        ("row_col", "l2", 2, 1, "replicate"),
        ("free", "none", 1, 1, "circular"),
        ("row", "softmax", 1, 2, "reflect"),
        ("col", "l2", 2, 0, "zeros"),
        ("free", "softmax", 1, "same", "zeros"),
    ],
)
def test_lrlc_equals_lc_with_equivalent_kernel(combining, normalize, stride, padding, padding_mode):
    torch.manual_seed(5)
    x = torch.randn(3, 4, 9, 8)
    kwargs = dict(stride=stride, padding=padding, padding_mode=padding_mode)
    lrlc = LowRankLocallyConnected2d(
        4, 5, 3, (9, 8), 3, combining=combining, normalize=normalize, **kwargs
    )
    _randomize(lrlc, keep_weight=True)
    lc = LocallyConnected2d(4, 5, 3, (9, 8), **kwargs)
    with torch.no_grad():
        lc.load_kernel(lrlc.equivalent_kernel(), lrlc.equivalent_bias())
    assert (lrlc(x) - lc(x)).abs().max() < 1e-5


def test_input_dependent_lrlc_equals_per_example_lc():
    torch.manual_seed(6)
    x = torch.randn(3, 2, 12, 12)
    lrlc = _randomize(
        LowRankLocallyConnected2d(2, 4, 3, 12, 3, combining="input"), keep_weight=True
    )
    kernels = lrlc.equivalent_kernel(x)
    assert kernels.shape == (3, 10, 10, 4, 2, 3, 3)
    out = lrlc(x)
    lc = LocallyConnected2d(2, 4, 3, 12)
    for n in range(3):
        with torch.no_grad():
            lc.load_kernel(kernels[n], lrlc.equivalent_bias())
        assert (out[n : n + 1] - lc(x[n : n + 1])).abs().max() < 1e-5
    # the weights really depend on the input
    assert (kernels[0] - kernels[1]).abs().max() > 1e-3


@pytest.mark.parametrize("spatial_bias", [True, False])
def test_row_col_equals_free_with_softmax_of_sum(spatial_bias):
    torch.manual_seed(7)
    x = torch.randn(2, 3, 8, 7)
    rc = _randomize(LowRankLocallyConnected2d(3, 4, 3, (8, 7), 3, spatial_bias=spatial_bias))
    free = LowRankLocallyConnected2d(
        3, 4, 3, (8, 7), 3, combining="free", normalize="none", spatial_bias=spatial_bias
    )
    with torch.no_grad():
        free.weight.copy_(rc.weight)
        free.bias.copy_(rc.bias)
        free.logits.copy_(
            torch.softmax(rc.row_logits[:, None, :] + rc.col_logits[None, :, :], dim=-1)
        )
        if spatial_bias:
            free.spatial_bias.copy_(rc.row_bias[:, None] + rc.col_bias[None, :])
    torch.testing.assert_close(rc(x), free(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("combining", SHARED_MODES)
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_combining_weights_normalised_and_structured(combining, normalize):
    layer = _randomize(
        LowRankLocallyConnected2d(2, 3, 3, (7, 6), 4, combining=combining, normalize=normalize)
    )
    alpha = layer.combining_weights()
    assert alpha.shape == (5, 4, 4)
    if normalize == "softmax":
        torch.testing.assert_close(alpha.sum(-1), torch.ones(5, 4))
    if normalize == "l2":
        torch.testing.assert_close(alpha.norm(dim=-1), torch.ones(5, 4))
    if combining == "row":
        torch.testing.assert_close(alpha, alpha[:, :1].expand_as(alpha))
    if combining == "col":
        torch.testing.assert_close(alpha, alpha[:1].expand_as(alpha))


def test_input_head_skips_dilations_that_do_not_fit():
    small = LowRankLocallyConnected2d(2, 3, 3, 8, 2, combining="input")
    large = LowRankLocallyConnected2d(2, 3, 3, 17, 2, combining="input")
    assert [m.dilation for m in small.head.dilated] == [(1, 1), (2, 2)]
    assert [m.dilation for m in large.head.dilated] == [(1, 1), (2, 2), (4, 4), (8, 8)]


def test_input_head_dilated_convs_are_valid():
    """Unpadded: at dilation d a 17x17 map gives (17 - 2d) x (17 - 2d)."""
    head = InputCombiningHead(2, 3, (17, 17), (15, 15))
    a = torch.randn(1, 3, 17, 17)
    assert [tuple(conv(a).shape[-2:]) for conv in head.dilated] == [
        (15, 15),
        (13, 13),
        (9, 9),
        (1, 1),
    ]


@pytest.mark.parametrize(
    ("resize", "size", "expected"),
    [
        ("aligned", 3, [[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]]),
        ("aligned", 4, [[0.0, 1 / 3, 2 / 3, 1.0]]),
        ("half_pixel", 4, [[0.0, 0.25, 0.75, 1.0]]),
    ],
)
def test_input_head_resize(resize, size, expected):
    """2x2 [[0, 1], [2, 3]] to 3x3 with aligned corners: corners kept, midpoints averaged. Rows of
    [0, 1] to 4: aligned samples at 0, 1/3, 2/3, 1; half-pixel at -1/4 (clamped), 1/4, 3/4, 5/4
    (clamped)."""
    head = InputCombiningHead(1, 1, (8, 8), (size, size), resize=resize)
    out = head._resize(torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]]))
    expected = torch.tensor(expected)
    torch.testing.assert_close(out[0, 0, : expected.shape[0]], expected)


def test_input_head_is_the_authors_recipe():
    """The head against the recipe written out with functional ops: 1x1 conv, its mean, valid
    dilated depthwise convs, aligned-corner resizes, concat in that order, the three 1x1 convs."""
    torch.manual_seed(17)
    head = InputCombiningHead(3, 2, (11, 10), (7, 6))
    x = torch.randn(2, 3, 11, 10)
    fn = torch.nn.functional
    a = fn.conv2d(x, head.reduce.weight, head.reduce.bias)
    parts = [a, a.mean((2, 3), keepdim=True)]
    parts += [
        fn.conv2d(a, c.weight, c.bias, dilation=d, groups=2)
        for c, d in zip(head.dilated, (1, 2, 4))
    ]
    feats = torch.cat(
        [fn.interpolate(p, size=(7, 6), mode="bilinear", align_corners=True) for p in parts], 1
    )
    m = head.mlp
    ref = fn.conv2d(
        torch.sigmoid(
            fn.conv2d(torch.relu(fn.conv2d(feats, m[0].weight, m[0].bias)), m[2].weight, m[2].bias)
        ),
        m[4].weight,
        m[4].bias,
    )
    torch.testing.assert_close(head(x), ref)


def test_input_combining_init():
    """default: the last 1x1 conv keeps PyTorch's default init (weights and biases uniform within
    1/sqrt(fan_in) = 1/sqrt(6K)), so the weights start non-uniform; zeros: constant logits
    1/sqrt(K)."""
    torch.manual_seed(18)
    k = 4
    x = torch.randn(3, 8, 12, 12)
    default = LowRankLocallyConnected2d(8, 16, 3, 12, k, combining="input")
    last = default.head.mlp[-1]
    bound = 1 / math.sqrt(6 * k)
    assert 0 < last.weight.abs().max() <= bound and last.bias.abs().max() <= bound
    assert abs(last.weight.std().item() - bound / math.sqrt(3)) < 0.2 * bound
    alpha = default.combining_weights(x)  # [N, H_out, W_out, K]
    assert (alpha - 1 / k).abs().max() > 1e-3
    assert (alpha[0] - alpha[1]).abs().max() > 1e-4 and (
        alpha[:, 0, 0] - alpha[:, 5, 5]
    ).abs().max() > 1e-4
    zeros = LowRankLocallyConnected2d(8, 16, 3, 12, k, combining="input", combining_init="zeros")
    assert (zeros.head.mlp[-1].weight == 0).all()
    torch.testing.assert_close(zeros.head.mlp[-1].bias, torch.full((k,), 0.5))
    torch.testing.assert_close(zeros.combining_weights(x), torch.full((3, 10, 10, k), 1 / k))


# ---------------------------------------------------------------- parameter counts and FLOPs


def _head_params(c: int, k: int, n_dil: int) -> int:
    features = k * (2 + n_dil)
    return (
        (c * k + k)
        + n_dil * (9 * k + k)
        + (features * 3 * k + 3 * k)
        + (18 * k * k + 6 * k)
        + (6 * k * k + k)
    )


@pytest.mark.parametrize("bias", [True, False])
def test_parameter_counts(bias):
    c, f, k, h, w = 5, 7, 3, 12, 10  # 3x3 valid -> 10 x 8 outputs
    ho, wo = 10, 8
    base = k * f * c * 9 + (f if bias else 0)
    expected = {
        "row_col": base + k * (ho + wo) + (ho + wo),
        "free": base + k * ho * wo + ho * wo,
        "row": base + k * ho + ho,
        "col": base + k * wo + wo,
        "input": base
        + _head_params(c, k, 3)
        + ho * wo,  # dilations 1, 2, 4 fit a 10-wide input, 8 does not
    }
    for mode, count in expected.items():
        layer = LowRankLocallyConnected2d(c, f, 3, (h, w), k, combining=mode, bias=bias)
        assert count_parameters(layer) == count, mode
    no_spatial = LowRankLocallyConnected2d(c, f, 3, (h, w), k, spatial_bias=False, bias=bias)
    assert count_parameters(no_spatial) == base + k * (ho + wo)
    assert count_parameters(LocallyConnected2d(c, f, 3, (h, w), bias=bias)) == ho * wo * f * (
        c * 9 + (1 if bias else 0)
    )
    assert count_parameters(CoordConv2d(c, f, 3, bias=bias)) == (c + 2) * f * 9 + (f if bias else 0)


def test_reference_lc_size():
    """A 32x32 -> 32x32, 64 -> 64, 3x3 LC layer has 37.7M weights counting every tap, 36.2M
    without those on the zero padding (94 taps per axis: 2 at each border position, 3 inside)."""
    lc = LocallyConnected2d(64, 64, 3, 32, padding="same", bias=False)
    assert 32 * 32 * 64 * 64 * 9 == 37_748_736
    assert count_parameters(lc) == 94 * 94 * 64 * 64 == 36_192_256


def test_he_uniform_bases():
    torch.manual_seed(8)
    layer = LowRankLocallyConnected2d(16, 32, 3, 8, 4)
    bound = math.sqrt(6 / (16 * 9))
    assert layer.weight.abs().max() <= bound
    assert abs(layer.weight.std().item() - bound / math.sqrt(3)) < 0.03 * bound
    assert all(p.abs().sum() == 0 for p in (layer.row_bias, layer.col_bias, layer.bias))


# ---------------------------------------------------------------- CoordConv


def test_coordconv_is_conv_on_coordinate_channels():
    torch.manual_seed(9)
    x = torch.randn(2, 3, 5, 4)
    layer = CoordConv2d(3, 6, 3, padding=1)
    rows, cols = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 4), indexing="ij")
    coords = torch.tensor(np.stack([rows, cols]), dtype=torch.float32).expand(2, 2, 5, 4)
    ref = _conv_reference(torch.cat([x, coords], 1), layer.conv.weight, layer.conv.bias, padding=1)
    torch.testing.assert_close(layer(x), ref)


# ---------------------------------------------------------------- gradients


def test_gradcheck_lc():
    torch.manual_seed(10)
    lc = _randomize(
        LocallyConnected2d(
            2, 3, 2, (4, 5), stride=(1, 2), padding=1, padding_mode="reflect"
        ).double()
    )
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda inp, wt, b: torch.func.functional_call(lc, {"weight": wt, "bias": b}, (inp,)),
        (x, lc.weight, lc.bias),
    )


@pytest.mark.parametrize(
    ("combining", "route"),
    [(mode, "conv") for mode in COMBINING_MODES] + [(mode, "kernel") for mode in SHARED_MODES],
)
def test_gradcheck_lrlc(combining, route):
    torch.manual_seed(11)
    layer = LowRankLocallyConnected2d(
        2,
        3,
        3,
        6,
        2,
        stride=(1, 2),
        padding=1,
        padding_mode="reflect",
        combining=combining,
        route=route,
    )
    layer = _randomize(layer.double())
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    names, params = zip(*layer.named_parameters())

    def fn(inp, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (inp,))

    assert torch.autograd.gradcheck(fn, (x, *params))


@pytest.mark.parametrize(
    ("combining", "normalize", "stride", "padding", "padding_mode"),
    [
        ("row_col", "softmax", 1, 0, "zeros"),
        ("free", "l2", 2, "same", "zeros"),
        ("row", "none", 1, 1, "circular"),
        ("col", "softmax", (2, 1), 2, "reflect"),
    ],
)
def test_routes_agree(combining, normalize, stride, padding, padding_mode):
    """The kernel route (per-position kernels, then one LC pass) gives the conv route's outputs
    and gradients in float32 on a batch of 16 at rank 6."""
    torch.manual_seed(19)
    kwargs = dict(
        stride=stride,
        padding=padding,
        padding_mode=padding_mode,
        combining=combining,
        normalize=normalize,
    )
    conv = _randomize(
        LowRankLocallyConnected2d(8, 12, 3, (15, 13), 6, route="conv", **kwargs), keep_weight=True
    )
    kernel = LowRankLocallyConnected2d(8, 12, 3, (15, 13), 6, route="kernel", **kwargs)
    kernel.load_state_dict(conv.state_dict())
    x = torch.randn(16, 8, 15, 13)
    outs, grads = [], []
    for layer in (conv, kernel):
        inp = x.clone().requires_grad_()
        out = layer(inp)
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
        outs.append(out)
        grads.append([inp.grad] + [p.grad for p in layer.parameters()])
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for g_kernel, g_conv in zip(
        grads[1], grads[0]
    ):  # sums of up to N*H_out*W_out terms: error relative to the largest
        assert (g_kernel - g_conv).abs().max() <= 1e-5 * g_conv.abs().max()


def test_route_rule():
    """Kernel route when 5 * (N + K) * D < K * N * (D + 64), D = C*kh*kw; input-dependent: always
    conv. D = 576, N = 32: K = 5 gives 106560 > 102400 (conv), K = 6 gives 109440 < 122880 (kernel).
    D = 9, N = 32, K = 1: 1485 < 2336 (kernel); N = 1, K = 1: 90 > 73 (conv)."""

    def route(channels, rank, batch, **kwargs):
        return LowRankLocallyConnected2d(channels, 3, 3, 8, rank, **kwargs).route_for(batch)

    assert (KERNEL_ROUTE_SLOWDOWN, COMBINE_COST) == (5.0, 64.0)
    assert [route(64, k, 32) for k in (1, 2, 4, 5, 6, 8, 16)] == ["conv"] * 4 + ["kernel"] * 3
    assert route(1, 1, 32) == "kernel" and route(1, 1, 1) == "conv"
    assert route(64, 16, 1) == "conv" and route(64, 16, 32, combining="input") == "conv"
    assert route(64, 16, 32, route="conv") == "conv" and route(64, 1, 1, route="kernel") == "kernel"


@pytest.mark.parametrize("route", ["conv", "kernel"])
def test_routes_under_autocast_and_channels_last(route):
    """bf16 autocast and channels_last inputs give the float32 result to bf16 precision."""
    torch.manual_seed(20)
    layer = _randomize(
        LowRankLocallyConnected2d(8, 12, 3, 10, 4, padding=1, route=route), keep_weight=True
    )
    x = torch.randn(4, 8, 10, 10)
    ref = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer(x.contiguous(memory_format=torch.channels_last))
    assert 0 < (low.float() - ref).abs().max() < 0.03 * ref.abs().max()
    torch.testing.assert_close(layer(x.contiguous(memory_format=torch.channels_last)), ref)


@pytest.mark.parametrize("kind", ["lc", "row_col", "row_col kernel route", "input"])
def test_double_backward(kind):
    """Input gradients are differentiable w.r.t. parameters (the P-objective needs this)."""
    torch.manual_seed(12)
    if kind == "lc":
        layer = LocallyConnected2d(2, 3, 3, 6, padding=1).double()
    else:
        combining, *route = kind.split(" ")
        layer = LowRankLocallyConnected2d(
            2, 3, 3, 6, 2, combining=combining, route=route[0] if route else "auto"
        ).double()
    _randomize(layer)
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    (grad_x,) = torch.autograd.grad(layer(x).tanh().sum(), x, create_graph=True)
    (grad_x**2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
    assert torch.autograd.gradgradcheck(lambda inp: layer(inp).tanh(), (x,))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(rank=0), ValueError, "rank"),
        (dict(rank=1.5), TypeError, "rank"),
        (dict(combining="diag"), ValueError, "combining"),
        (dict(normalize="sigmoid"), ValueError, "normalize"),
        (dict(padding_mode="mirror"), ValueError, "padding_mode"),
        (dict(padding="full"), ValueError, "padding"),
        (dict(padding=-1), ValueError, "padding"),
        (dict(kernel_size=9), ValueError, "kernel_size"),
        (dict(stride=0), ValueError, "stride"),
        (dict(input_size=(8, 8, 8)), ValueError, "input_size"),
        (dict(route="fast"), ValueError, "route='fast' is not allowed"),
        (dict(combining="input", route="kernel"), ValueError, "route='kernel' needs"),
        (dict(combining_init="ones"), ValueError, "combining_init='ones' is not allowed"),
        (dict(resize="nearest"), ValueError, "resize='nearest' is not allowed"),
        (
            dict(combining_init="zeros"),
            ValueError,
            "combining_init='zeros' applies to combining='input' only",
        ),
        (
            dict(resize="half_pixel", combining="free"),
            ValueError,
            "resize='half_pixel' applies to combining='input' only",
        ),
        (dict(padding=8, padding_mode="reflect"), ValueError, "padding_mode"),
    ],
)
def test_lrlc_bad_arguments(kwargs, error, match):
    args = dict(in_channels=2, out_channels=3, kernel_size=3, input_size=8, rank=2) | kwargs
    with pytest.raises(error, match=match):
        LowRankLocallyConnected2d(**args)


def test_kernel_larger_than_padded_input_names_both():
    with pytest.raises(ValueError, match=r"kernel_size=\(7, 7\).*padded input \(6, 6\)"):
        LocallyConnected2d(1, 1, 7, 4, padding=1)
    LocallyConnected2d(1, 1, 6, 4, padding=1)  # fits exactly


@pytest.mark.parametrize(
    "layer", [LocallyConnected2d(2, 3, 3, 8), LowRankLocallyConnected2d(2, 3, 3, 8, 2)]
)
def test_wrong_input_size_names_both_sizes(layer):
    with pytest.raises(ValueError, match=r"\(9, 8\).*input_size=\(8, 8\)"):
        layer(torch.randn(1, 2, 9, 8))
    with pytest.raises(ValueError, match="in_channels"):
        layer(torch.randn(1, 4, 8, 8))


def test_combining_weights_inputs_argument_checked():
    shared = LowRankLocallyConnected2d(2, 3, 3, 8, 2)
    dynamic = LowRankLocallyConnected2d(2, 3, 3, 8, 2, combining="input")
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match="combining='input'"):
        dynamic.combining_weights()
    with pytest.raises(ValueError, match="combining='row_col'"):
        shared.combining_weights(x)
    assert dynamic.combining_weights(x).shape == (1, 6, 6, 2)


def test_lc_and_coordconv_bad_arguments():
    with pytest.raises(ValueError, match="padding_mode"):
        LocallyConnected2d(2, 3, 3, 8, padding_mode="mirror")
    with pytest.raises(ValueError, match="padding_mode"):
        CoordConv2d(2, 3, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="out_channels"):
        LocallyConnected2d(2, 0, 3, 8)
    lc = LocallyConnected2d(2, 3, 3, 8)
    with pytest.raises(ValueError, match="kernel must have shape"):
        lc.load_kernel(torch.zeros(6, 6, 3, 2, 3, 2))


# ---------------------------------------------------------------- the reference net's layer kinds


@pytest.mark.parametrize("kind", ["conv", "lc", "lrlc", "lrlc_input", "wide_conv", "coordconv"])
def test_reference_net_layer_kinds(kind):
    from pilcro_lib.models import reference_net

    net = reference_net(("conv", kind, kind), input_size=12, width=8, rank=2)
    assert net(torch.rand(3, 1, 12, 12)).shape == (3, 10)
    spatial = [
        m
        for m in net
        if not isinstance(m, (nn.BatchNorm2d, nn.ReLU, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear))
    ]
    if kind in (
        "conv",
        "wide_conv",
        "lrlc",
        "lrlc_input",
    ):  # BatchNorm follows: no per-channel bias
        assert all(m.bias is None for m in spatial)
    if kind == "lc":
        assert spatial[1].bias.shape == (8, 8, 8)


@pytest.mark.parametrize(
    "layer_types",
    [("wide_conv",) * 3, ("conv", "conv", "wide_conv"), ("conv", "wide_conv", "conv")],
)
@pytest.mark.parametrize("rank", [2, 4])
def test_wide_conv_net_matches_lrlc_net_count_parameters(layer_types, rank):
    from pilcro_lib.models import count_parameters, reference_net

    wide = count_parameters(reference_net(layer_types, rank=rank))
    lrlc = count_parameters(
        reference_net([k.replace("wide_conv", "lrlc") for k in layer_types], rank=rank)
    )
    conv = count_parameters(
        reference_net([k.replace("wide_conv", "conv") for k in layer_types], rank=rank)
    )
    assert abs(wide - lrlc) < 0.01 * lrlc < wide - conv


def test_reference_net_input_dependent_options():
    from pilcro_lib.models import reference_net

    net = reference_net(
        ("lrlc_input", "conv", "lrlc_input"),
        input_size=12,
        width=4,
        rank=2,
        combining_init="zeros",
        resize="half_pixel",
    )
    for layer in (net[0], net[6]):
        assert layer.head.resize == "half_pixel" and (layer.head.mlp[-1].weight == 0).all()
    assert reference_net(("lrlc_input",) * 3, input_size=12, width=4)[0].head.resize == "aligned"
    with pytest.raises(ValueError, match="combining_init='ones' is not allowed"):
        reference_net(("conv",) * 3, combining_init="ones")


def test_make_layer_wide_conv_matches_its_lrlc_layer():
    from pilcro_lib.models import make_layer

    lrlc = count_parameters(make_layer("lrlc", 64, 64, 26, rank=4))
    wide = count_parameters(make_layer("wide_conv", 64, 64, 26, rank=4))
    assert abs(wide - lrlc) <= 64 * 9 / 2


def test_initial_lrlc_net_is_the_conv_net_with_mean_banks():
    from pilcro_lib.models import reference_net

    torch.manual_seed(13)
    lrlc = reference_net(("lrlc",) * 3, input_size=10, width=6, rank=3).eval()
    conv = reference_net(("conv",) * 3, input_size=10, width=6).eval()
    state = {
        k: v
        for k, v in lrlc.state_dict().items()
        if not k.split(".")[1].endswith(("logits", "bias"))
        or k.split(".")[0] not in ("0", "3", "6")
    }
    for i in (0, 3, 6):
        state[f"{i}.weight"] = lrlc[i].bases().mean(0)
    conv.load_state_dict(state)
    x = torch.rand(2, 1, 10, 10)
    torch.testing.assert_close(lrlc(x), conv(x), rtol=1e-5, atol=1e-5)


def test_mean_combining_weights():
    from pilcro_lib.layers import mean_combining_weights
    from pilcro_lib.models import reference_net

    torch.manual_seed(14)
    net = _randomize(
        reference_net(("conv", "lrlc_input", "lrlc"), input_size=10, width=4, rank=3),
        keep_weight=True,
    )
    net.train()
    x = torch.rand(5, 1, 10, 10)
    hidden = net[:3].eval()(x)
    expected = net[3].combining_weights(hidden).mean(0)
    torch.testing.assert_close(mean_combining_weights(net, x), expected)
    assert net.training
    torch.testing.assert_close(mean_combining_weights(net, x, index=1), net[6].combining_weights())
    with pytest.raises(ValueError, match="index=2"):
        mean_combining_weights(net, x, index=2)
