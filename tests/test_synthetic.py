import pytest
import torch

from pilcro_lib.data import ImageDataset
from pilcro_lib.synthetic import on_noise, paste, position_grid, random_offsets


def _toy(n=5, size=4):
    images = torch.rand(n, 2, size, size)
    return ImageDataset(images, torch.arange(n) % 3, ["a", "b", "c"], "toy")


def test_paste_matches_a_naive_loop():
    data = _toy()
    offsets = random_offsets(len(data), 4, 9, seed=1)
    out = paste(data, 9, offsets)
    expected = torch.zeros(5, 2, 9, 9)
    for i, (r, c) in enumerate(offsets.tolist()):
        expected[i, :, r : r + 4, c : c + 4] = data.images[i]
    assert torch.equal(out.images, expected)
    assert torch.equal(out.labels, data.labels)


def test_on_noise_aligned_is_centred_and_seeded():
    data = _toy()
    a = on_noise(data, 10, aligned=True, seed=0)
    assert torch.equal(a.images[:, :, 3:7, 3:7], data.images)
    b, c = on_noise(data, 10, aligned=False, seed=4), on_noise(data, 10, aligned=False, seed=4)
    assert torch.equal(b.images, c.images)
    assert ((b.offsets >= 0) & (b.offsets <= 6)).all()


def test_position_grid_covers_corners():
    grid = position_grid(_toy(), 10, 3)
    assert [pos for pos, _ in grid] == [(r, c) for r in (0, 3, 6) for c in (0, 3, 6)]


def test_bad_arguments():
    data = _toy()
    with pytest.raises(ValueError, match="canvas_size"):
        paste(data, 3, torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="offsets"):
        paste(data, 6, torch.full((5, 2), 3))
    with pytest.raises(ValueError, match="background"):
        paste(data, 6, torch.zeros(5, 2, dtype=torch.long), background="pink")
