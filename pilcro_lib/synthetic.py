"""Generated, seeded image tasks where *where* things are is the point.

Every function returns an :class:`~pilcro_lib.data.ImageDataset` (images in [0, 1]) and is
fully determined by its ``seed``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pilcro_lib.data import ImageDataset
from pilcro_lib.utils import (
    MAX_SEED,
    check_bool,
    check_choice,
    check_positive_int,
    check_tensor,
    check_type,
)


def _check_canvas(canvas_size: int, image_size: int) -> None:
    check_positive_int("canvas_size", canvas_size)
    if canvas_size < image_size:
        raise ValueError(f"canvas_size={canvas_size} must be at least the image size {image_size}")


def paste(
    dataset: ImageDataset,
    canvas_size: int,
    offsets: Tensor,
    *,
    background: str = "zeros",
    seed: int = 0,
) -> ImageDataset:
    """Paste every image of ``dataset`` onto a ``canvas_size`` square canvas at ``offsets``.

    offsets: ``[N, 2]`` integer (row, column) of each image's top-left corner.
    background: ``zeros`` or ``noise`` (uniform [0, 1], seeded). Returns an ``ImageDataset``
    of ``[N, C, canvas_size, canvas_size]`` images with an ``offsets`` attribute.
    """
    check_type("dataset", dataset, ImageDataset)
    check_choice("background", background, ("zeros", "noise"))
    seed = check_positive_int("seed", seed, minimum=0, maximum=MAX_SEED)
    n, c, h, w = dataset.images.shape
    _check_canvas(canvas_size, max(h, w))
    offsets = check_tensor(
        "offsets", torch.as_tensor(offsets), dims="[N, 2]", dtype_kind="integer"
    ).long()
    if offsets.shape != (n, 2):
        raise ValueError(f"offsets must have shape [{n}, 2], got {tuple(offsets.shape)}")
    if (
        offsets.min() < 0
        or (offsets[:, 0] + h).max() > canvas_size
        or (offsets[:, 1] + w).max() > canvas_size
    ):
        raise ValueError(
            f"offsets must keep each {h}x{w} image inside the {canvas_size}x{canvas_size} canvas"
        )
    images = dataset.float_images()
    if background == "noise":
        g = torch.Generator().manual_seed(seed)
        canvas = torch.rand(n, c, canvas_size, canvas_size, generator=g)
    else:
        canvas = torch.zeros(n, c, canvas_size, canvas_size)
    rows = offsets[:, 0, None] + torch.arange(h)  # [N, h]
    cols = offsets[:, 1, None] + torch.arange(w)  # [N, w]
    idx_n = torch.arange(n)[:, None, None, None]
    idx_c = torch.arange(c)[None, :, None, None]
    canvas[idx_n, idx_c, rows[:, None, :, None], cols[:, None, None, :]] = images
    out = ImageDataset(canvas, dataset.labels, dataset.classes, f"{dataset.name}_on_{canvas_size}")
    out.offsets = offsets
    return out


def random_offsets(n: int, image_size: int, canvas_size: int, *, seed: int = 0) -> Tensor:
    """``[n, 2]`` uniform random top-left corners that keep an ``image_size`` image on the
    canvas."""
    n = check_positive_int("n", n)
    _check_canvas(canvas_size, check_positive_int("image_size", image_size))
    seed = check_positive_int("seed", seed, minimum=0, maximum=MAX_SEED)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, canvas_size - image_size + 1, (n, 2), generator=g)


def on_noise(
    dataset: ImageDataset, canvas_size: int, *, aligned: bool, seed: int = 0
) -> ImageDataset:
    """Each image on a canvas of uniform noise: centred (``aligned=True``) or at a random offset.

    The offline analogue of aligned vs translated CelebA: the aligned variant keeps class
    evidence at fixed positions, the translated one lets it sit anywhere.
    """
    check_type("dataset", dataset, ImageDataset)
    check_bool("aligned", aligned)
    seed = check_positive_int("seed", seed, minimum=0, maximum=MAX_SEED - 1)
    size = dataset.images.shape[-1]
    if aligned:
        _check_canvas(canvas_size, size)
        offsets = torch.full((len(dataset), 2), (canvas_size - size) // 2)
    else:
        offsets = random_offsets(len(dataset), size, canvas_size, seed=seed)
    return paste(dataset, canvas_size, offsets, background="noise", seed=seed + 1)


def position_grid(
    dataset: ImageDataset, canvas_size: int, grid: int
) -> list[tuple[tuple[int, int], ImageDataset]]:
    """The whole ``dataset`` pasted at each point of a ``grid x grid`` lattice of offsets.

    Returns ``[((row, col), ImageDataset), ...]`` in row-major order: the test sets of an
    accuracy-by-position map.
    """
    check_type("dataset", dataset, ImageDataset)
    grid = check_positive_int("grid", grid)
    size = dataset.images.shape[-1]
    _check_canvas(canvas_size, size)
    if grid > canvas_size - size + 1:
        raise ValueError(
            f"grid={grid} is more than the {canvas_size - size + 1} distinct offsets of a "
            f"{size}-pixel image on a canvas_size={canvas_size} canvas"
        )
    steps = torch.linspace(0, canvas_size - size, grid).round().long().tolist()
    out = []
    for r in steps:
        for c in steps:
            offsets = torch.tensor([[r, c]]).expand(len(dataset), 2)
            out.append(((r, c), paste(dataset, canvas_size, offsets)))
    return out
