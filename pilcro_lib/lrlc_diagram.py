"""A diagram of the low-rank locally connected layer, drawn from a real layer's own numbers.

:func:`pattern_layer` builds a :class:`~pilcro_lib.layers.LowRankLocallyConnected2d` whose bases
are simple, recognisable 3x3 kernels and whose row and column logits form a visible pattern;
:func:`diagram_parts` reads its bases, its combining weights and its per-position kernels;
:func:`lrlc_diagram` draws them: the bases, the weights over the output positions, and the
weighted sums at two output positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torch import Tensor

from pilcro_lib.layers import LowRankLocallyConnected2d
from pilcro_lib.plotting import new_figure
from pilcro_lib.utils import check_positive_int

#: Three recognisable 3x3 bases: a horizontal edge, a vertical edge and a centre spot.
BASES = torch.tensor(
    [
        [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]],
        [[1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [1.0, 0.0, -1.0]],
        [[-0.5, -0.5, -0.5], [-0.5, 1.0, -0.5], [-0.5, -0.5, -0.5]],
    ]
)


def pattern_layer(input_size: int = 12, *, strength: float = 4.0) -> LowRankLocallyConnected2d:
    """A rank-3, one-channel, 3x3, valid LRLC on ``input_size`` x ``input_size`` inputs.

    Its bases ``[3, 1, 1, 3, 3]`` are :data:`BASES`; its logits make basis 0 count at the top
    (a row ramp), basis 1 at the left and basis 2 at the right (opposite column ramps), each
    ramp running from ``+strength`` to ``-strength``; no biases.
    """
    size = check_positive_int("input_size", input_size, minimum=4)
    layer = LowRankLocallyConnected2d(1, 1, 3, size, 3, spatial_bias=False, bias=False)
    h, w = layer.output_size
    rows = strength * torch.linspace(1.0, -1.0, h)  # [H_out]: +strength at the top
    cols = strength * torch.linspace(1.0, -1.0, w)  # [W_out]: +strength at the left
    with torch.no_grad():
        layer.weight.copy_(BASES[:, None])  # [K*F, C, 3, 3] with F = C = 1
        layer.row_logits.zero_()
        layer.col_logits.zero_()
        layer.row_logits[:, 0] = rows
        layer.col_logits[:, 1] = cols
        layer.col_logits[:, 2] = -cols
    return layer


def diagram_parts(
    layer: LowRankLocallyConnected2d,
    positions: Sequence[tuple[int, int]],
    *,
    out_channel: int = 0,
    in_channel: int = 0,
) -> dict[str, Tensor]:
    """The numbers the diagram draws, read from ``layer`` (row/column, free or row/col logits).

    Returns ``bases`` ``[K, kh, kw]``, ``alpha`` ``[K, H_out, W_out]`` (the combining weights)
    and ``kernels`` ``[P, kh, kw]``, the per-position kernels of
    :meth:`~pilcro_lib.layers.LowRankLocallyConnected2d.equivalent_kernel` at the ``P``
    ``positions`` ``(h, w)``, for one output and one input channel.
    """
    h_out, w_out = layer.output_size
    for h, w in positions:
        if not (0 <= h < h_out and 0 <= w < w_out):
            raise ValueError(f"position {(h, w)} is outside the {h_out}x{w_out} outputs")
    with torch.no_grad():
        kernel = layer.equivalent_kernel()[..., out_channel, in_channel, :, :]
        return {
            "bases": layer.bases()[:, out_channel, in_channel].clone(),
            "alpha": layer.combining_weights().permute(2, 0, 1).clone(),
            "kernels": torch.stack([kernel[h, w] for h, w in positions]),
        }


def lrlc_diagram(
    layer: LowRankLocallyConnected2d,
    positions: Sequence[tuple[int, int]] = ((1, 1), (8, 8)),
    *,
    width: float = 7.6,
) -> Figure:
    """Draw ``layer`` (rank at most 3) as bases, combining weights and two per-position kernels.

    Top row: the ``K`` bases (one symmetric red-blue scale, shared with the bottom row).
    Middle row: ``alpha[k]`` over the output positions (one 0-to-1 scale), the two
    ``positions`` marked. Bottom row: the kernel at each marked position, titled with its
    weights ``alpha[h, w, :]``. The figure is ``width`` inches wide.
    """
    parts = diagram_parts(layer, positions)
    bases, alpha, kernels = parts["bases"], parts["alpha"], parts["kernels"]
    rank = bases.shape[0]
    if rank > 3 or len(positions) != 2:
        raise ValueError(f"draws rank <= 3 and 2 positions, got rank {rank}, {len(positions)}")
    fig, axes = new_figure(3, 3, width=width / 3, height=2.5, layout="constrained")
    top = float(torch.cat([bases, kernels]).abs().max())
    style = dict(cmap="RdBu_r", vmin=-top, vmax=top)
    markers = (("o", "○"), ("s", "□"))
    for k in range(3):
        ax_b, ax_a = axes[0, k], axes[1, k]
        if k >= rank:
            ax_b.set_visible(False)
            ax_a.set_visible(False)
            continue
        kernel_image = ax_b.imshow(bases[k].numpy(), **style)
        ax_b.set_title(f"basis $W_{k}$", fontsize=9)
        alpha_image = ax_a.imshow(alpha[k].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        ax_a.set_title(f"$\\alpha[h, w, {k}]$", fontsize=9)
        ax_a.set_xlabel("output column $w$", fontsize=8)
        ax_a.set_ylabel("output row $h$", fontsize=8)
        for (h, w), (marker, _) in zip(positions, markers):
            ax_a.plot(w, h, marker, ms=8, mfc="none", mec="white", mew=2)
    for ax, (h, w), kernel, (_, symbol) in zip(axes[2], positions, kernels, markers):
        ax.imshow(kernel.numpy(), **style)
        weights = ", ".join(f"{a:.2f}" for a in alpha[:, h, w].tolist())
        ax.set_title(f"{symbol} kernel at ({h}, {w})\n$\\alpha$ = ({weights})", fontsize=9)
    axes[2, 2].axis("off")
    axes[2, 2].text(
        0.0,
        0.5,
        "$W_{hw} = \\sum_k \\alpha[h, w, k]\\, W_k$\n(same colour scale\nas the bases)",
        fontsize=9,
        va="center",
    )
    for ax in (*axes[0], *axes[2, :2]):
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[1]:
        ax.tick_params(labelsize=8)
    fig.colorbar(kernel_image, ax=list(axes[0]), shrink=0.9, label="kernel weight")
    fig.colorbar(alpha_image, ax=list(axes[1]), shrink=0.9, label="combining weight α")
    return fig
