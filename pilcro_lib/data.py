"""Real image datasets as in-memory tensors, with a fast, clear failure when data is missing.

Images stay in [0, 1] (stored as uint8 where the source is 8-bit); models normalise inside with
:class:`pilcro_lib.models.Normalize` and the constants in :data:`NORMALIZATION`, so noise and
importance landscapes live in pixel space.
"""

from __future__ import annotations

import gzip
import os
import pickle
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

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CLASSES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": FASHION_CLASSES,
    "fashion_mnist_sample": FASHION_CLASSES,
    "cifar10": [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ],
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
            raise ValueError(
                f"classes must be a non-empty list of class names (str), got {classes!r}"
            )
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
        """Name, size, shape, classes and a SHA-256 of the exact images and labels (for run
        keys)."""
        from pilcro_lib.runs.fingerprint import sha256_of_tensors

        return {
            "name": self.name,
            "size": len(self),
            "image_shape": list(self.image_shape),
            "classes": self.classes,
            "content": sha256_of_tensors(self.images, self.labels)[:16],
        }

    def subset(self, indices: Tensor) -> "ImageDataset":
        """The images at ``indices`` (a non-empty 1-D integer tensor), as a new dataset."""
        check_indices("indices", indices, len(self), what="image indices")
        if indices.numel() == 0:
            raise ValueError("indices must select at least one image, got an empty tensor")
        return ImageDataset(self.images[indices], self.labels[indices], self.classes, self.name)

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.name!r}, n={len(self)}, shape={self.image_shape}, "
            f"classes={self.num_classes})"
        )


def _check_image_dtype(images: Tensor) -> None:
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(
            f"images must be uint8 (0..255) or floating point (in [0, 1]), got dtype {images.dtype}"
        )


