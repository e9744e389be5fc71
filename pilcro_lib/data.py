"""Real image datasets as in-memory tensors, with a fast, clear failure when data is missing.

Images stay in [0, 1] (stored as uint8 where the source is 8-bit); models normalise inside with
:class:`pilcro_lib.models.Normalize` and the constants in :data:`NORMALIZATION`, so noise and
importance landscapes live in pixel space.
"""

from __future__ import annotations

import gzip
import os
import socket
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pilcro_lib.utils import (
    MAX_SEED,
    check_bool,
    check_choice,
    check_indices,
    check_labels,
    check_number,
    check_positive_int,
    check_tensor,
    check_type,
)

DATASETS = ("mnist", "fashion_mnist", "cifar10", "celeba", "fashion_mnist_sample")
SPLITS = ("train", "test")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SAMPLE_FILE = Path(__file__).resolve().parent / "sample_data" / "fashion_mnist_sample.npz"

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CLASSES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": FASHION_CLASSES,
    "fashion_mnist_sample": FASHION_CLASSES,
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "celeba": ["female", "male"],
}

# (mean, std) per channel of the training images in [0, 1]; MNIST maps to [-1, 1] as in the
# reference LRLC experiments.
NORMALIZATION = {
    "mnist": ((0.5,), (0.5,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "fashion_mnist_sample": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "celeba": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


class ImageDataset(Dataset):
    """Images ``[N, C, H, W]`` (uint8, or float in [0, 1]) with int64 labels ``[N]``, in memory."""

    def __init__(self, images: Tensor, labels: Tensor, classes: list[str], name: str):
        check_tensor("images", images, ndim=4, dims="[N, C, H, W]", nonempty=True)
        _check_pixels(images)
        check_type("classes", classes, (list, tuple), "a list of class names")
        if not classes or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"classes must be a non-empty list of class names (str), got {classes!r}")
        check_labels("labels", labels, images.shape[0], num_classes=len(classes))
        check_type("name", name, str)
        self.images = images
        self.labels = labels.long()
        self.classes = list(classes)
        self.name = name

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return to_float(self.images[index]), int(self.labels[index])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.images.shape[1:])

    def float_images(self) -> Tensor:
        """All images as float32 in [0, 1], ``[N, C, H, W]``."""
        return to_float(self.images)

    def describe(self) -> dict:
        """Name, size, shape, classes and a SHA-256 of the exact images and labels (for run keys)."""
        from pilcro_lib.fingerprint import sha256_of_tensors

        return {"name": self.name, "size": len(self), "image_shape": list(self.image_shape),
                "classes": self.classes, "content": sha256_of_tensors(self.images, self.labels)[:16]}

    def subset(self, indices: Tensor) -> "ImageDataset":
        """The images at ``indices`` (a non-empty 1-D integer tensor), as a new dataset."""
        check_indices("indices", indices, len(self), what="image indices")
        if indices.numel() == 0:
            raise ValueError("indices must select at least one image, got an empty tensor")
        return ImageDataset(self.images[indices], self.labels[indices], self.classes, self.name)

    def __repr__(self) -> str:
        return f"ImageDataset({self.name!r}, n={len(self)}, shape={self.image_shape}, classes={self.num_classes})"


def _check_image_dtype(images: Tensor) -> None:
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"images must be uint8 (0..255) or floating point (in [0, 1]), got dtype {images.dtype}")


def _check_pixels(images: Tensor) -> None:
    """Refuse images whose dtype or values are not pixels: uint8, or finite floats in [0, 1]."""
    _check_image_dtype(images)
    if images.dtype == torch.uint8:
        return
    check_tensor("images", images, finite=True)
    low, high = torch.aminmax(images)
    if low < 0 or high > 1:
        raise ValueError(
            f"images must lie in [0, 1] when floating point, got values from {low.item():.4g} to {high.item():.4g}; "
            "pass 8-bit images as uint8 or divide them by 255"
        )


def to_float(images: Tensor) -> Tensor:
    """uint8 images -> float32 in [0, 1]; float images are returned as float32."""
    check_tensor("images", images)
    _check_image_dtype(images)
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def default_root() -> Path:
    """``$PILCRO_DATA``, else ``~/.cache/pilcro/data``."""
    return Path(os.environ.get("PILCRO_DATA", Path.home() / ".cache" / "pilcro" / "data"))


