"""Path counting: the analytic landscape of a network's skeleton (theory notes, section 3).

For a linear conv net with i.i.d. zero-mean weights, ``E[(d s / d x_u)^2] = const * N(u)`` where
``N(u)`` counts the paths from input position ``u`` to the output. ``N`` is the input gradient of
the *skeleton*: the same architecture on a single channel, every conv weight 1, no bias, no
nonlinearity, pooling replaced by sum pooling (max pooling as a uniform router), computed here in
float64 on the CPU.

Channels. A full path also picks a channel at every layer. For a chain of convolutions every
spatial path has the same number of channel choices (a product of per-layer constants), so the
channel factor only rescales ``N`` and normalised maps do not depend on it. We therefore count
*spatial* paths only: a path is a sequence of positions, one per spatial layer, and everything
after the spatial part (global pooling's output, ``Flatten``, ``Linear``) is one sink.

Where channel factors do matter (residual sums add branches of different depth), use
``weighting="variance"``: every step is weighted by its factor in ``E[g^2]`` for i.i.d. weights
read off the model itself (a conv: ``mean(w^2) * out_channels / groups``; a fixed conv, whose
weight does not require grad (a blur filter), weights each tap by its squared weights; ReLU: 1/2;
BatchNorm: ``mean(gamma^2 / (running_var + eps))``; average pooling: ``1 / divisor^2``; max pooling:
``1 / window``). This is exact for linear nets whose paths never reuse a weight at two spatial
positions, and an approximation otherwise (ReLU, reflect/replicate padding, overlapping pooling:
the notebooks measure how good it is).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pilcro_lib.landscape import _check_inputs
from pilcro_lib.layers import PADDING_MODES
from pilcro_lib.utils import (
    check_bool,
    check_choice,
    check_int_tuple,
    check_model_builder,
    check_positive_int,
    check_type,
)

WEIGHTINGS = ("count", "variance")
PADDINGS_1D = ("valid", "same", "full")
SUPPORTED = (
    "Conv2d (any kernel, stride, dilation, groups; int/'same'/'valid' padding; "
    "zeros/reflect/replicate/circular)",
    "MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d",
    "ReLU, BatchNorm2d, Dropout, Dropout2d, Identity, pilcro_lib.models.Normalize",
    "Flatten, Linear, BatchNorm1d (after the spatial part)",
    "Sequential, torchvision ResNet/BasicBlock/Bottleneck and VGG, pilcro_lib.models.BasicBlock",
    "subclasses of these that keep their forward (one that redefines forward is refused)",
)


def _unsupported(module: nn.Module, name: str) -> TypeError:
    listing = "; ".join(SUPPORTED)
    return TypeError(
        f"path_count does not support {type(module).__name__} (at '{name}'); supported: {listing}"
    )


@functools.cache
def _followed_methods() -> dict[type, tuple[str, ...]]:
    """The supported classes and the methods of each whose computation the skeleton reproduces."""
    from torchvision.models import VGG, ResNet
    from torchvision.models.resnet import BasicBlock, Bottleneck

    from pilcro_lib.models import BasicBlock as CifarBasicBlock
    from pilcro_lib.models import Normalize

    plain = (
        nn.MaxPool2d,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveMaxPool2d,
        nn.ReLU,
        nn.BatchNorm2d,
        nn.BatchNorm1d,
        Normalize,
        nn.Dropout,
        nn.Dropout2d,
        nn.Identity,
        nn.Flatten,
        nn.Linear,
        nn.Sequential,
        VGG,
        BasicBlock,
        Bottleneck,
        CifarBasicBlock,
    )
    return {
        nn.Conv2d: ("forward", "_conv_forward"),
        ResNet: ("forward", "_forward_impl"),
        **{cls: ("forward",) for cls in plain},
    }


def _check_forward(module: nn.Module, name: str, who: str) -> None:
    """Refuse a subclass of a supported class that redefines its forward: the skeleton follows the
    base class's computation (a Sequential's children in order, say), not the subclass's."""
    cls = type(module)
    for base, methods in _followed_methods().items():
        changed = [
            m
            for m in methods
            if isinstance(module, base) and getattr(cls, m) is not getattr(base, m)
        ]
        if changed:
            where = f"model.{name}" if name else "model"
            raise TypeError(
                f"model must compute what its supported classes compute, but {where} is a "
                f"{cls.__name__}, a subclass of {base.__name__} that redefines "
                f"{', '.join(changed)}: {who} follows {base.__name__}'s own computation and would "
                "count the paths of another network. Build the model from modules that keep "
                "their forward (e.g. an nn.Sequential of supported layers); supported: "
                f"{'; '.join(SUPPORTED)}"
            )


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_pads(m: nn.Conv2d) -> tuple[int, int, int, int]:
    """Padding ``(left, right, top, bottom)`` as PyTorch applies it."""
    kh, kw = m.kernel_size
    dh, dw = m.dilation
    if m.padding == "valid":
        return (0, 0, 0, 0)
    if m.padding == "same":
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    ph, pw = m.padding
    return (pw, pw, ph, ph)


