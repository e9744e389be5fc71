"""The LRLC diagram draws the layer's own bases, combining weights and per-position kernels."""

import io

import matplotlib
import pytest
import torch
from PIL import Image

from pilcro_lib.lrlc_diagram import BASES, diagram_parts, lrlc_diagram, pattern_layer

matplotlib.use("Agg")
POSITIONS = ((1, 1), (8, 8))


def test_kernels_are_the_weighted_sums_of_the_banks():
    layer = pattern_layer(12)
    torch.manual_seed(0)
    with torch.no_grad():  # any bases and logits, not only the pattern's
        layer.weight.normal_()
        layer.row_logits.normal_()
        layer.col_logits.normal_()
    parts = diagram_parts(layer, POSITIONS)
    logits = layer.row_logits[:, None, :] + layer.col_logits[None, :, :]  # [H, W, K]
    alpha = torch.softmax(logits, dim=-1).detach()
    banks = layer.weight.detach()[:, 0]  # [K, 3, 3]
    for (h, w), kernel in zip(POSITIONS, parts["kernels"]):
        direct = sum(alpha[h, w, k] * banks[k] for k in range(3))
        torch.testing.assert_close(kernel, direct)
    torch.testing.assert_close(parts["alpha"], alpha.permute(2, 0, 1))
    torch.testing.assert_close(parts["bases"], banks)


def test_the_pattern_puts_each_basis_where_it_says():
    parts = diagram_parts(pattern_layer(12), POSITIONS)
    torch.testing.assert_close(parts["bases"], BASES)
    alpha = parts["alpha"]  # [3, 10, 10]
    assert alpha[0, 0, 5] > 0.9 and alpha[1, 9, 0] > 0.9 and alpha[2, 9, 9] > 0.9
    torch.testing.assert_close(alpha.sum(0), torch.ones(10, 10))
    # top-left mixes the two edges half and half; bottom-right is the centre spot
    torch.testing.assert_close(parts["kernels"][0], (BASES[0] + BASES[1]) / 2, atol=1e-2, rtol=0)
    torch.testing.assert_close(parts["kernels"][1], BASES[2], atol=1e-2, rtol=0)


def test_the_figure_shows_the_numbers_and_fits_the_column():
    layer = pattern_layer(12)
    parts = diagram_parts(layer, POSITIONS)
    fig = lrlc_diagram(layer, POSITIONS)
    axes = fig.axes
    for k in range(3):
        assert (axes[k].images[0].get_array() == parts["bases"][k].numpy()).all()
        assert (axes[3 + k].images[0].get_array() == parts["alpha"][k].numpy()).all()
    for i in range(2):
        assert (axes[6 + i].images[0].get_array() == parts["kernels"][i].numpy()).all()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    assert Image.open(buffer).size[0] <= 845
    matplotlib.pyplot.close(fig)


def test_bad_positions_and_ranks_are_refused():
    layer = pattern_layer(12)
    with pytest.raises(ValueError, match="outside"):
        diagram_parts(layer, ((10, 0), (0, 0)))
    with pytest.raises(ValueError, match="2 positions"):
        lrlc_diagram(layer, ((0, 0),))
