"""Tests of pilcro_lib.corruptions against hand-made references."""

import pytest
import torch
import torch.nn.functional as F

from pilcro_lib.corruptions import CORRUPTIONS, corrupt, corrupted
from pilcro_lib.data import ImageDataset


def images(n=3, c=2, h=9, w=8):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_every_corruption_keeps_shape_and_range_and_leaves_the_input(kind):
    x = images()
    before = x.clone()
    out = corrupt(x, kind, 2 if kind in ("shift", "border_occlusion", "corner_occlusion") else 0.7)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(x, before) and not torch.equal(out, x)


def test_shift_moves_pixels_down_right_and_fills_with_zero():
    x = images()
    out = corrupt(x, "shift", 3)
    assert torch.equal(out[..., 3:, 3:], x[..., :-3, :-3])
    assert (out[..., :3, :] == 0).all() and (out[..., :, :3] == 0).all()


def test_occlusions_zero_exactly_the_border_ring_or_the_corner():
    x = images()
    ring = corrupt(x, "border_occlusion", 2)
    assert torch.equal(ring[..., 2:-2, 2:-2], x[..., 2:-2, 2:-2])
    mask = torch.ones(9, 8, dtype=torch.bool)
    mask[2:-2, 2:-2] = False
    assert (ring[..., mask] == 0).all()
    corner = corrupt(x, "corner_occlusion", 4)
    assert (corner[..., :4, :4] == 0).all()
    corner[..., :4, :4] = x[..., :4, :4]
    assert torch.equal(corner, x)


def test_blur_matches_a_separable_gaussian_and_keeps_a_constant_image():
    x = images(1, 1, 12, 12)
    sigma = 1.0
    t = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-0.5 * t**2)
    k = k / k.sum()
    padded = F.pad(x, (3, 3, 3, 3), mode="replicate")
    ref = F.conv2d(padded, (k[:, None] * k[None, :]).view(1, 1, 7, 7))
    assert torch.allclose(corrupt(x, "blur", sigma), ref, atol=1e-6)
    flat = torch.full((1, 1, 6, 6), 0.3)
    assert torch.allclose(corrupt(flat, "blur", 2.0), flat)


def test_contrast_scales_around_each_images_mean_and_noise_is_seeded_and_clipped():
    x = images() * 0.5 + 0.25
    low = corrupt(x, "contrast", 0.5)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(low, mean + 0.5 * (x - mean))
    a, b = corrupt(x, "gaussian_noise", 0.3, seed=1), corrupt(x, "gaussian_noise", 0.3, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, corrupt(x, "gaussian_noise", 0.3, seed=2))
    assert a.min() == 0 and a.max() == 1  # clipped
    assert torch.equal(corrupt(x, "gaussian_noise", 0.0), x)


def test_corrupted_dataset_keeps_labels_and_classes():
    data = ImageDataset(
        (images(4, 1, 8, 8) * 255).to(torch.uint8), torch.tensor([0, 1, 1, 0]), ["a", "b"], "toy"
    )
    out = corrupted(data, "corner_occlusion", 3)
    assert torch.equal(out.labels, data.labels) and out.classes == data.classes
    assert torch.equal(out.images, corrupt(data.float_images(), "corner_occlusion", 3))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(kind="rain", severity=1), ValueError, "kind='rain' is not allowed"),
        (dict(kind="blur", severity=-1.0), ValueError, "severity must be a finite number >= 0"),
        (dict(kind="shift", severity=1.5), TypeError, "severity must be an integer"),
        (
            dict(kind="border_occlusion", severity=5),
            ValueError,
            r"severity must be an integer in \[0, 3\]",
        ),
        (dict(kind="blur", severity=1.0, seed=-1), ValueError, "seed must be an integer"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        corrupt(images(), **kwargs)


def test_images_must_be_a_float_batch():
    with pytest.raises(ValueError, match="images must be a 4-D tensor"):
        corrupt(torch.rand(8, 8), "blur", 1.0)
    with pytest.raises(TypeError, match="dataset must be an instance of ImageDataset"):
        corrupted(torch.rand(1, 1, 8, 8), "blur", 1.0)
