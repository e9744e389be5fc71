"""Locally connected (LC), low-rank locally connected (LRLC) and CoordConv layers.

A convolution applies one filter bank at every output position; a locally connected layer
applies a different bank at each position. The low-rank layer sits in between: ``K`` shared
basis banks, mixed at each output position ``(h, w)`` by combining weights
``alpha[h, w, k]`` normalised over ``k`` (our formulation of the layer of Elsayed et al., 2020,
with the conventions of the authors' TensorFlow layer: initialisation, ``SAME`` padding, the
input-dependent head):

    y[b, f, h, w] = sum_k alpha[h, w, k] * conv(x, bank_k)[b, f, h, w] + bias[f, h, w]

Two routes compute it (:meth:`LowRankLocallyConnected2d.route_for` picks one per batch):

- ``conv``: **one** convolution with ``K * F`` output channels, then the weighted sum over
  ``K``: ``K`` times the multiply-adds of a convolution;
- ``kernel``: the per-position kernels ``sum_k alpha[h, w, k] * bank_k`` first, then one
  locally connected pass: ``(N + K) / N`` times a convolution's multiply-adds for a batch of
  ``N``, but in one small matrix product per position, which runs slower per multiply-add.

Shapes: inputs ``[N, C, H, W]``; outputs ``[N, F, H_out, W_out]``;
``H_out = (H + pad_top + pad_bottom - kh) // stride + 1`` (same for ``W``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pilcro_lib.utils import (
    check_bool,
    check_choice,
    check_int_tuple,
    check_number,
    check_positive_int,
    check_tensor,
    check_type,
)

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
COMBINING_MODES = ("row_col", "free", "row", "col", "input")
NORMALIZATIONS = ("softmax", "l2", "none")
RESIZE_MODES = ("aligned", "half_pixel")
COMBINING_INITS = ("default", "zeros")
ROUTES = ("auto", "conv", "kernel")
KERNEL_ROUTE_SLOWDOWN = 5.0
(
    """Time per multiply-add of the kernel route's per-position matrix products over a convolution's
(the rule of :meth:`LowRankLocallyConnected2d.route_for`; measured on CPU by """
    """``benchmarks/layers.py``)."""
)
COMBINE_COST = 64.0
"""Time of the conv route's combine per combined number (its passes over the ``N*K*F*H_out*W_out``
conv outputs, forward and backward) in a convolution's multiply-adds (the same rule, the same
measurements)."""
_TORCH_PAD_MODE = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "replicate",
    "circular": "circular",
}
_HEAD_DILATIONS = (1, 2, 4, 8)

Size2 = int | tuple[int, int]
Padding = int | tuple[int, int] | str


def _pair(name: str, value: Size2) -> tuple[int, int]:
    """``value`` as a pair of positive ints (an int is used for both), else an error naming
    ``name``."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return check_int_tuple(name, value, 2)
    v = check_positive_int(name, value)
    return v, v


def _check_layer_input(name: str, x: Tensor, in_channels: int) -> None:
    """A float batch ``[N, C, H, W]`` with the layer's ``in_channels``."""
    check_tensor(name, x, ndim=4, dims="[N, C, H, W]", dtype_kind="float")
    if x.shape[1] != in_channels:
        raise ValueError(f"{name} has {x.shape[1]} channels but in_channels={in_channels}")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``SAME`` padding along one axis, as ``(before, after)``.

    The output has ``ceil(size / stride)`` positions; the total padding
    ``max((ceil(size / stride) - 1) * stride + kernel - size, 0)`` is split with the odd pixel
    after (bottom or right). E.g. ``same_padding(28, 3, 2) == (0, 1)``,
    ``same_padding(7, 4, 2) == (1, 2)``.
    """
    for name, value in (("size", size), ("kernel", kernel), ("stride", stride)):
        check_positive_int(name, value)
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _check_padding(padding: Padding) -> str | tuple[int, int]:
    """``padding`` as ``'valid'``, ``'same'`` or ``(rows, cols)`` pixels per side, else an error
    naming it."""
    if isinstance(padding, str):
        return check_choice("padding", padding, ("valid", "same"))
    if isinstance(padding, Sequence):
        if len(padding) != 2:
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        ph, pw = (check_positive_int("padding", p, minimum=0) for p in padding)
        return ph, pw
    p = check_positive_int("padding", padding, minimum=0)
    return p, p


def _padding_amounts(
    padding: Padding, kernel: tuple[int, int], stride: tuple[int, int], input_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Padding as ``(left, right, top, bottom)`` from an int, a pair, ``"valid"`` or ``"same"``
    (TensorFlow's, any stride: :func:`same_padding`)."""
    padding = _check_padding(padding)
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        top, bottom = same_padding(input_size[0], kernel[0], stride[0])
        left, right = same_padding(input_size[1], kernel[1], stride[1])
        return left, right, top, bottom
    ph, pw = padding
    return pw, pw, ph, ph


