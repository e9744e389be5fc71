"""Real image datasets as in-memory tensors, with a fast, clear failure when data is missing.

Images stay in [0, 1] (stored as uint8 where the source is 8-bit); models normalise inside with
:class:`pilcro_lib.models.Normalize` and the constants in :data:`NORMALIZATION`, so noise and
importance landscapes live in pixel space.
"""

from __future__ import annotations

import gzip
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pilcro_lib.utils import check_choice

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
        if images.dim() != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must be [N] with N={images.shape[0]}, got shape {tuple(labels.shape)}")
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
        """The images at ``indices`` (a 1-D index tensor), as a new dataset."""
        return ImageDataset(self.images[indices], self.labels[indices], self.classes, self.name)

    def __repr__(self) -> str:
        return f"ImageDataset({self.name!r}, n={len(self)}, shape={self.image_shape}, classes={self.num_classes})"


def to_float(images: Tensor) -> Tensor:
    """uint8 images -> float32 in [0, 1]; float images are returned as float32."""
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
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise ValueError(f"subset must be a positive integer or None, got {subset!r}")
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
    if subset is not None and subset < len(data):
        g = torch.Generator().manual_seed(seed)
        data = data.subset(torch.randperm(len(data), generator=g)[:subset].sort().values)
    return data


def train_val_split(dataset: ImageDataset, val_fraction: float, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """A seeded random split into (train, validation); ``val_fraction`` in (0, 1)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    n_val = max(1, round(len(dataset) * val_fraction))
    perm = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return dataset.subset(perm[n_val:].sort().values), dataset.subset(perm[:n_val].sort().values)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) of unsigned bytes into an array of its stated shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {data.size}")
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