def _check_pixels(images: Tensor) -> None:
    """Refuse images whose dtype or values are not pixels: uint8, or finite floats in [0, 1]."""
    _check_image_dtype(images)
    if images.dtype == torch.uint8:
        return
    check_tensor("images", images, finite=True)
    low, high = torch.aminmax(images)
    if low < 0 or high > 1:
        raise ValueError(
            f"images must lie in [0, 1] when floating point, got values from {low.item():.4g} to "
            f"{high.item():.4g}; pass 8-bit images as uint8 or divide them by 255"
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
    at random without replacement (seeded by ``seed``). Returns an :class:`ImageDataset`.

    The files are read in their own formats under ``root`` (default :func:`default_root`), in
    torchvision's layout: ``MNIST/raw`` and ``FashionMNIST/raw`` (IDX files, raw or ``.gz``),
    ``cifar-10-batches-py`` (python pickles) and ``celeba`` (``img_align_celeba/*.jpg``,
    ``list_attr_celeba.txt``, ``list_eval_partition.txt``); torchvision only downloads them
    (``download=True``), so no checksum of the original files is required. Fashion-MNIST comes
    from ``root/FashionMNIST/raw`` when it holds the split's files, else from Debian's
    ``dataset-fashion-mnist`` folder (:data:`DEBIAN_FASHION_MNIST`), else from a download.
    A missing file raises ``FileNotFoundError``, a damaged one ``ValueError``; both name the
    file and say how to get it.
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
        raise ValueError(
            f"subset={subset} is larger than the {name} {split} split ({len(data)} images); use "
            "subset=None for all"
        )
    if subset is not None and subset < len(data):
        g = torch.Generator().manual_seed(seed)
        data = data.subset(torch.randperm(len(data), generator=g)[:subset].sort().values)
    return data


def train_val_split(
    dataset: ImageDataset, val_fraction: float, seed: int = 0
) -> tuple[ImageDataset, ImageDataset]:
    """A seeded random split into (train, validation); ``val_fraction`` in (0, 1)."""
    check_type("dataset", dataset, ImageDataset)
    check_number("val_fraction", val_fraction, minimum=0, maximum=1, strict=True)
    seed = check_positive_int("seed", seed, minimum=0, maximum=MAX_SEED)
    n_val = max(1, round(len(dataset) * val_fraction))
    if n_val >= len(dataset):
        raise ValueError(
            f"val_fraction={val_fraction!r} leaves no training images in a dataset of "
            f"{len(dataset)}"
        )
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
        raise ValueError(
            f"path={str(path)!r} is damaged or truncated ({type(err).__name__}: {err}). "
            f"{IDX_REPAIR}"
        ) from err
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(
            f"path={str(path)!r} is not an IDX file of unsigned bytes (header {raw[:4]!r}). "
            f"{IDX_REPAIR}"
        )
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(
            f"path={str(path)!r} is truncated: it ends inside its header. {IDX_REPAIR}"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"path={str(path)!r} is truncated or corrupt: its header states shape {shape} but it "
            f"holds {data.size} values. {IDX_REPAIR}"
        )
    return data.reshape(shape)


def _idx_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` as torchvision leaves it (uncompressed), else ``folder/stem.gz``; None if
    neither."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _idx_stems(split: str) -> tuple[str, str]:
    prefix = "train" if split == "train" else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _has_idx(folder: Path, split: str) -> bool:
    return all(_idx_file(folder, stem) is not None for stem in _idx_stems(split))


def _idx_pair(folder: Path, split: str, what: str, how: str) -> tuple[Tensor, Tensor]:
    """Images ``[N, 1, 28, 28]`` and labels ``[N]`` of a split from the IDX files in ``folder``."""
    paths = [_idx_file(folder, stem) for stem in _idx_stems(split)]
    for stem, path in zip(_idx_stems(split), paths):
        if path is None:
            raise _missing(f"{what} file {stem} (or {stem}.gz)", folder, how)
    images, labels = (read_idx(path) for path in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{paths[0]} and {paths[1]} do not match: images of shape {images.shape}, labels of "
            f"shape {labels.shape}. {IDX_REPAIR}"
        )
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _load_sample(split: str, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    with np.load(SAMPLE_FILE) as f:
        return torch.from_numpy(f[f"{split}_images"]), torch.from_numpy(
            f[f"{split}_labels"].astype(np.int64)
        )


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


def _download(cls_name: str, root: Path, how: str, **kwargs) -> None:
    """Download a dataset into ``root`` through ``torchvision.datasets.<cls_name>`` (the only use of
    torchvision)."""
    import torchvision.datasets as tvd

    try:
        with _network_timeout():
            getattr(tvd, cls_name)(str(root), download=True, **kwargs)
    except (RuntimeError, OSError) as err:
        raise _missing(
            cls_name, root, f"Its download failed ({type(err).__name__}: {err}). {how}"
        ) from err


def _load_idx_dataset(
    name: str, split: str, root: Path, download: bool, how: str
) -> tuple[Tensor, Tensor]:
    """MNIST or Fashion-MNIST from ``root/<name>/raw`` (torchvision's layout), downloaded there
    first if asked."""
    folder = root / name / "raw"
    if download and not _has_idx(folder, split):
        _download(name, root, how, train=split == "train")
    return _idx_pair(folder, split, name, how)


def _load_fashion_mnist(split: str, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    """From ``root/FashionMNIST/raw`` when it holds the split's files, else Debian's folder, else a
    download.

    Debian's folder holding only part of a split (its images file without its labels file, say)
    fails naming the missing file, unless ``root`` holds the split or ``download=True``.
    """
    debian = DEBIAN_FASHION_MNIST
    in_root = _has_idx(root / "FashionMNIST" / "raw", split)
    if _has_idx(debian, split) and not in_root:
        return _idx_pair(debian, split, "Fashion-MNIST", IDX_REPAIR)
    stems = _idx_stems(split)
    present = [stem for stem in stems if _idx_file(debian, stem) is not None]
    if present and not in_root and not download:
        absent = next(stem for stem in stems if stem not in present)
        raise _missing(
            f"Fashion-MNIST file {absent} (or {absent}.gz)",
            debian,
            f"That folder holds {_idx_file(debian, present[0]).name} but not this file of the "
            f"{split} split. Reinstall Debian's package (apt-get install --reinstall "
            "dataset-fashion-mnist) or pass download=True (needs the internet).",
        )
    how = (
        "Install Debian's package (apt-get install dataset-fashion-mnist, files in "
        f"{debian}) or pass download=True (needs the internet)."
    )
    return _load_idx_dataset("FashionMNIST", split, root, download, how)


def _load_mnist(split: str, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    return _load_idx_dataset(
        "MNIST", split, root, download, "Pass download=True (needs the internet)."
    )


CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR10_HOW = (
    "Pass download=True (needs the internet, 170 MB), or unpack cifar-10-python.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html into the data folder."
)
CIFAR10_REPAIR = "Delete it and download CIFAR-10 again (download=True)."

# the globals a CIFAR-10 pickle may name: NumPy's array reconstruction, nothing else
_PICKLE_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and NumPy arrays; refuses any other global."""

    def find_class(self, module: str, name: str):
        module = (
            module.replace("numpy.core", "numpy._core", 1)
            if module.startswith("numpy.core")
            else module
        )
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which no CIFAR-10 file holds")
        return super().find_class(module, name)


def _read_cifar10_pickle(path: Path, keys: tuple[str, ...]) -> dict:
    """A CIFAR-10 pickle as a dict with str keys, holding at least ``keys``."""
    if not path.is_file():
        raise _missing(f"CIFAR-10 file {path.name}", path.parent, CIFAR10_HOW)
    try:
        with open(path, "rb") as f:
            content = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as err:  # a damaged pickle can raise almost anything
        raise ValueError(
            f"path={str(path)!r} is damaged or truncated ({type(err).__name__}: {err}). "
            f"{CIFAR10_REPAIR}"
        ) from err
    if not isinstance(content, dict):
        raise ValueError(
            f"path={str(path)!r} is not a CIFAR-10 file: it holds a {type(content).__name__}, not "
            f"a dict. {CIFAR10_REPAIR}"
        )
    content = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in content.items()}
    absent = [k for k in keys if k not in content]
    if absent:
        raise ValueError(
            f"path={str(path)!r} is not a CIFAR-10 file: it lacks {', '.join(absent)}. "
            f"{CIFAR10_REPAIR}"
        )
    return content


def _cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[n, 3, 32, 32]`` (uint8) and labels ``[n]`` of one CIFAR-10 batch file."""
    batch = _read_cifar10_pickle(path, ("data", "labels"))
    data, labels = batch["data"], np.asarray(batch["labels"])
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3072
    ):
        shape = getattr(data, "shape", type(data).__name__)
        raise ValueError(
            f"path={str(path)!r} is not a CIFAR-10 batch: its data must be uint8 rows of 3072 "
            f"values, got {shape}. {CIFAR10_REPAIR}"
        )
    if (
        labels.shape != (len(data),)
        or not np.issubdtype(labels.dtype, np.integer)
        or not np.isin(labels, range(10)).all()
    ):
        raise ValueError(
            f"path={str(path)!r} is not a CIFAR-10 batch: it needs one label in 0..9 per image "
            f"({len(data)} images). {CIFAR10_REPAIR}"
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _load_cifar10(split: str, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    """The python pickles of ``root/cifar-10-batches-py``: ``data_batch_1..5`` or ``test_batch``,
    and ``batches.meta``."""
    folder = root / CIFAR10_FOLDER
    names = [*CIFAR10_BATCHES[split], "batches.meta"]
    if download and not all((folder / name).is_file() for name in names):
        _download("CIFAR10", root, CIFAR10_HOW, train=split == "train")
    meta = _read_cifar10_pickle(folder / "batches.meta", ("label_names",))
    label_names = [n.decode("latin1") if isinstance(n, bytes) else n for n in meta["label_names"]]
    if label_names != CLASSES["cifar10"]:
        raise ValueError(
            f"path={str(folder / 'batches.meta')!r} names the classes {label_names}, not "
            f"CIFAR-10's {CLASSES['cifar10']}. {CIFAR10_REPAIR}"
        )
    batches = [_cifar10_batch(folder / name) for name in CIFAR10_BATCHES[split]]
    images, labels = (
        np.concatenate([b[0] for b in batches]),
        np.concatenate([b[1] for b in batches]),
    )
    return torch.from_numpy(images), torch.from_numpy(labels)


CELEBA_CROP = (40, 20, 138)  # top, left, size of the face crop, then resized to 32x32
CELEBA_PARTITION = {
    "train": "0",
    "test": "2",
}  # list_eval_partition.txt's codes (1: validation, unused)
CELEBA_HOW = (
    "Pass download=True (needs the internet; Google Drive limits may require a manual download: "
    "put img_align_celeba/ (from img_align_celeba.zip), list_attr_celeba.txt and "
    "list_eval_partition.txt from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html into the data "
    "folder's celeba/)."
)
CELEBA_REPAIR = "Delete it and download CelebA again (download=True)."


def _celeba_lines(path: Path) -> list[list[str]]:
    """The whitespace-separated fields of each non-empty line of a CelebA list file."""
    if not path.is_file():
        raise _missing(f"CelebA file {path.name}", path.parent, CELEBA_HOW)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(
            f"path={str(path)!r} is damaged ({type(err).__name__}: {err}). {CELEBA_REPAIR}"
        ) from err
    return [line.split() for line in text.splitlines() if line.strip()]


def _celeba_split(path: Path, split: str) -> list[str]:
    """The image file names of ``split`` in ``list_eval_partition.txt`` (lines ``name code``)."""
    rows = _celeba_lines(path)
    bad = next(
        (i for i, row in enumerate(rows) if len(row) != 2 or row[1] not in ("0", "1", "2")), None
    )
    if bad is not None:
        raise ValueError(
            f"path={str(path)!r} is damaged: line {bad + 1} is {' '.join(rows[bad])!r}, not "
            f"'<image> <0|1|2>'. {CELEBA_REPAIR}"
        )
    names = [name for name, code in rows if code == CELEBA_PARTITION[split]]
    if not names:
        raise ValueError(f"path={str(path)!r} lists no image of the {split} split. {CELEBA_REPAIR}")
    return names


def _celeba_male(path: Path) -> dict[str, int]:
    """Image file name -> 1 if its ``Male`` attribute is 1 else 0, from ``list_attr_celeba.txt``
    (a count, the 40 attribute names, then ``name`` and one -1/1 per attribute on each line)."""
    rows = _celeba_lines(path)
    if len(rows) < 2 or "Male" not in rows[1] or rows[0] != [str(len(rows) - 2)]:
        raise ValueError(
            f"path={str(path)!r} is damaged: it must start with the number of images and a line of "
            f"attribute names including Male, then one line per image. {CELEBA_REPAIR}"
        )
    column, width = rows[1].index("Male") + 1, len(rows[1]) + 1
    bad = next(
        (
            i
            for i, row in enumerate(rows[2:])
            if len(row) != width or row[column] not in ("-1", "1")
        ),
        None,
    )
    if bad is not None:
        raise ValueError(
            f"path={str(path)!r} is damaged: line {bad + 3} does not hold an image name and "
            f"{width - 1} values of -1 or 1. {CELEBA_REPAIR}"
        )
    return {row[0]: int(row[column] == "1") for row in rows[2:]}


def _celeba_image(path: Path) -> np.ndarray:
    """One aligned CelebA image, its face crop resized to 32x32 (bilinear, as torchvision),
    ``[32, 32, 3]`` uint8."""
    from PIL import Image, UnidentifiedImageError

    top, left, size = CELEBA_CROP
    if not path.is_file():
        raise _missing(f"CelebA image {path.name}", path.parent, CELEBA_HOW)
    try:
        with Image.open(path) as image:
            face = image.convert("RGB").crop((left, top, left + size, top + size))
            return np.asarray(face.resize((32, 32), Image.BILINEAR))
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise ValueError(
            f"path={str(path)!r} is damaged or not a JPEG ({type(err).__name__}: {err}). "
            f"{CELEBA_REPAIR}"
        ) from err


def _load_celeba(split: str, root: Path, download: bool) -> tuple[Tensor, Tensor]:
    """``root/celeba``: the JPEGs of ``img_align_celeba/``, ``list_eval_partition.txt`` and
    ``list_attr_celeba.txt``."""
    from concurrent.futures import ThreadPoolExecutor

    folder = root / "celeba"
    lists = (folder / "list_eval_partition.txt", folder / "list_attr_celeba.txt")
    if download and not (
        all(p.is_file() for p in lists) and (folder / "img_align_celeba").is_dir()
    ):
        _download("CelebA", root, CELEBA_HOW, split="all", target_type="attr")
    names = _celeba_split(lists[0], split)
    male = _celeba_male(lists[1])
    unlabelled = [name for name in names if name not in male]
    if unlabelled:
        raise ValueError(
            f"path={str(lists[1])!r} has no attributes for {len(unlabelled)} image(s) of the "
            f"{split} split, e.g. {unlabelled[0]}. {CELEBA_REPAIR}"
        )
    with ThreadPoolExecutor(
        max_workers=min(4, os.cpu_count() or 1)
    ) as pool:  # PIL decodes without the GIL
        images = np.stack(
            list(pool.map(_celeba_image, [folder / "img_align_celeba" / name for name in names]))
        )
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(
        [male[n] for n in names]
    )