def _tap_slices(
    kernel: tuple[int, int], stride: tuple[int, int], output_size: tuple[int, int]
) -> list[tuple[slice, slice]]:
    """For each tap ``(i, j)`` of the kernel, row-major: the rows and columns of the padded input it
    reads."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, output_size
    return [
        (slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))
        for i in range(kh)
        for j in range(kw)
    ]


class _Patches(torch.autograd.Function):
    """The input patch of every output position: padded ``x`` ``[N, C, H, W]`` ->
    ``[L, N, kh*kw*C]``, positions ``L = H_out * W_out`` row-major, each patch ordered
    ``(i, j, c)``.

    One strided slice per tap. The backward adds each tap's gradient into one buffer (autograd of
    the slices would make a zero input-sized tensor per tap); it is written in differentiable
    operations, so double backward works.
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        output_size: tuple[int, int],
    ) -> Tensor:
        ctx.geometry = (x.shape, kernel, stride, output_size)
        rows_cols = x.permute(2, 3, 0, 1).contiguous()  # [H, W, N, C]
        taps = [
            rows_cols[rows, cols] for rows, cols in _tap_slices(kernel, stride, output_size)
        ]  # each [H_out, W_out, N, C]
        return torch.stack(taps, dim=3).view(output_size[0] * output_size[1], x.shape[0], -1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (n, c, h, w), kernel, stride, output_size = ctx.geometry
        per_tap = grad.reshape(*output_size, n, kernel[0] * kernel[1], c)
        total = grad.new_zeros(h, w, n, c)
        for t, (rows, cols) in enumerate(_tap_slices(kernel, stride, output_size)):
            total[rows, cols] += per_tap[:, :, :, t]
        return total.permute(2, 3, 0, 1).contiguous(), None, None, None


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous (a batched matrix product would
    otherwise copy a permuted gradient one matrix at a time)."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous()


def _positionwise(
    x: Tensor,
    weight: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    output_size: tuple[int, int],
) -> Tensor:
    """A locally connected pass: padded ``x`` ``[N, C, H, W]`` and per-position weights
    ``[L, kh*kw*C, F]`` (patch order of :class:`_Patches`) -> ``[N, F, H_out, W_out]``, one batched
    matrix product over the positions."""
    out = _ContiguousGrad.apply(
        torch.bmm(_Patches.apply(x, kernel, stride, output_size), weight)
    )  # [L, N, F]
    return out.permute(1, 2, 0).reshape(x.shape[0], weight.shape[-1], *output_size)


class _SpatialLayer(nn.Module):
    """Shared bookkeeping of layers whose parameters depend on the output position.

    Checks the arguments, pads inputs explicitly (``padding_mode``) and checks at forward time
    that the input has the ``input_size`` the layer was built for.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size2,
        input_size: Size2,
        stride: Size2,
        padding: Padding,
        padding_mode: str,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.input_size = _pair("input_size", input_size)
        self.stride = _pair("stride", stride)
        self.padding_mode = check_choice("padding_mode", padding_mode, PADDING_MODES)
        self.padding = padding
        self.pad = _padding_amounts(padding, self.kernel_size, self.stride, self.input_size)
        left, right, top, bottom = self.pad
        padded = (self.input_size[0] + top + bottom, self.input_size[1] + left + right)
        if self.kernel_size[0] > padded[0] or self.kernel_size[1] > padded[1]:
            raise ValueError(
                f"kernel_size={self.kernel_size} is larger than the padded input {padded} "
                f"(input_size={self.input_size}, padding={padding!r})"
            )
        if padding_mode in ("reflect", "circular") and max(self.pad) > 0:
            limit = min(self.input_size) - (padding_mode == "reflect")
            if max(self.pad) > limit:
                raise ValueError(
                    f"padding={padding!r} is too large for padding_mode={padding_mode!r} on "
                    f"input_size={self.input_size}"
                )
        self.output_size = (
            (padded[0] - self.kernel_size[0]) // self.stride[0] + 1,
            (padded[1] - self.kernel_size[1]) // self.stride[1] + 1,
        )

    def _check_input(self, x: Tensor, name: str = "x") -> None:
        _check_layer_input(name, x, self.in_channels)
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(
                f"{name} has spatial size {tuple(x.shape[-2:])} but input_size={self.input_size}"
            )

    def _pad(self, x: Tensor) -> Tensor:
        """``x`` padded by ``self.pad`` with ``padding_mode`` (no copy when there is no padding)."""
        if max(self.pad) == 0:
            return x
        return F.pad(x, self.pad, mode=_TORCH_PAD_MODE[self.padding_mode])

    def _positionwise(self, x: Tensor, weight: Tensor) -> Tensor:
        """:func:`_positionwise` of ``x`` ``[N, C, H, W]``, padded here, with ``weight``
        ``[L, kh*kw*C, F]``."""
        return _positionwise(self._pad(x), weight, self.kernel_size, self.stride, self.output_size)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"input_size={self.input_size}, output_size={self.output_size}, stride={self.stride}, "
            f"padding={self.padding!r}, padding_mode={self.padding_mode!r}"
        )


def _he_uniform_(weight: Tensor, fan_in: int) -> Tensor:
    """He (Kaiming) uniform initialisation in place: U(-b, b), b = sqrt(6 / fan_in)."""
    bound = math.sqrt(6.0 / fan_in)
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


class LocallyConnected2d(_SpatialLayer):
    """A 2-D layer with an unshared ``F x C x kh x kw`` kernel (and bias) at every output position.

    Parameters: ``weight`` ``[T, F]``, one row per (output position, tap, input channel) that
    can see the input, ordered ``(h, w, i, j, c)``: all ``T = H_out*W_out*kh*kw*C`` of them,
    except that with ``padding_mode='zeros'`` the taps that fall on the padding at a position
    are absent (they multiply zeros for every input, so their weights could never matter); and
    ``bias`` ``[F, H_out, W_out]``. He-uniform (fan-in ``C*kh*kw``) weights, zero bias.
    Forward: the patches of the padded input, then one batched matrix product over positions.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size2,
        input_size: Size2,
        *,
        stride: Size2 = 1,
        padding: Padding = 0,
        padding_mode: str = "zeros",
        bias: bool = True,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, input_size, stride, padding, padding_mode
        )
        check_bool("bias", bias)
        present = self._present_taps()
        self.register_buffer(
            "taps", None if bool(present.all()) else present.nonzero().squeeze(1), persistent=False
        )
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(
            _he_uniform_(torch.empty(int(present.sum()), out_channels), fan_in)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels, *self.output_size)) if bias else None

    def _present_taps(self) -> Tensor:
        """Which rows of the full per-position weights ``[L*kh*kw*C]`` (order ``(h, w, i, j, c)``)
        can see the input: all but, with zero padding, those whose tap is on the padding."""
        kh, kw = self.kernel_size
        positions = self.output_size[0] * self.output_size[1]
        if self.padding_mode != "zeros":
            return torch.ones(positions * kh * kw * self.in_channels, dtype=torch.bool)
        ones = F.pad(torch.ones(1, 1, *self.input_size), self.pad)
        on_input = (
            _Patches.apply(ones, self.kernel_size, self.stride, self.output_size).view(
                positions, kh * kw, 1
            )
            > 0
        )
        return on_input.expand(-1, -1, self.in_channels).reshape(-1)

    def position_weights(self) -> Tensor:
        """The weights as ``[L, kh*kw*C, F]``, zero at absent taps (a view of ``weight`` when none
        is absent)."""
        positions = self.output_size[0] * self.output_size[1]
        if self.taps is None:
            return self.weight.view(positions, -1, self.out_channels)
        rows = positions * self.kernel_size[0] * self.kernel_size[1] * self.in_channels
        full = self.weight.new_zeros(rows, self.out_channels).index_copy(0, self.taps, self.weight)
        return full.view(positions, -1, self.out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, C, H, W]`` -> ``[N, F, H_out, W_out]``."""
        self._check_input(x)
        out = self._positionwise(x, self.position_weights())
        return out if self.bias is None else out + self.bias

    def kernel(self) -> Tensor:
        """The per-position kernels as ``[H_out, W_out, F, C, kh, kw]``, zero at absent taps."""
        h, w = self.output_size
        return (
            self.position_weights()
            .view(h, w, *self.kernel_size, self.in_channels, self.out_channels)
            .permute(0, 1, 5, 4, 2, 3)
        )

    @torch.no_grad()
    def load_kernel(self, kernel: Tensor, bias: Tensor | None = None) -> None:
        """Set the weights from ``[H_out, W_out, F, C, kh, kw]`` kernels (and bias
        ``[F, H_out, W_out]``); the entries of absent taps are dropped (they multiply zero
        padding)."""
        expected = (*self.output_size, self.out_channels, self.in_channels, *self.kernel_size)
        check_tensor("kernel", kernel, dims="[H_out, W_out, F, C, kh, kw]", finite=True)
        if tuple(kernel.shape) != expected:
            raise ValueError(f"kernel must have shape {expected}, got {tuple(kernel.shape)}")
        if bias is not None:
            if self.bias is None:
                raise ValueError("bias given but the layer was built with bias=False")
            check_tensor("bias", bias, dims="[F, H_out, W_out]", finite=True)
            if bias.shape != self.bias.shape:
                raise ValueError(
                    f"bias must have shape {tuple(self.bias.shape)}, got {tuple(bias.shape)}"
                )
            self.bias.copy_(bias)
        rows = kernel.permute(0, 1, 4, 5, 3, 2).reshape(
            -1, self.out_channels
        )  # order (h, w, i, j, c)
        self.weight.copy_(rows if self.taps is None else rows[self.taps])


class InputCombiningHead(nn.Module):
    """Input-dependent combining logits, the authors' head: ``[N, C, H, W]`` ->
    ``[N, K, H_out, W_out]``.

    A 1x1 conv to ``K`` channels; its spatial mean; 3x3 depthwise convs of it at dilations 1,
    2, 4, 8 without padding (``[H - 2d, W - 2d]``; those that fit, ``2d + 1 <= min(H, W)``);
    each of these resized bilinearly to ``output_size`` and concatenated; 1x1 conv to ``3K`` +
    ReLU; 1x1 conv to ``6K`` + sigmoid; 1x1 conv to ``K``.

    resize: ``aligned`` (the authors', TensorFlow's ``align_corners=True``: the corner pixels
    of the map and of the output coincide) or ``half_pixel`` (``align_corners=False``, the
    default of PyTorch's and TensorFlow 2's resizes: pixels are unit squares). Neither puts each
    feature exactly over the output position it serves; ``half_pixel`` is kept to compare.
    init_logit: ``None`` keeps PyTorch's default initialisation of every conv, the last one
    included (the authors keep their framework's default, Keras' Glorot-uniform weights and zero
    bias; PyTorch's uniform ``+-1/sqrt(fan_in)`` is its natural analogue), so the logits start
    varying with the input and the position; a number zeroes the last conv's weights and sets
    its biases to that number, so the logits start constant.
    """

    def __init__(
        self,
        in_channels: int,
        rank: int,
        input_size: tuple[int, int],
        output_size: tuple[int, int],
        init_logit: float | None = None,
        *,
        resize: str = "aligned",
    ) -> None:
        super().__init__()
        in_channels, rank = (
            check_positive_int("in_channels", in_channels),
            check_positive_int("rank", rank),
        )
        input_size = check_int_tuple("input_size", input_size, 2, dims="(height, width)")
        self.output_size = check_int_tuple("output_size", output_size, 2, dims="(height, width)")
        self.resize = check_choice("resize", resize, RESIZE_MODES)
        self.reduce = nn.Conv2d(in_channels, rank, 1)
        self.dilated = nn.ModuleList(
            nn.Conv2d(rank, rank, 3, dilation=d, groups=rank)
            for d in _HEAD_DILATIONS
            if 2 * d + 1 <= min(input_size)
        )
        features = rank * (2 + len(self.dilated))
        self.mlp = nn.Sequential(
            nn.Conv2d(features, 3 * rank, 1),
            nn.ReLU(),
            nn.Conv2d(3 * rank, 6 * rank, 1),
            nn.Sigmoid(),
            nn.Conv2d(6 * rank, rank, 1),
        )
        if init_logit is not None:
            init_logit = check_number("init_logit", init_logit)
            with torch.no_grad():
                self.mlp[-1].weight.zero_()
                self.mlp[-1].bias.fill_(init_logit)

    def _resize(self, t: Tensor) -> Tensor:
        """``[N, K, h, w]`` -> ``[N, K, H_out, W_out]``, bilinear (``resize``)."""
        if tuple(t.shape[-2:]) == self.output_size:
            return t
        return F.interpolate(
            t, size=self.output_size, mode="bilinear", align_corners=self.resize == "aligned"
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[N, C, H, W]`` -> logits ``[N, K, H_out, W_out]``."""
        a = self.reduce(x)
        lowd, *dilated = (self._resize(t) for t in (a, *(conv(a) for conv in self.dilated)))
        pooled = a.mean(dim=(-2, -1), keepdim=True).expand_as(lowd)
        return self.mlp(torch.cat([lowd, pooled, *dilated], dim=1))


class _Combine(torch.autograd.Function):
    """``out[n, f, h, w] = sum_k y[n, k, f, h, w] * alpha[n or 0, k, 0, h, w]``.

    ``y`` ``[N, K, F, H, W]``, ``alpha`` ``[N or 1, K, 1, H, W]``. The same numbers as
    ``(y * alpha).sum(1)`` (or an einsum), computed slice by slice over ``K`` so that no
    ``[N, K, F, H, W]`` temporary is made: measured about twice as fast on CPU as the autograd of
    ``(y * alpha).sum(1)`` and several times faster than the einsum. The backward is written in
    differentiable operations, so double backward works.
    """

    @staticmethod
    def forward(ctx, y: Tensor, alpha: Tensor) -> Tensor:
        ctx.save_for_backward(y, alpha)
        out = y[:, 0] * alpha[:, 0]
        for k in range(1, y.shape[1]):
            out.addcmul_(y[:, k], alpha[:, k])
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
        y, alpha = ctx.saved_tensors
        grad_y = grad[:, None] * alpha
        dims = (1,) if alpha.shape[0] == y.shape[0] else (0, 1)
        grad_alpha = torch.stack(
            [(grad * y[:, k]).sum(dim=dims, keepdim=True) for k in range(y.shape[1])], dim=1
        )
        return grad_y, grad_alpha.view_as(alpha)


class LowRankLocallyConnected2d(_SpatialLayer):
    """Low-rank locally connected layer: ``rank`` basis banks mixed per output position.

    combining: how the logits ``[H_out, W_out, K]`` are parametrised:
      ``row_col`` ``row[h, k] + col[w, k]`` (``K*(H_out+W_out)`` numbers, the default);
      ``free`` one per position (``K*H_out*W_out``); ``row`` / ``col`` one axis only;
      ``input`` computed from the layer's input by :class:`InputCombiningHead` (per example).
    normalize: over ``k``: ``softmax``, ``l2`` (unit L2 norm) or ``none``.
    Initialisation (the authors'): every logit ``1/sqrt(K)`` (``row_col``: half of it in the row
    and half in the column term), so softmax starts at weights ``1/K`` (a convolution with the
    mean of the bases), and ``l2`` and ``none`` at ``1/sqrt(K)`` (``sqrt(K)`` times the mean; with
    independent He-uniform bases this keeps a single bank's output variance); ``l2`` logits start
    with unit norm. Bases He-uniform (fan-in ``C*kh*kw``).
    combining_init (``input`` only): ``default``, the head's last conv keeps PyTorch's default
    initialisation (the authors keep Keras' default; see :class:`InputCombiningHead`), so the
    weights start non-uniform; or ``zeros``, it starts at zero weights and biases ``1/sqrt(K)``,
    so the layer starts exactly as the convolution the shared modes start as, and a net of them
    as the corresponding conv net. resize (``input`` only): see :class:`InputCombiningHead`.
    spatial_bias: shared across channels, structured like the combining weights
    (``row_bias[h] + col_bias[w]``, one axis for ``row``/``col``, a free ``[H_out, W_out]`` for
    ``free``/``input``); bias: per channel ``[F]``. Both start at zero.
    padding: an int, a pair, ``valid`` or ``same`` (TensorFlow's for any stride:
    :func:`same_padding`).
    route: ``auto`` (:meth:`route_for` picks per batch), ``conv`` or ``kernel`` (not for ``input``);
    the routes give the same numbers to rounding.
    Parameters: ``weight`` ``[K*F, C, kh, kw]`` (bank ``k`` is ``weight[k*F:(k+1)*F]``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size2,
        input_size: Size2,
        rank: int,
        *,
        stride: Size2 = 1,
        padding: Padding = 0,
        padding_mode: str = "zeros",
        combining: str = "row_col",
        normalize: str = "softmax",
        spatial_bias: bool = True,
        bias: bool = True,
        combining_init: str = "default",
        resize: str = "aligned",
        route: str = "auto",
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, input_size, stride, padding, padding_mode
        )
        self.rank = check_positive_int("rank", rank)
        self.combining = check_choice("combining", combining, COMBINING_MODES)
        self.normalize = check_choice("normalize", normalize, NORMALIZATIONS)
        self.route = check_choice("route", route, ROUTES)
        check_choice("combining_init", combining_init, COMBINING_INITS)
        check_choice("resize", resize, RESIZE_MODES)
        check_bool("spatial_bias", spatial_bias)
        check_bool("bias", bias)
        if combining != "input":
            for name, value, default in (
                ("combining_init", combining_init, "default"),
                ("resize", resize, "aligned"),
            ):
                if value != default:
                    raise ValueError(
                        f"{name}={value!r} applies to combining='input' only, got "
                        f"combining={combining!r}"
                    )
        elif route == "kernel":
            raise ValueError(
                "route='kernel' needs combining weights shared by the batch; combining='input' "
                "allows route='auto' or 'conv'"
            )
        kh, kw = self.kernel_size
        h, w = self.output_size
        self.weight = nn.Parameter(
            _he_uniform_(
                torch.empty(rank * out_channels, in_channels, kh, kw), in_channels * kh * kw
            )
        )
        init = 1.0 / math.sqrt(rank)
        rows = combining in ("row_col", "row")
        cols = combining in ("row_col", "col")
        share = init / 2 if combining == "row_col" else init
        self.row_logits = nn.Parameter(torch.full((h, rank), share)) if rows else None
        self.col_logits = nn.Parameter(torch.full((w, rank), share)) if cols else None
        self.logits = nn.Parameter(torch.full((h, w, rank), init)) if combining == "free" else None
        head_init = init if combining_init == "zeros" else None
        self.head = (
            InputCombiningHead(
                in_channels, rank, self.input_size, self.output_size, head_init, resize=resize
            )
            if combining == "input"
            else None
        )
        unshared = combining in ("free", "input")
        self.row_bias = nn.Parameter(torch.zeros(h)) if spatial_bias and rows else None
        self.col_bias = nn.Parameter(torch.zeros(w)) if spatial_bias and cols else None
        self.spatial_bias = nn.Parameter(torch.zeros(h, w)) if spatial_bias and unshared else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def bases(self) -> Tensor:
        """The basis banks ``[K, F, C, kh, kw]`` (a view of ``weight``)."""
        return self.weight.view(self.rank, self.out_channels, self.in_channels, *self.kernel_size)

    def _normalize(self, logits: Tensor) -> Tensor:
        """Normalise ``[..., K]`` logits over the last axis."""
        if self.normalize == "softmax":
            return torch.softmax(logits, dim=-1)
        if self.normalize == "l2":
            return F.normalize(logits, p=2.0, dim=-1, eps=1e-12)
        return logits

    def _shared_logits(self) -> Tensor:
        h, w = self.output_size
        if self.logits is not None:
            return self.logits
        logits = torch.zeros(h, w, self.rank, dtype=self.weight.dtype, device=self.weight.device)
        if self.row_logits is not None:
            logits = logits + self.row_logits[:, None, :]
        if self.col_logits is not None:
            logits = logits + self.col_logits[None, :, :]
        return logits

    def combining_weights(self, inputs: Tensor | None = None) -> Tensor:
        """Normalised combining weights: ``[H_out, W_out, K]``, or ``[N, H_out, W_out, K]`` for
        ``combining='input'`` (which needs the layer's ``inputs`` ``[N, C, H, W]``)."""
        if self.head is None:
            if inputs is not None:
                raise ValueError(
                    f"inputs are only used with combining='input', not combining={self.combining!r}"
                )
            return self._normalize(self._shared_logits())
        if inputs is None:
            raise ValueError(
                "combining='input' computes its weights from the input: pass inputs [N, C, H, W]"
            )
        self._check_input(inputs, "inputs")
        return self._normalize(self.head(inputs).permute(0, 2, 3, 1))

    def _spatial_bias(self) -> Tensor | None:
        """The bias added at each output ``[F, H_out, W_out]`` (broadcastable), or ``None``."""
        parts = []
        if self.spatial_bias is not None:
            parts.append(self.spatial_bias)
        if self.row_bias is not None:
            parts.append(self.row_bias[:, None])
        if self.col_bias is not None:
            parts.append(self.col_bias[None, :])
        if self.bias is not None:
            parts.append(self.bias[:, None, None])
        if not parts:
            return None
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return total

    def equivalent_bias(self) -> Tensor:
        """The total bias ``[F, H_out, W_out]`` (spatial + channel; zeros if the layer has none)."""
        b = self._spatial_bias()
        zeros = torch.zeros(
            self.out_channels, *self.output_size, dtype=self.weight.dtype, device=self.weight.device
        )
        return zeros if b is None else zeros + b

    def equivalent_kernel(self, inputs: Tensor | None = None) -> Tensor:
        """Per-position kernels ``sum_k alpha[h, w, k] * bank_k``: ``[H_out, W_out, F, C, kh, kw]``
        (with a leading ``N`` for ``combining='input'``, which needs ``inputs``)."""
        alpha = self.combining_weights(inputs)
        return torch.einsum("...k,kfcij->...fcij", alpha, self.bases())

    def route_for(self, batch: int) -> str:
        """The route :meth:`forward` takes for a batch of ``batch`` inputs: ``conv`` or ``kernel``.

        ``route='auto'`` compares estimated times, in a convolution's multiply-adds per output
        channel and position (``D = C*kh*kw`` multiply-adds per output of one conv):
        conv route ``K * N * (D + COMBINE_COST)`` (``K`` convolutions' worth in one conv, then the
        combine); kernel route ``KERNEL_ROUTE_SLOWDOWN * (N + K) * D`` (``K`` to build the
        per-position kernels, ``N`` to apply them, in small matrix products that run slower per
        multiply-add). It takes the cheaper: at ``D = 576`` (64 channels, 3x3) and batch 32 the
        kernel route from ``K = 6``; at ``D = 9`` (one input channel) from ``K = 1``.
        ``combining='input'`` always takes the conv route (its kernels differ per example:
        building them alone costs ``K`` convolutions).
        """
        batch = check_positive_int("batch", batch)
        if self.route != "auto":
            return self.route
        if self.head is not None:
            return "conv"
        depth = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        conv = self.rank * batch * (depth + COMBINE_COST)
        kernel = KERNEL_ROUTE_SLOWDOWN * (batch + self.rank) * depth
        return "kernel" if kernel < conv else "conv"

    def _position_kernels(self) -> Tensor:
        """The kernel route's per-position kernels ``sum_k alpha[h, w, k] * bank_k`` as
        ``[H_out*W_out, kh*kw*C, F]`` (patch order ``(i, j, c)``, positions row-major)."""
        alpha = self.combining_weights().reshape(-1, self.rank)  # [L, K]
        banks = self.bases().permute(0, 3, 4, 2, 1).reshape(self.rank, -1)  # [K, kh*kw*C*F]
        return (alpha @ banks).view(alpha.shape[0], -1, self.out_channels)

    def _combined_convs(self, x: Tensor) -> Tensor:
        """The conv route: one conv with ``K*F`` outputs ``[N, K*F, H_out, W_out]``, then the
        weighted sum over ``K``."""
        n = x.shape[0]
        y = F.conv2d(self._pad(x), self.weight, stride=self.stride)
        y = y.view(n, self.rank, self.out_channels, *self.output_size)
        if self.head is None:
            alpha = self.combining_weights().permute(2, 0, 1)[
                None, :, None
            ]  # [1, K, 1, H_out, W_out]
        else:
            alpha = self.combining_weights(x).permute(0, 3, 1, 2)[
                :, :, None
            ]  # [N, K, 1, H_out, W_out]
        return _Combine.apply(y, alpha)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, C, H, W]`` -> ``[N, F, H_out, W_out]`` by the route of :meth:`route_for`."""
        self._check_input(x)
        if self.route_for(x.shape[0]) == "kernel":
            out = self._positionwise(x, self._position_kernels())
        else:
            out = self._combined_convs(x)
        b = self._spatial_bias()
        return out if b is None else out + b

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, rank={self.rank}, combining={self.combining!r}, "
            f"normalize={self.normalize!r}, route={self.route!r}"
        )


class CoordConv2d(nn.Module):
    """A convolution whose input gets two extra channels: the row and column coordinates in [-1, 1].

    ``[N, C, H, W]`` -> ``[N, F, H_out, W_out]``; the conv is an ``nn.Conv2d`` with
    ``C + 2`` input channels (its default initialisation), so ``(C+2)*F*kh*kw (+F)`` parameters.
    The input and its coordinate channels are padded together (``padding`` as for the other
    layers: ``same`` is TensorFlow's, any stride).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size2,
        *,
        stride: Size2 = 1,
        padding: Padding = 0,
        padding_mode: str = "zeros",
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        self.padding_mode = check_choice("padding_mode", padding_mode, PADDING_MODES)
        self.kernel_size, self.stride = _pair("kernel_size", kernel_size), _pair("stride", stride)
        self.padding = _check_padding(padding)
        self.conv = nn.Conv2d(
            in_channels + 2,
            out_channels,
            self.kernel_size,
            stride=self.stride,
            bias=check_bool("bias", bias),
        )

    def forward(self, x: Tensor) -> Tensor:
        _check_layer_input("x", x, self.in_channels)
        n, _, h, w = x.shape
        rows = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device)[:, None].expand(h, w)
        cols = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device)[None, :].expand(h, w)
        coords = torch.stack([rows, cols]).expand(n, 2, h, w)
        pad = _padding_amounts(self.padding, self.kernel_size, self.stride, (h, w))
        return self.conv(
            F.pad(torch.cat([x, coords], dim=1), pad, mode=_TORCH_PAD_MODE[self.padding_mode])
        )


