import gzip
import os
import time

import numpy as np
import pytest
import torch

from pilcro_lib.data import (
    DEBIAN_FASHION_MNIST,
    NORMALIZATION,
    ImageDataset,
    load_dataset,
    read_idx,
    train_val_split,
)

have_debian = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists()
real_data = pytest.mark.skipif(
    not have_debian and not os.environ.get("CI"),
    reason="Debian's dataset-fashion-mnist is not installed",
)


@real_data
def test_real_fashion_mnist_sizes_and_labels():
    train = load_dataset("fashion_mnist", "train")
    test = load_dataset("fashion_mnist", "test")
    assert train.images.shape == (60_000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10_000, 1, 28, 28)
    # Fashion-MNIST is balanced: 6,000 / 1,000 images per class.
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    mean = train.float_images().mean().item()
    assert mean == pytest.approx(NORMALIZATION["fashion_mnist"][0][0], abs=1e-3)


def test_sample_is_shipped():
    train, test = (
        load_dataset("fashion_mnist_sample", "train"),
        load_dataset("fashion_mnist_sample", "test"),
    )
    assert len(train) == 2000 and len(test) == 500
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert isinstance(y, int) and train.num_classes == 10


def test_subset_is_seeded_and_sized():
    a = load_dataset("fashion_mnist_sample", "train", subset=100, seed=1)
    b = load_dataset("fashion_mnist_sample", "train", subset=100, seed=1)
    c = load_dataset("fashion_mnist_sample", "train", subset=100, seed=2)
    assert len(a) == 100 and torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)


def test_train_val_split_partitions():
    data = ImageDataset(
        torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1),
        torch.zeros(50, dtype=torch.long),
        ["a"],
        "toy",
    )
    tr, va = train_val_split(data, 0.2, seed=3)
    assert len(tr) == 40 and len(va) == 10
    assert sorted(torch.cat([tr.images, va.images]).flatten().tolist()) == list(range(50))


def test_read_idx_against_handmade_file(tmp_path):
    values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in values.shape)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(header + values.tobytes())
    np.testing.assert_array_equal(read_idx(path), values)
    with gzip.open(path, "wb") as f:
        f.write(header + values.tobytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="nope", split="train"), "name='nope'.*fashion_mnist"),
        (dict(name="mnist", split="validation"), "split='validation'.*'train', 'test'"),
        (dict(name="fashion_mnist_sample", split="train", subset=-5), "subset"),
        (dict(name="fashion_mnist_sample", split="train", subset=0), "subset"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(**kwargs)


def test_missing_dataset_fails_fast_with_instructions(tmp_path):
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("cifar10", "train", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_dataset("mnist", "test", root=tmp_path)
    assert time.perf_counter() - start < 30


def _write_idx(path, values):
    header = bytes([0, 0, 8, values.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in values.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + values.tobytes())


def test_debian_folder_without_labels_names_the_missing_labels_file(tmp_path, monkeypatch):
    from pilcro_lib import data

    debian = tmp_path / "debian"
    debian.mkdir()
    _write_idx(debian / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28), dtype=np.uint8))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", debian)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion_mnist", "train", root=tmp_path / "empty")
    message = str(err.value)
    assert "train-labels-idx1-ubyte" in message and str(debian) in message
    assert "train-images-idx3-ubyte was not found" not in message
    assert (
        "apt-get install --reinstall dataset-fashion-mnist" in message
        and "download=True" in message
    )
    # the labels file there too: the split loads from Debian's folder
    _write_idx(debian / "train-labels-idx1-ubyte.gz", np.arange(3, dtype=np.uint8))
    loaded = load_dataset("fashion_mnist", "train", root=tmp_path / "empty")
    assert loaded.images.shape == (3, 1, 28, 28) and loaded.labels.tolist() == [0, 1, 2]


def test_debian_folder_without_images_names_the_missing_images_file(tmp_path, monkeypatch):
    from pilcro_lib import data

    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(2, dtype=np.uint8))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path)
    with pytest.raises(
        FileNotFoundError,
        match=r"t10k-images-idx3-ubyte \(or t10k-images-idx3-ubyte\.gz\) was not found "
        r"under .*holds t10k-labels-idx1-ubyte\.gz",
    ):
        load_dataset("fashion_mnist", "test", root=tmp_path / "empty")