def _too_small(name: str, size: tuple[int, int]) -> ValueError:
    return ValueError(
        f"input_size is too small for the model: the map reaching '{name}' is {size[0]}x{size[1]}"
    )


def _padded_conv(m: nn.Conv2d, x: Tensor, kernel: Tensor, name: str) -> Tensor:
    """``x`` ``[N, 1, H, W]`` padded as ``m`` pads (mode included), then convolved with the
    single-channel ``kernel`` ``[1, 1, kh, kw]`` at ``m``'s stride and dilation."""
    pads = _conv_pads(m)
    h, w = x.shape[-2:]
    if m.padding_mode == "zeros":
        x = F.pad(x, pads)
    else:
        if pads[0] >= w or pads[1] >= w or pads[2] >= h or pads[3] >= h:
            raise _too_small(name, (h, w))
        x = F.pad(x, pads, mode=m.padding_mode)
    (kh, kw), (dh, dw) = m.kernel_size, m.dilation
    if x.shape[-2] < dh * (kh - 1) + 1 or x.shape[-1] < dw * (kw - 1) + 1:
        raise _too_small(name, (h, w))
    return F.conv2d(x, kernel, stride=m.stride, dilation=m.dilation)


def _pool_out(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """PyTorch's pooling output length along one axis."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


class _Skeleton:
    """Maps a ``[1, 1, h, w]`` float64 tensor through the skeleton of a module tree."""

    def __init__(self, weighting: str):
        self.weighting = weighting

    def variance(self) -> bool:
        return self.weighting == "variance"

    def run(self, module: nn.Module, x: Tensor, name: str) -> Tensor:
        _check_forward(module, name, "path_count")
        for kind, handler in self._handlers():
            if isinstance(module, kind):
                return handler(module, x, name)
        children = _known_sequence(module)
        if children is not None:
            for child_name, child in children:
                x = self.run(child, x, f"{name}.{child_name}" if name else child_name)
            return x
        branches = _residual_branches(module)
        if branches is not None:
            main, shortcut, after = branches
            y = self.run(nn.Sequential(*main), x, name) + (
                x if shortcut is None else self.run(shortcut, x, name)
            )
            return self.run(after, y, name)
        raise _unsupported(module, name)

    def _handlers(self):
        from pilcro_lib.models import Normalize

        return (
            (nn.Conv2d, self.conv),
            ((nn.MaxPool2d, nn.AvgPool2d), self.pool),
            ((nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d), self.adaptive_pool),
            (nn.ReLU, lambda m, x, n: x * 0.5 if self.variance() else x),
            (nn.BatchNorm2d, self.batchnorm),
            (
                Normalize,
                lambda m, x, n: x * (1 / m.std.double().pow(2)).mean() if self.variance() else x,
            ),
            ((nn.Dropout, nn.Dropout2d, nn.Identity), lambda m, x, n: x),
            (nn.Flatten, lambda m, x, n: x.sum(dim=(-2, -1), keepdim=True)),
            ((nn.Linear, nn.BatchNorm1d), self.dense),
        )

    def conv(self, m: nn.Conv2d, x: Tensor, name: str) -> Tensor:
        kh, kw = m.kernel_size
        kernel = torch.ones(1, 1, kh, kw, dtype=x.dtype)
        if self.variance():  # per tap: sum of squared weights reaching one input channel, averaged
            taps = m.weight.detach().double().cpu().pow(2).sum((0, 1)) / m.in_channels
            # a trainable weight is one draw of i.i.d. weights: use its expectation, the same at
            # every tap
            kernel = (taps if not m.weight.requires_grad else taps.mean().expand(kh, kw)).view(
                1, 1, kh, kw
            )
        return _padded_conv(m, x, kernel, name)

    def pool(self, m: nn.Module, x: Tensor, name: str) -> Tensor:
        kh, kw = _pair(m.kernel_size)
        sh, sw = _pair(m.stride if m.stride is not None else m.kernel_size)
        ph, pw = _pair(m.padding)
        dh, dw = _pair(getattr(m, "dilation", 1))
        h, w = x.shape[-2:]
        oh = _pool_out(h, kh, sh, ph, dh, m.ceil_mode)
        ow = _pool_out(w, kw, sw, pw, dw, m.ceil_mode)
        if oh < 1 or ow < 1:
            raise _too_small(name, (h, w))
        # Zero-pad so that exactly the oh x ow windows PyTorch uses fit, then sum over each window.
        right = max((ow - 1) * sw + dw * (kw - 1) + 1 - w - pw, 0)
        bottom = max((oh - 1) * sh + dh * (kh - 1) + 1 - h - ph, 0)
        kernel = torch.ones(1, 1, kh, kw, dtype=x.dtype)

        def window_sum(t: Tensor, value: float = 0.0) -> Tensor:
            t = F.pad(t, (pw, right, ph, bottom), value=value)
            return F.conv2d(t, kernel, stride=(sh, sw), dilation=(dh, dw))[..., :oh, :ow]

        y = window_sum(x)
        if not self.variance():
            return y
        valid = window_sum(torch.ones_like(x))
        if isinstance(m, nn.MaxPool2d):
            return y / valid  # the winner is uniform over the window's real positions
        if m.divisor_override:
            divisor = torch.full_like(valid, float(m.divisor_override))
        elif m.count_include_pad:  # the window clipped to the padded input
            inner = F.pad(torch.ones_like(x), (pw, pw, ph, ph), value=1.0)
            divisor = F.conv2d(
                F.pad(inner, (0, max(right - pw, 0), 0, max(bottom - ph, 0))),
                kernel,
                stride=(sh, sw),
            )
            divisor = divisor[..., :oh, :ow]
        else:
            divisor = valid
        return y / divisor.pow(2)

    def adaptive_pool(self, m: nn.Module, x: Tensor, name: str) -> Tensor:
        h, w = x.shape[-2:]
        size = (m.output_size,) * 2 if isinstance(m.output_size, int) else tuple(m.output_size)
        oh, ow = (h if size[0] is None else size[0]), (w if size[1] is None else size[1])
        power = (2.0 if isinstance(m, nn.AdaptiveAvgPool2d) else 1.0) if self.variance() else 0.0
        ph, pw = _adaptive_matrix(h, oh, power), _adaptive_matrix(w, ow, power)
        return ph.T @ x @ pw

    def batchnorm(self, m: nn.BatchNorm2d, x: Tensor, name: str) -> Tensor:
        if not self.variance():
            return x
        scale = torch.ones(m.num_features, dtype=torch.float64)
        if m.affine:
            scale = scale * m.weight.detach().double().cpu().pow(2)
        if m.running_var is not None:
            scale = scale / (m.running_var.detach().double().cpu() + m.eps)
        return x * scale.mean()

    def dense(self, m: nn.Module, x: Tensor, name: str) -> Tensor:
        if x.shape[-2:] != (1, 1):
            raise TypeError(
                f"path_count expects {type(m).__name__} (at '{name}') after global pooling or "
                "Flatten"
            )
        return x


def _adaptive_matrix(n: int, out: int, power: float) -> Tensor:
    """``[n, out]`` window membership of adaptive pooling, each window weighted by
    ``1 / len^power``."""
    m = torch.zeros(n, out, dtype=torch.float64)
    for i in range(out):
        start, end = (i * n) // out, -((-(i + 1) * n) // out)
        m[start:end, i] = 1.0 / (end - start) ** power
    return m


def _known_sequence(module: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The children of a container whose forward applies them in order, else ``None``."""
    from torchvision.models import VGG, ResNet

    if isinstance(module, nn.Sequential):
        return list(module.named_children())
    if isinstance(module, ResNet):
        names = [
            "conv1",
            "bn1",
            "relu",
            "maxpool",
            "layer1",
            "layer2",
            "layer3",
            "layer4",
            "avgpool",
        ]
        return [(n, getattr(module, n)) for n in names] + [
            ("flatten", nn.Flatten()),
            ("fc", module.fc),
        ]
    if isinstance(module, VGG):
        return [
            ("features", module.features),
            ("avgpool", module.avgpool),
            ("flatten", nn.Flatten()),
            ("classifier", module.classifier),
        ]
    return None


def _residual_branches(module: nn.Module):
    """``(main branch modules, shortcut or None, module after the sum)`` of a residual block, else
    ``None``."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    from pilcro_lib.models import BasicBlock as CifarBasicBlock

    if isinstance(module, (BasicBlock, CifarBasicBlock)):
        main = [module.conv1, module.bn1, module.relu, module.conv2, module.bn2]
    elif isinstance(module, Bottleneck):
        main = [
            module.conv1,
            module.bn1,
            module.relu,
            module.conv2,
            module.bn2,
            module.relu,
            module.conv3,
            module.bn3,
        ]
    else:
        return None
    return main, module.downsample, module.relu


def path_count(
    model: nn.Module, input_size: tuple[int, int, int], *, weighting: str = "count"
) -> Tensor:
    """The path-count map ``N(u)`` of ``model``'s skeleton for inputs of ``input_size = (C, H, W)``.

    Returns ``[H, W]`` float64: the number of spatial paths from each input position to the output
    (``weighting="count"``), or the variance-weighted sum over paths (``"variance"``, see the
    module docstring). The skeleton follows each supported class's own computation, so a module
    whose class redefines ``forward`` (an ``nn.Sequential`` subclass that skips, reorders or
    branches, say) is refused rather than counted wrongly. Raises ``TypeError`` naming an
    unsupported module or redefined ``forward`` and listing :data:`SUPPORTED`, ``ValueError`` if
    ``input_size`` is malformed or too small.
    """
    check_choice("weighting", weighting, WEIGHTINGS)
    c, h, w = _check_model_and_size(model, input_size)
    _check_inputs(model, (1, c, h, w), name="input_size")
    x = torch.zeros(1, 1, h, w, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        out = _Skeleton(weighting).run(model, x, "")
        (grad,) = torch.autograd.grad(out.sum(), x)
    return grad[0, 0]


def _check_model_and_size(
    model: nn.Module, input_size: tuple[int, int, int]
) -> tuple[int, int, int]:
    check_type("model", model, nn.Module, "a torch.nn.Module")
    return check_int_tuple("input_size", input_size, 3, dims="(channels, height, width)")


def conv_profile_1d(
    length: int,
    kernel_size: int,
    depth: int,
    *,
    padding: str | int = "same",
    padding_mode: str = "zeros",
) -> Tensor:
    """1-D path counts ``[length]`` of ``depth`` stacked stride-1 convs of ``kernel_size``.

    For a stack of square-kernel stride-1 convs the 2-D map factorises:
    ``N(i, j) = n(i) * n(j)`` with ``n`` this profile. Computed by dynamic programming over an
    explicit 1-D connectivity (``padding``: ``valid``, ``same``, ``full`` or an int per side).
    """
    length = check_positive_int("length", length)
    k = check_positive_int("kernel_size", kernel_size)
    depth = check_positive_int("depth", depth, minimum=0)
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    if isinstance(padding, str):
        check_choice("padding", padding, PADDINGS_1D)
        if padding == "same" and k % 2 == 0:
            raise ValueError(f"padding='same' needs an odd kernel_size, got {k}")
        pad = {"valid": 0, "same": (k - 1) // 2, "full": k - 1}[padding]
    else:
        pad = check_positive_int("padding", padding, minimum=0)
    sizes = [length]
    for _ in range(depth):
        sizes.append(sizes[-1] + 2 * pad - k + 1)
        if sizes[-1] < 1 or (padding_mode != "zeros" and pad >= sizes[-2]):
            raise ValueError(f"length={length} is too small for {depth} convs of kernel_size={k}")
    counts = torch.ones(sizes[-1], dtype=torch.float64)
    for n_in, n_out in zip(reversed(sizes[:-1]), reversed(sizes[1:])):
        below = torch.zeros(n_in, dtype=torch.float64)
        for o in range(n_out):
            for a in range(k):
                src = _source_index(o + a - pad, n_in, padding_mode)
                if src is not None:
                    below[src] += counts[o]
        counts = below
    return counts


def _source_index(p: int, n: int, padding_mode: str) -> int | None:
    """Input index read at padded coordinate ``p`` (``None`` for a zero pad)."""
    if 0 <= p < n:
        return p
    if padding_mode == "zeros":
        return None
    if padding_mode == "circular":
        return p % n
    if padding_mode == "replicate":
        return min(max(p, 0), n - 1)
    return -p if p < 0 else 2 * (n - 1) - p  # reflect (edge pixel not repeated)


def valid_profile_closed_form(length: int, kernel_size: int, depth: int) -> Tensor:
    """Closed form of :func:`conv_profile_1d` with ``padding="valid"``: ``[length]``.

    A path through ``depth`` valid convs moves by offsets ``a_l in {0..k-1}``; the number of offset
    sequences with sum ``m`` is the coefficient of ``z^m`` in ``(1 + z + ... + z^(k-1))^L``,
    ``c(m) = sum_j (-1)^j C(L, j) C(m - j k + L - 1, L - 1)``, and
    ``n(i) = sum_{m = max(0, i - n_out + 1)}^{min(i, L (k - 1))} c(m)`` with
    ``n_out = length - L (k - 1)``.
    """
    length = check_positive_int("length", length)
    k = check_positive_int("kernel_size", kernel_size)
    depth = check_positive_int("depth", depth)
    n_out = length - depth * (k - 1)
    if n_out < 1:
        raise ValueError(f"length={length} is too small for {depth} valid convs of kernel_size={k}")

    def c(m: int) -> int:
        return sum(
            (-1) ** j * math.comb(depth, j) * math.comb(m - j * k + depth - 1, depth - 1)
            for j in range(depth + 1)
            if m - j * k >= 0
        )

    return torch.tensor(
        [
            sum(c(m) for m in range(max(0, i - n_out + 1), min(i, depth * (k - 1)) + 1))
            for i in range(length)
        ],
        dtype=torch.float64,
    )


@dataclass
class Comparison:
    """Analytic and Monte-Carlo landscapes of one architecture (all ``[H, W]``, normalised to mean
    1).

    ``maps``: ``"path count"``, ``"second moment"`` (when computed) and ``"Monte Carlo"``;
    ``r``: Pearson correlation of each analytic map with the Monte-Carlo map (``nan`` if flat).
    """

    maps: dict[str, Tensor]
    r: dict[str, float]


def compare_with_monte_carlo(
    build_model,
    input_size: tuple[int, int, int],
    *,
    n_inits: int,
    weighting: str = "count",
    second_moment: bool | None = None,
    **mc_kwargs,
) -> Comparison:
    """Analytic vs empirical landscape of the architecture that ``build_model()`` returns.

    The analytic maps use one model built under the seed ``mc_kwargs.get("seed", 0)``: the
    :func:`path_count` (with ``weighting``) and, if ``second_moment`` (default: when the input
    has at most :data:`MAX_MOMENT_PIXELS` pixels), the :func:`second_moment`. The empirical map is
    :func:`~pilcro_lib.landscape.monte_carlo_landscape` with ``squared=True`` (``mc_kwargs`` are
    passed on).
    """
    from pilcro_lib.landscape import monte_carlo_landscape, normalize, pearson

    check_model_builder("build_model", build_model)
    input_size = check_int_tuple("input_size", input_size, 3, dims="(channels, height, width)")
    if second_moment is not None:
        check_bool("second_moment", second_moment)
    if second_moment is None:
        second_moment = input_size[-1] * input_size[-2] <= MAX_MOMENT_PIXELS
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mc_kwargs.get("seed", 0))
        model = build_model()
    maps = {"path count": normalize(path_count(model, input_size, weighting=weighting))}
    if second_moment:
        maps["second moment"] = normalize(_second_moment(model, input_size))
    empirical = monte_carlo_landscape(
        build_model, input_size, n_inits=n_inits, squared=True, **mc_kwargs
    )
    r = {name: pearson(m, empirical) for name, m in maps.items()}
    maps["Monte Carlo"] = empirical
    return Comparison(maps=maps, r=r)


# --- exact second moments: path counting with the cross terms of reused weights -------------------

MAX_MOMENT_PIXELS = 4096


class _Moments:
    """Builds, module by module, the map ``M_out -> M_in`` of the per-channel second-moment matrix
    ``M[u, u'] = E[g_u g_u']`` of the backward signal (``[n, n]``, ``n`` = positions of a layer)."""

    def run(self, module: nn.Module, shape: tuple[int, int], name: str):
        """``(output shape, back)`` where ``back(M_out) -> M_in``."""
        from pilcro_lib.models import Normalize

        _check_forward(module, name, "second_moment")
        h, w = shape
        if isinstance(module, nn.Conv2d):
            return self.conv(module, shape, name)
        if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            jt = module(torch.eye(h * w, dtype=torch.float64).view(-1, 1, h, w)).flatten(1)
            return self._shape(module, shape), lambda m: jt @ m @ jt.T
        if isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
            return self.max_router(module, shape, name)
        if isinstance(module, nn.ReLU):  # independent gates, open with probability 1/2
            return shape, lambda m: (m + torch.diag(torch.diag(m))) / 4
        scale = None
        if isinstance(module, nn.BatchNorm2d):
            scale = _Skeleton("variance").batchnorm(module, torch.ones(1), name).item()
        elif isinstance(module, Normalize):
            scale = (1 / module.std.double().pow(2)).mean().item()
        if scale is not None:
            return shape, lambda m: m * scale
        if isinstance(module, (nn.Dropout, nn.Dropout2d, nn.Identity, nn.Linear, nn.BatchNorm1d)):
            return shape, lambda m: m
        if isinstance(module, nn.Flatten):  # a dense readout: independent weights at every position
            return (1, 1), lambda m: m.reshape(()) * torch.eye(h * w, dtype=torch.float64)
        children = _known_sequence(module)
        if children is not None:
            backs = []
            for child_name, child in children:
                shape, back = self.run(child, shape, f"{name}.{child_name}" if name else child_name)
                backs.append(back)

            def chain(m):
                for back in reversed(backs):
                    m = back(m)
                return m

            return shape, chain
        branches = _residual_branches(module)
        if branches is not None:
            main, shortcut, after = branches
            out, main_back = self.run(nn.Sequential(*main), shape, name)
            short_back = (lambda m: m) if shortcut is None else self.run(shortcut, shape, name)[1]
            _, after_back = self.run(after, out, name)
            return out, lambda m: main_back(after_back(m)) + short_back(after_back(m))
        raise _unsupported(module, name)

    @staticmethod
    def _shape(module: nn.Module, shape: tuple[int, int]) -> tuple[int, int]:
        with torch.no_grad():
            return tuple(module(torch.zeros(1, 1, *shape, dtype=torch.float64)).shape[-2:])

    def conv(self, m: nn.Conv2d, shape: tuple[int, int], name: str):
        h, w = shape
        index = torch.arange(1, h * w + 1, dtype=torch.float64).view(1, 1, h, w)
        kh, kw = m.kernel_size
        weight = m.weight.detach().double().cpu()
        fixed = not m.weight.requires_grad
        taps = []  # (source index per output position, -1 for a zero pad; variance of that tap)
        for a in range(kh):
            for b in range(kw):
                one_hot = torch.zeros(1, 1, kh, kw, dtype=torch.float64)
                one_hot[0, 0, a, b] = 1.0
                src = _padded_conv(m, index, one_hot, name).flatten().round().long() - 1
                var = weight[:, :, a, b].pow(2).sum().item() / m.in_channels
                taps.append((src, var))
        out = _padded_conv(m, index, torch.ones(1, 1, kh, kw, dtype=torch.float64), name).shape[-2:]
        mean_var = sum(v for _, v in taps) / len(taps)
        if (
            fixed
            and m.groups == m.in_channels == m.out_channels
            and torch.all(weight == weight[:1])
        ):
            # a fixed depthwise filter (blur): deterministic taps, so their cross terms stay
            matrix = torch.zeros(out.numel(), h * w, dtype=torch.float64)
            for (src, _), tap in zip(taps, weight[0, 0].flatten()):
                valid = src >= 0
                matrix[torch.nonzero(valid).flatten(), src[valid]] += tap.item()
            return tuple(out), lambda mo: matrix.T @ mo @ matrix

        def back(mo: Tensor) -> Tensor:
            m_in = torch.zeros(h * w, h * w, dtype=torch.float64)
            for src, var in taps:
                valid = src >= 0
                rows = torch.zeros(h * w, mo.shape[1], dtype=torch.float64).index_add_(
                    0, src[valid], mo[valid]
                )
                m_in += (var if fixed else mean_var) * torch.zeros_like(m_in).index_add_(
                    1, src[valid], rows[:, valid]
                )
            return m_in

        return tuple(out), back

    def max_router(self, module: nn.Module, shape: tuple[int, int], name: str):
        """Max pooling at init: the winner is uniform over each window's positions, independently
        across windows: ``E[R^T M R] = A^T M A + diag(A^T d) - A^T diag(d) A`` with ``A`` the
        window-average matrix and ``d = diag(M)``."""
        h, w = shape
        eye = torch.eye(h * w, dtype=torch.float64).view(-1, 1, h, w)
        sk = _Skeleton("variance")
        at = (sk.pool if isinstance(module, nn.MaxPool2d) else sk.adaptive_pool)(
            module, eye, name
        ).flatten(1)

        def back(mo: Tensor) -> Tensor:
            d = torch.diag(mo)
            return at @ mo @ at.T + torch.diag(at @ d) - (at * d) @ at.T

        return self._shape(module, shape), back


def second_moment(model: nn.Module, input_size: tuple[int, int, int]) -> Tensor:
    """``E[(d s / d x_u)^2]`` up to a constant factor, ``[H, W]`` float64, for i.i.d. weights.

    Unlike :func:`path_count` this keeps the cross terms between paths that reuse a weight (through
    reflect/replicate padding, overlapping average pooling or a fixed blur filter): it propagates
    the full second-moment matrix of the backward signal, layer by layer. Exact for linear nets
    (convolutions with i.i.d. zero-mean weights, average pooling, residual sums, a readout);
    ReLU (independent gates) and max pooling (uniform router) are first-order approximations.
    Cost: ``(H W)^2`` memory, so ``H * W <= 4096``.
    """
    c, h, w = _check_model_and_size(model, input_size)
    if h * w > MAX_MOMENT_PIXELS:
        raise ValueError(
            f"input_size {h}x{w} has more than {MAX_MOMENT_PIXELS} pixels; use path_count instead"
        )
    _check_inputs(model, (1, c, h, w), name="input_size")
    out, back = _Moments().run(model, (h, w), "")
    if out != (1, 1):
        raise TypeError(
            "second_moment expects the model to end in global pooling or Flatten and Linear layers"
        )
    return torch.diag(back(torch.ones(1, 1, dtype=torch.float64))).reshape(h, w)


_second_moment = (
    second_moment  # compare_with_monte_carlo takes a ``second_moment`` flag that shadows the name
)


def toy_net(
    depth: int,
    *,
    in_channels: int = 1,
    width: int = 8,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int | str = 1,
    padding_mode: str = "zeros",
    relu: bool = False,
    batchnorm: bool = False,
    pool=None,
    num_classes: int = 10,
) -> nn.Sequential:
    """The nets of the path-counting derivation: ``depth`` x [conv (no bias), BatchNorm?, ReLU?,
    pool?], global average pooling, linear readout. ``pool``: ``None`` or a callable returning a
    pooling module (inserted after every conv block). Input ``[B, in_channels, H, W]``."""
    depth = check_positive_int("depth", depth)
    for name, value in (
        ("in_channels", in_channels),
        ("width", width),
        ("kernel_size", kernel_size),
        ("stride", stride),
        ("num_classes", num_classes),
    ):
        check_positive_int(name, value)
    if isinstance(padding, str):
        check_choice("padding", padding, ("valid", "same"))
    else:
        check_positive_int("padding", padding, minimum=0)
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    check_bool("relu", relu)
    check_bool("batchnorm", batchnorm)
    if pool is not None and not callable(pool):
        raise TypeError(f"pool must be None or a function returning a pooling module, got {pool!r}")
    layers: list[nn.Module] = []
    channels = in_channels
    for _ in range(depth):
        layers.append(
            nn.Conv2d(
                channels, width, kernel_size, stride, padding, bias=False, padding_mode=padding_mode
            )
        )
        channels = width
        layers += ([nn.BatchNorm2d(width)] if batchnorm else []) + ([nn.ReLU()] if relu else [])
        layers += [pool()] if pool is not None else []
    return nn.Sequential(
        *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)
    )


def blur_pool(channels: int, stride: int = 2) -> nn.Conv2d:
    """Anti-aliased downsampling's blur: a fixed (not trained) depthwise binomial
    ``[1, 2, 1]^T [1, 2, 1] / 16`` filter applied with ``stride`` and zero padding 1.
    ``[B, C, H, W]`` -> ``[B, C, ceil(H/s), ceil(W/s)]``. Put a stride-1 max pooling before it for
    max-blur pooling."""
    channels = check_positive_int("channels", channels)
    blur = nn.Conv2d(
        channels,
        channels,
        3,
        stride=check_positive_int("stride", stride),
        padding=1,
        groups=channels,
        bias=False,
    )
    taps = torch.tensor([1.0, 2.0, 1.0])
    with torch.no_grad():
        blur.weight.copy_((torch.outer(taps, taps) / 16).expand_as(blur.weight))
    blur.weight.requires_grad_(False)
    return blur