def lrlc_layers(model: nn.Module) -> list[LowRankLocallyConnected2d]:
    """The LRLC layers of ``model``, in module order."""
    check_type("model", model, nn.Module, "a torch.nn.Module")
    return [m for m in model.modules() if isinstance(m, LowRankLocallyConnected2d)]


@torch.no_grad()
def layer_combining_weights(model: nn.Module, inputs: Tensor, index: int = 0) -> Tensor:
    """Combining weights ``[N, H_out, W_out, K]`` of the ``index``-th LRLC layer of ``model`` for
    each of ``inputs`` (``[N, C, H, W]``, the model's inputs): the layer's own weights for every
    example in the shared modes; for ``combining='input'``, computed from the layer's input
    during one forward pass in eval mode (the model's mode is restored)."""
    layers = lrlc_layers(model)
    index = check_positive_int("index", index, minimum=0)
    if index >= len(layers):
        raise ValueError(f"index={index} but the model has {len(layers)} LRLC layer(s)")
    check_tensor("inputs", inputs, ndim=4, dims="[N, C, H, W]", dtype_kind="float")
    layer = layers[index]
    if layer.head is None:
        return layer.combining_weights().detach().expand(len(inputs), -1, -1, -1)
    captured: list[Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    was_training = model.training
    try:
        model.eval()(inputs)
    finally:
        handle.remove()
        model.train(was_training)
    return layer.combining_weights(captured[0])


def mean_combining_weights(model: nn.Module, inputs: Tensor, index: int = 0) -> Tensor:
    """Combining weights ``[H_out, W_out, K]`` of the ``index``-th LRLC layer of ``model``: the
    mean over ``inputs`` of :func:`layer_combining_weights` (the layer's weights in the shared
    modes)."""
    return layer_combining_weights(model, inputs, index).mean(0)