def load_dataset(
    name: str,
    split: str,
    *,
    root: str | Path | None = None,
    download: bool = False,
    subset: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Load a dataset split into memory.

    name: ``mnist``, ``fashion_mnist``, ``cifar10``, ``celeba`` or ``fashion_mnist_sample``
    (2,000 train / 500 test images shipped with the library). split: ``train`` or ``test``
    (CelebA's ``valid`` split is folded into neither). subset: keep this many images, drawn
    at random without replacement (seeded by ``seed``). Fashion-MNIST is read from Debian's
    ``dataset-fashion-mnist`` files when present. Returns an :class:`ImageDataset`.
    """
    check_choice("name", name, DATASETS)
    check_choice("split", split, SPLITS)
    subset = None if subset is None else check_positive_int("subset", subset)
    seed = check_positive_int("seed", seed, minimum=0, maximum=MAX_SEED)
    check_bool("download", download)
    if root is not None:
        check_type("root", root, (str, os.PathLike), "a folder (str or Path) or None")
    root = Path(root) if root is not None else default_root()
    loader = {
        "fashion_mnist_sample": _load_sample,
        "fashion_mnist": _load_fashion_mnist,
        "mnist": _load_mnist,
        "cifar10": _load_cifar10,
        "celeba": _load_celeba,
    }[name]
    images, labels = loader(split, root, download)
    data = ImageDataset(images, labels, CLASSES[name], name)
    if subset is not None and subset > len(data):
        raise ValueError(f"subset={subset} is larger than the {name} {split} split ({len(data)} images); use subset=None for all")
    if subset is not None and subset < len(data):
        g = torch.Generator().manual_seed(seed)
        data = data.subset(torch.randperm(len(data), generator=g)[:subset].sort().values)
    return data


def train_val_split(dataset: ImageDataset, val_fraction: float, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """A seeded random split into (train, validation); ``val_fraction`` in (0, 1)."""
    check_type("dataset", dataset, ImageDataset)
    check_number("val_fraction", val_fraction, minimum=0, maximum=1, strict=True)
    seed = check_positive_int("seed", seed, minimum=0, maximum=MAX_SEED)
    n_val = max(1, round(len(dataset) * val_fraction))
    if n_val >= len(dataset):
        raise ValueError(f"val_fraction={val_fraction!r} leaves no training images in a dataset of {len(dataset)}")
    perm = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return dataset.subset(perm[n_val:].sort().values), dataset.subset(perm[:n_val].sort().values)


IDX_REPAIR = (
    "Reinstall it (Debian's files: apt-get install --reinstall dataset-fashion-mnist) "
    "or delete it and download it again (download=True)"
)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) of unsigned bytes into an array of its stated shape.

    A missing file raises ``FileNotFoundError``; a damaged, truncated or non-IDX file a
    ``ValueError`` that names it and says how to replace it.
    """
    check_type("path", path, (str, os.PathLike), "a file path (str or Path)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such IDX file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"path={str(path)!r} is damaged or truncated ({type(err).__name__}: {err}). {IDX_REPAIR}") from err
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"path={str(path)!r} is not an IDX file of unsigned bytes (header {raw[:4]!r}). {IDX_REPAIR}")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"path={str(path)!r} is truncated: it ends inside its header. {IDX_REPAIR}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"path={str(path)!r} is truncated or corrupt: its header states shape {shape} but it holds "
            f"{data.size} values. {IDX_REPAIR}"
        )
    return data.reshape(shape)


def _idx_pair(folder: Path, split: str) -> tuple[Tensor, Tensor]:
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _load_sample(split: str, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    with np.load(SAMPLE_FILE) as f:
        return torch.from_numpy(f[f"{split}_images"]), torch.from_numpy(f[f"{split}_labels"].astype(np.int64))


def _missing(what: str, root: Path, how: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} was not found under {root}. {how}")


@contextmanager
def _network_timeout(seconds: float = 30.0):
    """Make a download fail after ``seconds`` of silence instead of hanging."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _torchvision(cls_name: str, root: Path, download: bool, how: str, **kwargs):
    import torchvision.datasets as tvd

    try:
        with _network_timeout():
            return getattr(tvd, cls_name)(str(root), download=download, **kwargs)
    except (RuntimeError, OSError) as err:
        raise _missing(cls_name, root, how + f" (torchvision said: {err})") from err


def _load_fashion_mnist(split: str, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        return _idx_pair(DEBIAN_FASHION_MNIST, split)
    how = (
        "Install Debian's package (apt-get install dataset-fashion-mnist, files in "
        f"{DEBIAN_FASHION_MNIST}) or pass download=True (needs the internet)."
    )
    ds = _torchvision("FashionMNIST", root, download, how, train=split == "train")
    return ds.data.unsqueeze(1).clone(), ds.targets.clone()


def _load_mnist(split: str, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    ds = _torchvision("MNIST", root, download, "Pass download=True (needs the internet).", train=split == "train")
    return ds.data.unsqueeze(1).clone(), ds.targets.clone()


def _load_cifar10(split: str, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    ds = _torchvision("CIFAR10", root, download, "Pass download=True (needs the internet, 170 MB).", train=split == "train")
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)


CELEBA_CROP = (40, 20, 138)  # top, left, size of the face crop, then resized to 32x32
CELEBA_MALE = 20  # index of the "Male" attribute


def _load_celeba(split: str, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    import torchvision.transforms.functional as TF
    from torch.utils.data import DataLoader

    top, left, size = CELEBA_CROP

    def transform(img):
        img = TF.resize(TF.crop(img, top, left, size, size), [32, 32], antialias=True)
        return TF.pil_to_tensor(img)

    how = "Pass download=True (needs the internet; Google Drive limits may require a manual download)."
    ds = _torchvision("CelebA", root, download, how, split=split, target_type="attr", transform=transform)
    images, labels = [], []
    for x, attr in DataLoader(ds, batch_size=512, num_workers=min(4, os.cpu_count() or 1)):
        images.append(x)
        labels.append(attr[:, CELEBA_MALE])
    return torch.cat(images), torch.cat(labels).long()
