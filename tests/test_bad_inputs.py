"""Bad input to the public functions ends in a ValueError/TypeError that names the argument.

One table: each case is (id, a call with one bad argument, the exception type, a regex the message
must match; the regex names the argument). Then a few checks that good input still works.
"""

from __future__ import annotations

import gzip
import math
import os
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from pilcro_lib import (
    data,
    experiments,
    landscape,
    layers,
    measure,
    models,
    objective,
    paths,
    stats,
    synthetic,
    train,
    utils,
)
from pilcro_lib.runs import records

NAN, INF = float("nan"), float("inf")
X = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0))  # a batch of 4 tiny images
Y = torch.tensor([0, 1, 2, 0])  # their labels, 3 classes
MAP = torch.rand(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.5


def with_value(t: torch.Tensor, value: float) -> torch.Tensor:
    """A copy of ``t`` with its first element set to ``value``."""
    t = t.clone()
    t.view(-1)[0] = value
    return t


def net(in_channels: int = 1, classes: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 2, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, classes),
    )


def dataset(n: int = 4, size: int = 6) -> data.ImageDataset:
    return data.ImageDataset(torch.rand(n, 1, size, size), torch.arange(n) % 2, ["a", "b"], "toy")


def rgb_dataset() -> data.ImageDataset:
    return data.ImageDataset(torch.rand(4, 3, 6, 6), torch.arange(4) % 2, ["a", "b"], "rgb")


def nan_dataset() -> torch.utils.data.TensorDataset:
    """Images with one NaN pixel (an ImageDataset refuses them when built; other datasets do
    not)."""
    images = torch.rand(4, 1, 6, 6)
    images[2, 0, 1, 1] = NAN
    return torch.utils.data.TensorDataset(images, torch.arange(4) % 2)


class PlainDataset(torch.utils.data.Dataset):
    """A dataset with neither a content description nor a describe() method."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return X[i], int(Y[i]) % 2


def lrlc(**kwargs) -> layers.LowRankLocallyConnected2d:
    return layers.LowRankLocallyConnected2d(
        **(dict(in_channels=2, out_channels=3, kernel_size=3, input_size=8, rank=2) | kwargs)
    )


def with_env(name: str, value: str, fn):
    with mock.patch.dict(os.environ, {name: value}):
        return fn()


def idx_bytes(values: np.ndarray, code: int = 8) -> bytes:
    header = bytes([0, 0, code, values.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in values.shape
    )
    return header + values.astype(np.uint8).tobytes()


def damaged_idx(damage: str) -> bytes:
    """The .gz bytes of a small IDX file with ``damage``."""
    values = np.arange(2 * 20 * 20).reshape(2, 20, 20) % 251
    good = gzip.compress(idx_bytes(values), mtime=0)
    if damage == "truncated":
        return good[: len(good) // 2]
    if damage == "bit flip":
        return good[:30] + bytes([good[30] ^ 0xFF]) + good[31:]
    if damage == "not gzip":
        return b"this is not a gzip stream at all"
    if damage == "short header":
        return gzip.compress(b"\x00\x00")
    if damage == "float code":
        return gzip.compress(idx_bytes(values, code=0x0D))
    if damage == "header cut":
        return gzip.compress(idx_bytes(values)[:6])
    return gzip.compress(idx_bytes(values)[:-5])  # "values cut"


def read_damaged_idx(damage: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train-images-idx3-ubyte.gz"
        path.write_bytes(damaged_idx(damage))
        data.read_idx(path)


def run_arm(**kwargs):
    args = (
        dict(arm="plain", train_set=dataset(), val_set=dataset(), test_set=dataset(), epochs=1)
        | kwargs
    )
    return experiments.run_arm(
        args.pop("arm"), args.pop("train_set"), args.pop("val_set"), args.pop("test_set"), **args
    )


def benchmark(**kwargs):
    return measure.benchmark_layers(
        **(dict(batch=1, channels=1, sizes=(4,), ranks=(1,), repeats=1) | kwargs)
    )


FRAME = pd.DataFrame({"arm": ["a", "a"], "acc": [0.5, 0.6]})
HISTORY = [{"epoch": 1, "epoch_time_s": 1.0, "val_acc": 0.5}]

V, T = ValueError, TypeError
CASES = [
    # utils: the shared checks
    (
        "check_positive_int bool",
        lambda: utils.check_positive_int("n", True),
        T,
        r"n must be an integer >= 1, got True",
    ),
    (
        "check_positive_int float",
        lambda: utils.check_positive_int("n", 2.0),
        T,
        r"n must be an integer >= 1, got 2\.0",
    ),
    (
        "check_positive_int above max",
        lambda: utils.check_positive_int("n", 5, maximum=3),
        V,
        r"n must be an integer in \[1, 3\], got 5",
    ),
    (
        "check_number nan",
        lambda: utils.check_number("lr", NAN),
        V,
        r"lr must be a finite number, got nan",
    ),
    (
        "check_number inf",
        lambda: utils.check_number("lr", INF, minimum=0),
        V,
        r"lr must be a finite number >= 0, got inf",
    ),
    (
        "check_number str",
        lambda: utils.check_number("lr", "0.1"),
        T,
        r"lr must be a finite number, got '0\.1'",
    ),
    (
        "check_number bool",
        lambda: utils.check_number("lr", True),
        T,
        r"lr must be a finite number, got True",
    ),
    (
        "check_number below",
        lambda: utils.check_number("p", -0.1, minimum=0, maximum=1),
        V,
        r"p must be a finite number in \[0, 1\], got -0\.1",
    ),
    (
        "check_number strict",
        lambda: utils.check_number("p", 1.0, minimum=0, maximum=1, strict=True),
        V,
        r"p must be .* in \(0, 1\), got 1\.0",
    ),
    (
        "check_bool str",
        lambda: utils.check_bool("flag", "yes"),
        T,
        r"flag must be True or False, got 'yes'",
    ),
    (
        "check_type",
        lambda: utils.check_type("model", "net", nn.Module),
        T,
        r"model must be an instance of Module, got str",
    ),
    (
        "check_tensor list",
        lambda: utils.check_tensor("x", [1, 2]),
        T,
        r"x must be a tensor, got list",
    ),
    (
        "check_tensor ndim",
        lambda: utils.check_tensor("x", torch.zeros(2), ndim=2, dims="[N, C]"),
        V,
        r"x must be a 2-D tensor \[N, C\], got shape \(2,\)",
    ),
    (
        "check_tensor min_ndim",
        lambda: utils.check_tensor("x", torch.zeros(2), min_ndim=2),
        V,
        r"x must have at least 2 dimensions, got shape \(2,\)",
    ),
    (
        "check_tensor dtype",
        lambda: utils.check_tensor("x", torch.zeros(2, dtype=torch.long), dtype_kind="float"),
        T,
        r"x must be a floating-point tensor, got dtype torch\.int64",
    ),
    (
        "check_tensor bool dtype",
        lambda: utils.check_tensor("x", torch.zeros(2, dtype=torch.bool), dtype_kind="integer"),
        T,
        r"x must be an integer tensor, got dtype torch\.bool",
    ),
    (
        "check_tensor dtype_kind",
        lambda: utils.check_tensor("x", torch.zeros(2), dtype_kind="complex"),
        V,
        r"dtype_kind='complex' is not allowed",
    ),
    (
        "check_tensor inf",
        lambda: utils.check_tensor("x", torch.tensor([1.0, INF]), finite=True),
        V,
        r"x must be finite, but 1 of its 2 values are NaN or infinite",
    ),
    (
        "check_tensor empty",
        lambda: utils.check_tensor("x", torch.zeros(0, 3), nonempty=True),
        V,
        r"x must not be empty, got shape \(0, 3\)",
    ),
    (
        "check_int_tuple int",
        lambda: utils.check_int_tuple("input_size", 5, 3),
        T,
        r"input_size must be a sequence of 3 integers >= 1, got 5",
    ),
    (
        "check_int_tuple float",
        lambda: utils.check_int_tuple("input_size", (1, 2.5, 3), 3),
        V,
        r"input_size must be 3 integers >= 1, got \(1, 2\.5, 3\)",
    ),
    (
        "check_int_tuple length",
        lambda: utils.check_int_tuple("size", (1, 2, 3), 2),
        V,
        r"size must be 2 integers >= 1",
    ),
    (
        "check_labels range",
        lambda: utils.check_labels("labels", torch.tensor([0, 5]), 2, num_classes=3),
        V,
        r"labels must be class indices \(num_classes=3\) in \[0, 2\], got values from 0 to 5",
    ),
    (
        "check_labels length",
        lambda: utils.check_labels("labels", torch.tensor([0, 1, 2]), 2),
        V,
        r"labels must have shape \[2\] \(one per input\), got shape \(3,\)",
    ),
    (
        "check_labels float",
        lambda: utils.check_labels("labels", torch.tensor([0.0, 1.0]), 2),
        T,
        r"labels must be an integer tensor",
    ),
    (
        "check_indices negative",
        lambda: utils.check_indices("indices", torch.tensor([-1, 0]), 3),
        V,
        r"indices must be indices in \[0, 2\], got values from -1 to 0",
    ),
    (
        "check_image_batch 3-D",
        lambda: utils.check_image_batch("images", torch.rand(1, 4, 4)),
        V,
        r"images must be a 4-D tensor",
    ),
    (
        "check_map 1-D",
        lambda: utils.check_map("lam", torch.rand(4)),
        V,
        r"lam must have at least 2 dimensions",
    ),
    (
        "check_model_builder model",
        lambda: utils.check_model_builder("build_model", net()),
        T,
        r"build_model must be a function that returns .*, got Sequential",
    ),
    (
        "seed negative",
        lambda: utils.seed_everything(-1),
        V,
        r"seed must be an integer in \[0, 18446744073709551615\], got -1",
    ),
    (
        "seed too large",
        lambda: utils.seed_everything(2**64),
        V,
        r"seed must be an integer in \[0, ",
    ),
    ("seed float", lambda: utils.seed_everything(1.5), T, r"seed must be an integer"),
    (
        "device unknown name",
        lambda: utils.get_device("gpu"),
        V,
        r"device='gpu' is not a device name; choose one of 'cpu', 'cuda', 'cuda:<index>', 'mps'",
    ),
    (
        "device unsupported",
        lambda: utils.get_device("meta"),
        V,
        r"device='meta' is not supported; choose one of 'cpu'",
    ),
    (
        "device int",
        lambda: utils.get_device(0),
        T,
        r"device must be a device name \(str\) or a torch\.device, got int",
    ),
    ("device missing index", lambda: utils.get_device("cuda:99"), V, r"device='cuda:99'"),
    (
        "provenance profile",
        lambda: utils.provenance(profile="fast"),
        V,
        r"profile='fast' is not allowed; choose one of 'smoke', 'book', 'paper'",
    ),
    ("provenance seed", lambda: utils.provenance(seed=-3), V, r"seed must be an integer"),
    (
        "env_profile unknown",
        lambda: with_env("PILCRO_PROFILE", "fast", utils.env_profile),
        V,
        r"PILCRO_PROFILE='fast' is not allowed; choose one of 'smoke', 'book', 'paper'",
    ),
    (
        "env_profile default",
        lambda: utils.env_profile(default="quick"),
        V,
        r"default='quick' is not allowed",
    ),
    # data
    (
        "images list",
        lambda: data.ImageDataset([[0.5]], Y, ["a"], "x"),
        T,
        r"images must be a tensor \[N, C, H, W\], got list",
    ),
    (
        "images 3-D",
        lambda: data.ImageDataset(torch.rand(4, 6, 6), Y, ["a", "b", "c"], "x"),
        V,
        r"images must be a 4-D tensor \[N, C, H, W\], got shape \(4, 6, 6\)",
    ),
    (
        "images empty",
        lambda: data.ImageDataset(
            torch.rand(0, 1, 4, 4), torch.zeros(0, dtype=torch.long), ["a"], "x"
        ),
        V,
        r"images must not be empty, got shape \(0, 1, 4, 4\)",
    ),
    (
        "images int64",
        lambda: data.ImageDataset(
            torch.ones(4, 1, 2, 2, dtype=torch.long), Y, ["a", "b", "c"], "x"
        ),
        T,
        r"images must be uint8 \(0\.\.255\) or floating point \(in \[0, 1\]\), got dtype "
        r"torch\.int64",
    ),
    (
        "images bool",
        lambda: data.ImageDataset(
            torch.ones(4, 1, 2, 2, dtype=torch.bool), Y, ["a", "b", "c"], "x"
        ),
        T,
        r"images must be uint8 .* got dtype torch\.bool",
    ),
    (
        "images above 1",
        lambda: data.ImageDataset(X * 255, Y, ["a", "b", "c"], "x"),
        V,
        r"images must lie in \[0, 1\] when floating point, got values from .*; pass 8-bit images "
        r"as uint8",
    ),
    (
        "images negative",
        lambda: data.ImageDataset(X - 0.5, Y, ["a", "b", "c"], "x"),
        V,
        r"images must lie in \[0, 1\]",
    ),
    (
        "images nan",
        lambda: data.ImageDataset(with_value(X, NAN), Y, ["a", "b", "c"], "x"),
        V,
        r"images must be finite, but 1 of its 144 values",
    ),
    (
        "labels >= num_classes",
        lambda: data.ImageDataset(X, torch.tensor([0, 1, 5, 0]), ["a", "b"], "x"),
        V,
        r"labels must be class indices \(num_classes=2\) in \[0, 1\], got values from 0 to 5",
    ),
    (
        "labels negative",
        lambda: data.ImageDataset(X, torch.tensor([0, -1, 1, 0]), ["a", "b"], "x"),
        V,
        r"labels must be class indices .* got values from -1 to 1",
    ),
    (
        "labels float",
        lambda: data.ImageDataset(X, Y.float(), ["a", "b", "c"], "x"),
        T,
        r"labels must be an integer tensor, got dtype torch\.float32",
    ),
    (
        "labels length",
        lambda: data.ImageDataset(X, Y[:3], ["a", "b", "c"], "x"),
        V,
        r"labels must have shape \[4\]",
    ),
    (
        "labels list",
        lambda: data.ImageDataset(X, [0, 1, 2, 0], ["a", "b", "c"], "x"),
        T,
        r"labels must be a tensor \[N\], got list",
    ),
    (
        "classes str",
        lambda: data.ImageDataset(X, Y, "abc", "x"),
        T,
        r"classes must be a list of class names, got str",
    ),
    (
        "classes empty",
        lambda: data.ImageDataset(X, Y, [], "x"),
        V,
        r"classes must be a non-empty list of class names",
    ),
    (
        "name int",
        lambda: data.ImageDataset(X, Y, ["a", "b", "c"], 3),
        T,
        r"name must be an instance of str, got int",
    ),
    (
        "subset indices range",
        lambda: dataset().subset(torch.tensor([0, 9])),
        V,
        r"indices must be image indices in \[0, 3\], got values from 0 to 9",
    ),
    (
        "subset indices float",
        lambda: dataset().subset(torch.tensor([0.0, 1.0])),
        T,
        r"indices must be an integer tensor",
    ),
    (
        "subset indices empty",
        lambda: dataset().subset(torch.zeros(0, dtype=torch.long)),
        V,
        r"indices must select at least one image",
    ),
    (
        "to_float int64",
        lambda: data.to_float(torch.ones(2, dtype=torch.long)),
        T,
        r"images must be uint8 .* got dtype torch\.int64",
    ),
    ("to_float list", lambda: data.to_float([0.5]), T, r"images must be a tensor, got list"),
    (
        "load subset too large",
        lambda: data.load_dataset("fashion_mnist_sample", "train", subset=10**9),
        V,
        r"subset=1000000000 is larger than the fashion_mnist_sample train split \(2000 images\)",
    ),
    (
        "load subset bool",
        lambda: data.load_dataset("fashion_mnist_sample", "train", subset=True),
        T,
        r"subset must be an integer >= 1, got True",
    ),
    (
        "load subset float",
        lambda: data.load_dataset("fashion_mnist_sample", "train", subset=2.5),
        T,
        r"subset must be an integer >= 1, got 2\.5",
    ),
    (
        "load subset zero",
        lambda: data.load_dataset("fashion_mnist_sample", "train", subset=0),
        V,
        r"subset must be an integer >= 1, got 0",
    ),
    (
        "load seed negative",
        lambda: data.load_dataset("fashion_mnist_sample", "train", seed=-1),
        V,
        r"seed must be an integer in \[0, ",
    ),
    (
        "load download str",
        lambda: data.load_dataset("fashion_mnist_sample", "train", download="yes"),
        T,
        r"download must be True or False, got 'yes'",
    ),
    (
        "load root int",
        lambda: data.load_dataset("fashion_mnist_sample", "train", root=5),
        T,
        r"root must be a folder \(str or Path\) or None, got int",
    ),
    (
        "load name None",
        lambda: data.load_dataset(None, "train"),
        V,
        r"name=None is not allowed; choose one of 'mnist'",
    ),
    (
        "load split",
        lambda: data.load_dataset("mnist", "valid"),
        V,
        r"split='valid' is not allowed; choose one of 'train', 'test'",
    ),
    (
        "val_fraction 1",
        lambda: data.train_val_split(dataset(), 1.0),
        V,
        r"val_fraction must be a finite number in \(0, 1\), got 1\.0",
    ),
    (
        "val_fraction nan",
        lambda: data.train_val_split(dataset(), NAN),
        V,
        r"val_fraction must be a finite number in \(0, 1\), got nan",
    ),
    (
        "val_fraction str",
        lambda: data.train_val_split(dataset(), "0.2"),
        T,
        r"val_fraction must be a finite number in \(0, 1\), got '0\.2'",
    ),
    (
        "val_fraction leaves nothing",
        lambda: data.train_val_split(dataset(2), 0.9),
        V,
        r"val_fraction=0\.9 leaves no training images in a dataset of 2",
    ),
    (
        "split dataset tensor",
        lambda: data.train_val_split(X, 0.2),
        T,
        r"dataset must be an instance of ImageDataset, got Tensor",
    ),
    (
        "idx gz truncated",
        lambda: read_damaged_idx("truncated"),
        V,
        r"path='.*train-images-idx3-ubyte\.gz' is damaged or truncated \(EOFError.*Reinstall it "
        r".*dataset-fashion-mnist.* or delete it and download it again",
    ),
    (
        "idx gz bit flip",
        lambda: read_damaged_idx("bit flip"),
        V,
        r"path='.*\.gz' is damaged or truncated \((error|BadGzipFile).*dataset-fashion-mnist",
    ),
    (
        "idx not gzip",
        lambda: read_damaged_idx("not gzip"),
        V,
        r"path='.*\.gz' is damaged or truncated \(BadGzipFile",
    ),
    (
        "idx short header",
        lambda: read_damaged_idx("short header"),
        V,
        r"path='.*\.gz' is not an IDX file of unsigned bytes",
    ),
    (
        "idx float code",
        lambda: read_damaged_idx("float code"),
        V,
        r"path='.*\.gz' is not an IDX file of unsigned bytes",
    ),
    (
        "idx header cut",
        lambda: read_damaged_idx("header cut"),
        V,
        r"path='.*\.gz' is truncated: it ends inside its header",
    ),
    (
        "idx values cut",
        lambda: read_damaged_idx("values cut"),
        V,
        r"path='.*\.gz' is truncated or corrupt: its header states shape \(2, 20, 20\) but it "
        r"holds 795 values",
    ),
    (
        "idx missing",
        lambda: data.read_idx(Path(tempfile.gettempdir()) / "no-such-idx-file.gz"),
        FileNotFoundError,
        r"path='.*no-such-idx-file\.gz': no such IDX file",
    ),
    (
        "idx path int",
        lambda: data.read_idx(3),
        T,
        r"path must be a file path \(str or Path\), got int",
    ),
    # synthetic
    (
        "paste dataset tensor",
        lambda: synthetic.paste(X, 8, torch.zeros(4, 2, dtype=torch.long)),
        T,
        r"dataset must be an instance of ImageDataset",
    ),
    (
        "paste offsets float",
        lambda: synthetic.paste(dataset(), 8, torch.full((4, 2), 1.5)),
        T,
        r"offsets must be an integer tensor, got dtype torch\.float32",
    ),
    (
        "paste offsets shape",
        lambda: synthetic.paste(dataset(), 8, torch.zeros(3, 2, dtype=torch.long)),
        V,
        r"offsets must have shape \[4, 2\], got \(3, 2\)",
    ),
    (
        "paste offsets outside",
        lambda: synthetic.paste(dataset(), 8, torch.full((4, 2), 3)),
        V,
        r"offsets must keep each 6x6 image inside the 8x8 canvas",
    ),
    (
        "paste canvas bool",
        lambda: synthetic.paste(dataset(), True, torch.zeros(4, 2, dtype=torch.long)),
        T,
        r"canvas_size must be an integer >= 1, got True",
    ),
    (
        "paste canvas small",
        lambda: synthetic.paste(dataset(), 3, torch.zeros(4, 2, dtype=torch.long)),
        V,
        r"canvas_size=3 must be at least the image size 6",
    ),
    (
        "paste background",
        lambda: synthetic.paste(
            dataset(), 8, torch.zeros(4, 2, dtype=torch.long), background="pink"
        ),
        V,
        r"background='pink' is not allowed",
    ),
    (
        "paste seed",
        lambda: synthetic.paste(dataset(), 8, torch.zeros(4, 2, dtype=torch.long), seed=-1),
        V,
        r"seed must be an integer in \[0, ",
    ),
    (
        "random_offsets n",
        lambda: synthetic.random_offsets(0, 4, 8),
        V,
        r"n must be an integer >= 1, got 0",
    ),
    (
        "random_offsets image_size",
        lambda: synthetic.random_offsets(3, -3, 8),
        V,
        r"image_size must be an integer >= 1, got -3",
    ),
    (
        "on_noise aligned str",
        lambda: synthetic.on_noise(dataset(), 8, aligned="yes"),
        T,
        r"aligned must be True or False, got 'yes'",
    ),
    (
        "on_noise canvas",
        lambda: synthetic.on_noise(dataset(), 4, aligned=True),
        V,
        r"canvas_size=4 must be at least the image size 6",
    ),
    (
        "position_grid zero",
        lambda: synthetic.position_grid(dataset(), 10, 0),
        V,
        r"grid must be an integer >= 1, got 0",
    ),
    (
        "position_grid too fine",
        lambda: synthetic.position_grid(dataset(), 10, 50),
        V,
        r"grid=50 is more than the 5 distinct offsets of a 6-pixel image on a canvas_size=10 "
        r"canvas",
    ),
    # landscape
    (
        "score_sum outputs 1-D",
        lambda: landscape.score_sum(torch.rand(4), Y),
        V,
        r"outputs must be a 2-D tensor \[batch, classes\]",
    ),
    (
        "score_sum targets None",
        lambda: landscape.score_sum(torch.rand(4, 3), None),
        V,
        r"targets are required for score='loss'",
    ),
    (
        "score_sum targets range",
        lambda: landscape.score_sum(torch.rand(4, 3), torch.tensor([0, 1, 7, 0])),
        V,
        r"targets must be class indices \(num_classes=3\) in \[0, 2\], got values from 0 to 7",
    ),
    (
        "score_sum logit targets range",
        lambda: landscape.score_sum(torch.rand(4, 3), torch.tensor([0, -1, 2, 0]), "logit"),
        V,
        r"targets must be class indices .* got values from -1 to 2",
    ),
    (
        "score_sum batch mismatch",
        lambda: landscape.score_sum(torch.rand(4, 3), Y[:3]),
        V,
        r"targets must have shape \[4\] \(one per input\), got shape \(3,\)",
    ),
    (
        "score_sum targets float",
        lambda: landscape.score_sum(torch.rand(4, 3), Y.float()),
        T,
        r"targets must be an integer tensor",
    ),
    (
        "score_sum score",
        lambda: landscape.score_sum(torch.rand(4, 3), Y, "margin"),
        V,
        r"score='margin' is not allowed; choose one of 'loss', 'logit'",
    ),
    (
        "saliency inputs 3-D",
        lambda: landscape.saliency(net(), X[0], Y[:1]),
        V,
        r"inputs must be a 4-D tensor \[batch, channels, height, width\], got shape \(1, 6, 6\)",
    ),
    (
        "saliency inputs uint8",
        lambda: landscape.saliency(net(), (X * 255).to(torch.uint8), Y),
        T,
        r"inputs must be a floating-point tensor, got dtype torch\.uint8",
    ),
    (
        "saliency inputs nan",
        lambda: landscape.saliency(net(), with_value(X, NAN), Y),
        V,
        r"inputs must be finite",
    ),
    (
        "saliency inputs empty",
        lambda: landscape.saliency(net(), X[:0], Y[:0]),
        V,
        r"inputs must not be empty",
    ),
    (
        "saliency model str",
        lambda: landscape.saliency("net", X, Y),
        T,
        r"model must be a torch\.nn\.Module, got str",
    ),
    (
        "importance nan",
        lambda: landscape.importance_landscape(net(), with_value(X, NAN), Y),
        V,
        r"inputs must be finite, but 1 of its 144 values",
    ),
    (
        "importance inf",
        lambda: landscape.importance_landscape(net(), with_value(X, -INF), Y),
        V,
        r"inputs must be finite",
    ),
    (
        "importance targets length",
        lambda: landscape.importance_landscape(net(), X, Y[:2]),
        V,
        r"targets must have shape \[4\]",
    ),
    (
        "importance targets list",
        lambda: landscape.importance_landscape(net(), X, [0, 1, 2, 0]),
        T,
        r"targets must be a tensor",
    ),
    (
        "importance targets range",
        lambda: landscape.importance_landscape(net(), X, torch.tensor([0, 1, 3, 0])),
        V,
        r"targets must be class indices \(num_classes=3\)",
    ),
    (
        "importance batch_size bool",
        lambda: landscape.importance_landscape(net(), X, Y, batch_size=True),
        T,
        r"batch_size must be an integer >= 1, got True",
    ),
    (
        "importance squared str",
        lambda: landscape.importance_landscape(net(), X, Y, squared="yes"),
        T,
        r"squared must be True or False",
    ),
    (
        "importance normalize str",
        lambda: landscape.importance_landscape(net(), X, Y, normalize="no"),
        T,
        r"normalize must be True or False",
    ),
    (
        "importance model str",
        lambda: landscape.importance_landscape("net", X, Y),
        T,
        r"model must be a torch\.nn\.Module, got str",
    ),
    (
        "normalize list",
        lambda: landscape.normalize([[1.0]]),
        T,
        r"landscape must be a tensor \[\.\.\., H, W\], got list",
    ),
    (
        "normalize 1-D",
        lambda: landscape.normalize(torch.rand(5)),
        V,
        r"landscape must have at least 2 dimensions \[\.\.\., H, W\], got shape \(5,\)",
    ),
    (
        "normalize int",
        lambda: landscape.normalize(torch.ones(3, 3, dtype=torch.long)),
        T,
        r"landscape must be a floating-point tensor",
    ),
    ("cv 1-D", lambda: landscape.cv(torch.rand(5)), V, r"lam must have at least 2 dimensions"),
    ("laplacian empty", lambda: landscape.laplacian(torch.rand(0, 4)), V, r"lam must not be empty"),
    (
        "border_ratio width 0",
        lambda: landscape.border_ratio(MAP, 0),
        V,
        r"width must be an integer >= 1, got 0",
    ),
    (
        "border_ratio width float",
        lambda: landscape.border_ratio(MAP, 1.5),
        T,
        r"width must be an integer >= 1, got 1\.5",
    ),
    (
        "border_ratio width large",
        lambda: landscape.border_ratio(MAP[:5, :5], 3),
        V,
        r"width=3 leaves no interior in a 5x5 map; it must be in \[1, 2\]",
    ),
    (
        "asymmetry dim",
        lambda: landscape.asymmetry(MAP, dim=0),
        V,
        r"dim must be -1 \(left/right\) or -2 \(top/bottom\), got 0",
    ),
    (
        "asymmetry dim bool",
        lambda: landscape.asymmetry(MAP, dim=True),
        V,
        r"dim must be -1 .* got True",
    ),
    (
        "checkerboard stride 1",
        lambda: landscape.checkerboard(MAP, 1),
        V,
        r"stride must be an integer >= 2, got 1",
    ),
    (
        "flatness nan",
        lambda: landscape.flatness(with_value(MAP, NAN)),
        V,
        r"landscape must be finite, but 1 of its 64 values are NaN or infinite",
    ),
    (
        "flatness inf",
        lambda: landscape.flatness(with_value(MAP, INF)),
        V,
        r"landscape must be finite",
    ),
    (
        "flatness all zero",
        lambda: landscape.flatness(torch.zeros(8, 8)),
        V,
        r"landscape is all zero: an all-zero map has no landscape",
    ),
    (
        "flatness negative mean",
        lambda: landscape.flatness(-MAP),
        V,
        r"landscape must have a positive mean \(it is normalised by its mean\), got a mean of -",
    ),
    (
        "flatness stride 0",
        lambda: landscape.flatness(MAP, stride=0),
        V,
        r"stride must be an integer >= 2, got 0",
    ),
    (
        "flatness stride -2",
        lambda: landscape.flatness(MAP, stride=-2),
        V,
        r"stride must be an integer >= 2, got -2",
    ),
    (
        "flatness stride large",
        lambda: landscape.flatness(MAP, stride=9),
        V,
        r"stride=9 is larger than the 8x8 map; it must be in \[2, 8\]",
    ),
    (
        "flatness border 0",
        lambda: landscape.flatness(MAP, border=0),
        V,
        r"border must be an integer >= 1, got 0",
    ),
    (
        "flatness border -1",
        lambda: landscape.flatness(MAP, border=-1),
        V,
        r"border must be an integer >= 1, got -1",
    ),
    (
        "flatness border large",
        lambda: landscape.flatness(MAP, border=4),
        V,
        r"border=4 leaves no interior in a 8x8 map",
    ),
    (
        "flatness 3-D",
        lambda: landscape.flatness(MAP[None]),
        V,
        r"landscape must be a 2-D tensor \[H, W\], got shape \(1, 8, 8\)",
    ),
    ("flatness list", lambda: landscape.flatness([[1.0]]), T, r"landscape must be a tensor"),
    ("pearson nan", lambda: landscape.pearson(with_value(MAP, NAN), MAP), V, r"a must be finite"),
    (
        "pearson shapes",
        lambda: landscape.pearson(MAP, MAP[:4]),
        V,
        r"a and b must have the same shape, got \(8, 8\) and \(4, 8\)",
    ),
    (
        "pearson flat_tol",
        lambda: landscape.pearson(MAP, MAP, flat_tol=-1),
        V,
        r"flat_tol must be a finite number >= 0, got -1",
    ),
    (
        "mc build_model model",
        lambda: landscape.monte_carlo_landscape(net(), (1, 6, 6), n_inits=1),
        T,
        r"build_model must be a function that returns a freshly initialised nn\.Module",
    ),
    (
        "mc build_model result",
        lambda: landscape.monte_carlo_landscape(lambda: "net", (1, 6, 6), n_inits=1),
        T,
        r"build_model\(\) must be an nn\.Module, got str",
    ),
    (
        "mc input_size int",
        lambda: landscape.monte_carlo_landscape(net, 6, n_inits=1),
        T,
        r"input_size must be a sequence of 3 integers >= 1 \(channels, height, width\), got 6",
    ),
    (
        "mc input_size zero",
        lambda: landscape.monte_carlo_landscape(net, (1, 0, 6), n_inits=1),
        V,
        r"input_size must be 3 integers >= 1",
    ),
    (
        "mc input_size float",
        lambda: landscape.monte_carlo_landscape(net, (1, 6.5, 6), n_inits=1),
        V,
        r"input_size must be 3 integers >= 1 .*got \(1, 6\.5, 6\)",
    ),
    (
        "mc inputs empty",
        lambda: landscape.monte_carlo_landscape(net, (1, 6, 6), n_inits=1, inputs=X[:0]),
        V,
        r"inputs must not be empty",
    ),
    (
        "mc inputs nan",
        lambda: landscape.monte_carlo_landscape(
            net, (1, 6, 6), n_inits=1, inputs=with_value(X, NAN)
        ),
        V,
        r"inputs must be finite",
    ),
    (
        "mc inputs str",
        lambda: landscape.monte_carlo_landscape(net, (1, 6, 6), n_inits=1, inputs="pink"),
        V,
        r"inputs='pink' is not allowed; choose one of 'gaussian', 'uniform'",
    ),
    (
        "mc n_inits",
        lambda: landscape.monte_carlo_landscape(net, (1, 6, 6), n_inits=0),
        V,
        r"n_inits must be an integer >= 1, got 0",
    ),
    (
        "mc seed",
        lambda: landscape.monte_carlo_landscape(net, (1, 6, 6), n_inits=1, seed=-1),
        V,
        r"seed must be an integer in \[0, ",
    ),
    (
        "mc device",
        lambda: landscape.monte_carlo_landscape(net, (1, 6, 6), n_inits=1, device="gpu"),
        V,
        r"device='gpu' is not a device name",
    ),
    (
        "mc return_per_init",
        lambda: landscape.monte_carlo_landscape(net, (1, 6, 6), n_inits=1, return_per_init="yes"),
        T,
        r"return_per_init must be True or False",
    ),
    (
        "running_cv 2-D",
        lambda: landscape.running_cv(MAP),
        V,
        r"per_init must be a 3-D tensor \[n_inits, H, W\], got shape \(8, 8\)",
    ),
    (
        "running_cv empty",
        lambda: landscape.running_cv(MAP[None, :0]),
        V,
        r"per_init must not be empty",
    ),
    (
        "running_cv nan",
        lambda: landscape.running_cv(with_value(MAP, NAN)[None]),
        V,
        r"per_init must be finite",
    ),
    # objective
    (
        "measure unknown",
        lambda: objective.landscape_measure(MAP, "hessian"),
        V,
        r"measure='hessian' is not allowed; choose one of 'laplacian', 'gradient', 'cv'",
    ),
    (
        "measure cv 1-D",
        lambda: objective.landscape_measure(torch.rand(5), "cv"),
        V,
        r"lam must have at least 2 dimensions",
    ),
    (
        "batch_landscape 3-D",
        lambda: objective.batch_landscape(torch.rand(4, 6, 6)),
        V,
        r"grad must be a 4-D tensor \[B, C, H, W\], got shape \(4, 6, 6\)",
    ),
    (
        "input_gradient nan",
        lambda: objective.input_gradient(net(), with_value(X, NAN), Y),
        V,
        r"inputs must be finite",
    ),
    (
        "input_gradient sub_batch bool",
        lambda: objective.input_gradient(net(), X, Y, sub_batch=True),
        T,
        r"sub_batch must be an integer >= 1, got True",
    ),
    (
        "penalty nan",
        lambda: objective.pilcro_penalty(net(), with_value(X, NAN), Y),
        V,
        r"inputs must be finite, but 1 of its 144 values",
    ),
    (
        "penalty inf",
        lambda: objective.pilcro_penalty(net(), with_value(X, INF), Y),
        V,
        r"inputs must be finite",
    ),
    (
        "penalty flat inputs",
        lambda: objective.pilcro_penalty(net(), X.flatten(1), Y),
        V,
        r"inputs must be a 4-D tensor .*the P-objective needs a spatial input",
    ),
    (
        "penalty targets longer",
        lambda: objective.pilcro_penalty(net(), X, torch.tensor([0, 1, 2, 0, 1])),
        V,
        r"targets must have shape \[4\] \(one per input\), got shape \(5,\)",
    ),
    (
        "penalty targets shorter",
        lambda: objective.pilcro_penalty(net(), X, Y[:3]),
        V,
        r"targets must have shape \[4\]",
    ),
    (
        "penalty targets range",
        lambda: objective.pilcro_penalty(net(), X, torch.tensor([0, 1, 9, 0])),
        V,
        r"targets must be class indices \(num_classes=3\)",
    ),
    (
        "penalty sub_batch large",
        lambda: objective.pilcro_penalty(net(), X, Y, sub_batch=5),
        V,
        r"sub_batch=5 is larger than the batch \(4 samples\)",
    ),
    (
        "penalty model str",
        lambda: objective.pilcro_penalty("net", X, Y),
        T,
        r"model must be a torch\.nn\.Module, got str",
    ),
    (
        "frozen stats model",
        lambda: objective.frozen_batchnorm_stats("net").__enter__(),
        T,
        r"model must be a torch\.nn\.Module, got str",
    ),
    (
        "PObjective lam inf",
        lambda: objective.PObjective(INF),
        V,
        r"lam must be a finite number >= 0, got inf",
    ),
    (
        "PObjective lam negative",
        lambda: objective.PObjective(-1.0),
        V,
        r"lam must be a finite number >= 0, got -1\.0",
    ),
    (
        "PObjective lam str",
        lambda: objective.PObjective("1"),
        T,
        r"lam must be a finite number >= 0, got '1'",
    ),
    (
        "PObjective every bool",
        lambda: objective.PObjective(1.0, every=True),
        T,
        r"every must be an integer >= 1, got True",
    ),
    (
        "PObjective warmup",
        lambda: objective.PObjective(1.0, warmup_epochs=-1),
        V,
        r"warmup_epochs must be an integer >= 0, got -1",
    ),
    (
        "PObjective sub_batch float",
        lambda: objective.PObjective(1.0, sub_batch=2.5),
        T,
        r"sub_batch must be an integer >= 1, got 2\.5",
    ),
    (
        "PObjective measure",
        lambda: objective.PObjective(1.0, measure="hessian"),
        V,
        r"measure='hessian' is not allowed",
    ),
    (
        "PObjective call flat",
        lambda: objective.PObjective(1.0)(net(), X.flatten(1), Y, None),
        V,
        r"inputs must be a 4-D tensor",
    ),
    (
        "PObjective state",
        lambda: objective.PObjective(1.0).load_state_dict({}),
        V,
        r"state must be a dict with 'step' and 'epoch'",
    ),
    (
        "IG penalty lam nan",
        lambda: objective.InputGradientPenalty(NAN),
        V,
        r"lam must be a finite number >= 0, got nan",
    ),
    # layers
    ("lrlc rank 0", lambda: lrlc(rank=0), V, r"rank must be an integer >= 1, got 0"),
    ("lrlc rank bool", lambda: lrlc(rank=True), T, r"rank must be an integer >= 1, got True"),
    (
        "lrlc kernel 3-tuple",
        lambda: lrlc(kernel_size=(3, 3, 3)),
        V,
        r"kernel_size must be 2 integers >= 1, got \(3, 3, 3\)",
    ),
    (
        "lrlc kernel float",
        lambda: lrlc(kernel_size=(3, 2.5)),
        V,
        r"kernel_size must be 2 integers >= 1, got \(3, 2\.5\)",
    ),
    (
        "lrlc padding negative",
        lambda: lrlc(padding=-1),
        V,
        r"padding must be an integer >= 0, got -1",
    ),
    (
        "lrlc padding str",
        lambda: lrlc(padding="full"),
        V,
        r"padding='full' is not allowed; choose one of 'valid', 'same'",
    ),
    ("lrlc stride 0", lambda: lrlc(stride=0), V, r"stride must be an integer >= 1, got 0"),
    ("lrlc bias str", lambda: lrlc(bias="no"), T, r"bias must be True or False, got 'no'"),
    ("lrlc combining", lambda: lrlc(combining="diag"), V, r"combining='diag' is not allowed"),
    (
        "lrlc forward 3-D",
        lambda: lrlc()(torch.rand(2, 8, 8)),
        V,
        r"x must be a 4-D tensor \[N, C, H, W\], got shape \(2, 8, 8\)",
    ),
    (
        "lrlc forward int",
        lambda: lrlc()(torch.ones(1, 2, 8, 8, dtype=torch.long)),
        T,
        r"x must be a floating-point tensor, got dtype torch\.int64",
    ),
    (
        "lrlc forward channels",
        lambda: lrlc()(torch.rand(1, 3, 8, 8)),
        V,
        r"x has 3 channels but in_channels=2",
    ),
    (
        "lrlc forward size",
        lambda: lrlc()(torch.rand(1, 2, 9, 8)),
        V,
        r"x has spatial size \(9, 8\) but input_size=\(8, 8\)",
    ),
    (
        "lrlc weights inputs",
        lambda: lrlc(combining="input").combining_weights(torch.rand(1, 2, 7, 8)),
        V,
        r"inputs has spatial size \(7, 8\)",
    ),
    (
        "lc load bias shape",
        lambda: layers.LocallyConnected2d(2, 3, 3, 8).load_kernel(
            torch.zeros(6, 6, 3, 2, 3, 3), torch.zeros(3)
        ),
        V,
        r"bias must have shape \(3, 6, 6\), got \(3,\)",
    ),
    (
        "lc load kernel list",
        lambda: layers.LocallyConnected2d(2, 3, 3, 8).load_kernel([0.0]),
        T,
        r"kernel must be a tensor",
    ),
    (
        "lc bias str",
        lambda: layers.LocallyConnected2d(2, 3, 3, 8, bias="yes"),
        T,
        r"bias must be True or False",
    ),
    (
        "coordconv out_channels",
        lambda: layers.CoordConv2d(2, 0, 3),
        V,
        r"out_channels must be an integer >= 1, got 0",
    ),
    (
        "coordconv padding",
        lambda: layers.CoordConv2d(2, 3, 3, padding=-1),
        V,
        r"padding must be an integer >= 0, got -1",
    ),
    (
        "coordconv forward channels",
        lambda: layers.CoordConv2d(2, 3, 3)(torch.rand(1, 3, 8, 8)),
        V,
        r"x has 3 channels but in_channels=2",
    ),
    (
        "coordconv forward 3-D",
        lambda: layers.CoordConv2d(2, 3, 3)(torch.rand(2, 8, 8)),
        V,
        r"x must be a 4-D tensor",
    ),
    (
        "head rank",
        lambda: layers.InputCombiningHead(2, 0, (8, 8), (6, 6), 0.0),
        V,
        r"rank must be an integer >= 1, got 0",
    ),
    (
        "head init_logit",
        lambda: layers.InputCombiningHead(2, 2, (8, 8), (6, 6), NAN),
        V,
        r"init_logit must be a finite number, got nan",
    ),
    (
        "forward_flops inputs",
        lambda: measure.forward_flops(net(), [1.0]),
        T,
        r"inputs must be a tensor, got list",
    ),
    (
        "peak memory step",
        lambda: measure.peak_extra_memory(5, torch.device("cpu")),
        T,
        r"step must be a function of no arguments, got int",
    ),
    (
        "peak memory device",
        lambda: measure.peak_extra_memory(lambda: None, "gpu"),
        V,
        r"device='gpu' is not a device name",
    ),
    ("benchmark sizes", lambda: benchmark(sizes=(2,)), V, r"sizes must be an integer >= 3, got 2"),
    ("benchmark ranks", lambda: benchmark(ranks=(0,)), V, r"ranks must be an integer >= 1, got 0"),
    (
        "benchmark repeats",
        lambda: benchmark(repeats=0),
        V,
        r"repeats must be an integer >= 1, got 0",
    ),
    (
        "benchmark sizes int",
        lambda: benchmark(sizes=28),
        T,
        r"sizes must be a sequence of input sizes, got int",
    ),
    (
        "mean weights index float",
        lambda: layers.mean_combining_weights(nn.Sequential(lrlc()), torch.rand(1, 2, 8, 8), 0.5),
        T,
        r"index must be an integer >= 0, got 0\.5",
    ),
    (
        "mean weights index large",
        lambda: layers.mean_combining_weights(nn.Sequential(lrlc()), torch.rand(1, 2, 8, 8), 5),
        V,
        r"index=5 but the model has 1 LRLC layer",
    ),
    (
        "lrlc_layers str",
        lambda: layers.lrlc_layers("net"),
        T,
        r"model must be a torch\.nn\.Module, got str",
    ),
    # paths
    (
        "path_count input_size int",
        lambda: paths.path_count(net(), 28),
        T,
        r"input_size must be a sequence of 3 integers >= 1 \(channels, height, width\), got 28",
    ),
    (
        "path_count input_size float",
        lambda: paths.path_count(net(), (1, 8.5, 8)),
        V,
        r"input_size must be 3 integers >= 1 .*got \(1, 8\.5, 8\)",
    ),
    (
        "path_count input_size str",
        lambda: paths.path_count(net(), "188"),
        T,
        r"input_size must be a sequence of 3 integers",
    ),
    (
        "path_count model str",
        lambda: paths.path_count("net", (1, 8, 8)),
        T,
        r"model must be a torch\.nn\.Module, got str",
    ),
    (
        "path_count weighting",
        lambda: paths.path_count(net(), (1, 8, 8), weighting="paths"),
        V,
        r"weighting='paths' is not allowed; choose one of 'count', 'variance'",
    ),
    (
        "path_count channels",
        lambda: paths.path_count(net(), (3, 8, 8)),
        V,
        r"input_size have 3 channels but the model's first spatial layer expects 1",
    ),
    (
        "second_moment input_size",
        lambda: paths.second_moment(net(), (1, 0, 8)),
        V,
        r"input_size must be 3 integers >= 1",
    ),
    (
        "closed form length bool",
        lambda: paths.valid_profile_closed_form(True, 3, 2),
        T,
        r"length must be an integer >= 1, got True",
    ),
    (
        "closed form length float",
        lambda: paths.valid_profile_closed_form(9.5, 3, 2),
        T,
        r"length must be an integer >= 1, got 9\.5",
    ),
    (
        "conv_profile padding",
        lambda: paths.conv_profile_1d(9, 3, 2, padding=-1),
        V,
        r"padding must be an integer >= 0, got -1",
    ),
    (
        "conv_profile padding str",
        lambda: paths.conv_profile_1d(9, 3, 2, padding="half"),
        V,
        r"padding='half' is not allowed",
    ),
    (
        "toy_net width",
        lambda: paths.toy_net(2, width=0),
        V,
        r"width must be an integer >= 1, got 0",
    ),
    (
        "toy_net num_classes",
        lambda: paths.toy_net(2, num_classes=0),
        V,
        r"num_classes must be an integer >= 1, got 0",
    ),
    (
        "toy_net kernel",
        lambda: paths.toy_net(2, kernel_size=0),
        V,
        r"kernel_size must be an integer >= 1, got 0",
    ),
    (
        "toy_net padding",
        lambda: paths.toy_net(2, padding=-1),
        V,
        r"padding must be an integer >= 0, got -1",
    ),
    (
        "toy_net padding_mode",
        lambda: paths.toy_net(2, padding_mode="mirror"),
        V,
        r"padding_mode='mirror' is not allowed",
    ),
    (
        "toy_net pool str",
        lambda: paths.toy_net(2, pool="max"),
        T,
        r"pool must be None or a function returning a pooling module, got 'max'",
    ),
    ("toy_net relu str", lambda: paths.toy_net(2, relu="yes"), T, r"relu must be True or False"),
    (
        "blur_pool stride",
        lambda: paths.blur_pool(4, stride=0),
        V,
        r"stride must be an integer >= 1, got 0",
    ),
    (
        "compare input_size int",
        lambda: paths.compare_with_monte_carlo(net, 8, n_inits=1),
        T,
        r"input_size must be a sequence of 3 integers",
    ),
    (
        "compare build_model",
        lambda: paths.compare_with_monte_carlo(net(), (1, 8, 8), n_inits=1),
        T,
        r"build_model must be a function",
    ),
    # models
    (
        "Normalize std zero",
        lambda: models.Normalize((0.5,), (0.0,)),
        V,
        r"std must be a finite number > 0, got 0\.0",
    ),
    (
        "Normalize mean nan",
        lambda: models.Normalize((NAN,), (0.5,)),
        V,
        r"mean must be a finite number, got nan",
    ),
    (
        "Normalize lengths",
        lambda: models.Normalize((0.5, 0.5, 0.5), (0.5,)),
        V,
        r"mean and std must have one number per channel each, got 3 and 1",
    ),
    (
        "Normalize scalar",
        lambda: models.Normalize(0.5, (0.5,)),
        T,
        r"mean must be a sequence of per-channel numbers, got float",
    ),
    (
        "Normalize empty",
        lambda: models.Normalize((), ()),
        V,
        r"mean must hold one number per channel",
    ),
    (
        "Normalize forward channels",
        lambda: models.Normalize((0.5, 0.5), (0.5, 0.5))(torch.rand(1, 3, 4, 4)),
        V,
        r"x must be \[B, 2, H, W\] for this Normalize, got shape \(1, 3, 4, 4\)",
    ),
    (
        "padding_amount kernel",
        lambda: models.padding_amount("full", 0),
        V,
        r"kernel_size must be an integer >= 1, got 0",
    ),
    (
        "padding_amount padding",
        lambda: models.padding_amount("half", 3),
        V,
        r"padding='half' is not allowed; choose one of 'valid', 'same', 'full'",
    ),
    (
        "output_size stride",
        lambda: models.output_size(8, 3, 0, stride=0),
        V,
        r"stride must be an integer >= 1, got 0",
    ),
    (
        "output_size too small",
        lambda: models.output_size(2, 5, 0),
        V,
        r"input_size=2 is too small for kernel_size=5 with padding=0",
    ),
    (
        "output_size padding",
        lambda: models.output_size(8, 3, -1),
        V,
        r"padding must be an integer >= 0, got -1",
    ),
    (
        "make_layer in_channels",
        lambda: models.make_layer("conv", 0, 4, 8),
        V,
        r"in_channels must be an integer >= 1, got 0",
    ),
    ("make_layer kind", lambda: models.make_layer("mlp", 1, 4, 8), V, r"kind='mlp' is not allowed"),
    (
        "make_layer bias",
        lambda: models.make_layer("conv", 1, 4, 8, bias="no"),
        T,
        r"bias must be True or False",
    ),
    (
        "make_layer rank",
        lambda: models.make_layer("lrlc", 1, 4, 8, rank=0),
        V,
        r"rank must be an integer >= 1, got 0",
    ),
    (
        "reference layer_types str",
        lambda: models.reference_net("conv"),
        T,
        r"layer_types must be a list of layer kinds, got str",
    ),
    (
        "reference layer_types empty",
        lambda: models.reference_net(()),
        V,
        r"layer_types must name at least one layer",
    ),
    (
        "reference num_classes",
        lambda: models.reference_net(num_classes=0),
        V,
        r"num_classes must be an integer >= 1, got 0",
    ),
    (
        "reference width",
        lambda: models.reference_net(width=0),
        V,
        r"width must be an integer >= 1, got 0",
    ),
    (
        "reference in_channels",
        lambda: models.reference_net(in_channels=2.0),
        T,
        r"in_channels must be an integer >= 1, got 2\.0",
    ),
    (
        "reference input_size bool",
        lambda: models.reference_net(input_size=True),
        T,
        r"input_size must be an integer >= 1, got True",
    ),
    (
        "reference input_size small",
        lambda: models.reference_net(input_size=5),
        V,
        r"input_size=5 is too small for 3 layers with padding='valid'",
    ),
    (
        "reference normalization",
        lambda: models.reference_net(normalization=(0.5, 0.5)),
        V,
        r"normalization must be \(mean, std\), each with one number per channel, or None",
    ),
    (
        "reference normalization channels",
        lambda: models.reference_net(normalization=((0.5,) * 3, (0.5,) * 3)),
        V,
        r"normalization has 3 channels but in_channels=1",
    ),
    (
        "resnet num_classes",
        lambda: models.cifar_resnet18(num_classes=0),
        V,
        r"num_classes must be an integer >= 1, got 0",
    ),
    (
        "resnet padding_mode",
        lambda: models.cifar_resnet18(padding_mode="mirror"),
        V,
        r"padding_mode='mirror' is not allowed",
    ),
    (
        "resnet width",
        lambda: models.cifar_resnet18(width=-8),
        V,
        r"width must be an integer >= 1, got -8",
    ),
    (
        "BasicBlock stride",
        lambda: models.BasicBlock(4, 4, stride=0),
        V,
        r"stride must be an integer >= 1, got 0",
    ),
    (
        "count_parameters str",
        lambda: models.count_parameters("net"),
        T,
        r"model must be a torch\.nn\.Module, got str",
    ),
    # experiments
    (
        "recorder probe nan",
        lambda: experiments.LandscapeRecorder(with_value(X, NAN), Y),
        V,
        r"probe_inputs must be finite",
    ),
    (
        "recorder probe 3-D",
        lambda: experiments.LandscapeRecorder(X[0], Y),
        V,
        r"probe_inputs must be a 4-D tensor",
    ),
    (
        "recorder targets length",
        lambda: experiments.LandscapeRecorder(X, Y[:2]),
        V,
        r"probe_targets must have shape \[4\]",
    ),
    (
        "recorder inner",
        lambda: experiments.LandscapeRecorder(X, Y, inner=5),
        T,
        r"inner must be a regulariser \(callable\) or None, got int",
    ),
    (
        "recorder epoch",
        lambda: experiments.LandscapeRecorder(X, Y).record(net(), -1),
        V,
        r"epoch must be an integer >= 0, got -1",
    ),
    (
        "make_arm arm",
        lambda: experiments.make_arm("nope"),
        V,
        r"arm='nope' is not allowed; choose one of 'plain'",
    ),
    (
        "make_arm model",
        lambda: experiments.make_arm("plain", model="vgg"),
        V,
        r"model='vgg' is not allowed",
    ),
    (
        "make_arm full resnet",
        lambda: experiments.make_arm("full", model="resnet18"),
        V,
        r"arm='full' \(full padding\) is only defined for model='reference'",
    ),
    (
        "make_arm lam",
        lambda: experiments.make_arm("p_objective", lam=-1.0),
        V,
        r"lam must be a finite number >= 0",
    ),
    (
        "make_arm measure",
        lambda: experiments.make_arm("p_objective", measure="l1"),
        V,
        r"measure='l1' is not allowed",
    ),
    (
        "make_arm measure without P",
        lambda: experiments.make_arm("plain", measure="cv"),
        V,
        r"measure='cv' is only defined for arm='p_objective'",
    ),
    (
        "make_arm width",
        lambda: experiments.make_arm("plain", width=0),
        V,
        r"width must be an integer >= 1, got 0",
    ),
    (
        "steps_to_reach key",
        lambda: experiments.steps_to_reach(HISTORY, 0.5, steps_per_epoch=2, key="test_acc"),
        V,
        r"history must be fit's records, each with 'epoch', 'epoch_time_s' and key='test_acc'",
    ),
    (
        "steps_to_reach target",
        lambda: experiments.steps_to_reach(HISTORY, NAN, steps_per_epoch=2),
        V,
        r"target must be a finite number, got nan",
    ),
    (
        "steps_to_reach steps",
        lambda: experiments.steps_to_reach(HISTORY, 0.5, steps_per_epoch=0),
        V,
        r"steps_per_epoch must be an integer >= 1, got 0",
    ),
    (
        "spearman shapes",
        lambda: experiments.spearman(MAP, MAP[:4]),
        V,
        r"a and b must have the same shape",
    ),
    (
        "spearman nan",
        lambda: experiments.spearman(MAP, with_value(MAP, NAN)),
        V,
        r"b must be finite",
    ),
    ("run_arm epochs", lambda: run_arm(epochs=0), V, r"epochs must be an integer >= 1, got 0"),
    (
        "run_arm corruption",
        lambda: run_arm(corruptions={"n": ("gaussian_noise", -0.2)}),
        V,
        r"severity must be a finite number >= 0, got -0\.2",
    ),
    (
        "run_arm corruption kind",
        lambda: run_arm(corruptions={"n": ("rain", 1)}),
        V,
        r"kind='rain' is not allowed",
    ),
    (
        "run_arm train_set",
        lambda: run_arm(train_set=X),
        T,
        r"train_set must be an instance of ImageDataset, got Tensor",
    ),
    (
        "run_arm probe_size",
        lambda: run_arm(probe_size=0),
        V,
        r"probe_size must be an integer >= 1, got 0",
    ),
    (
        "run_arm eval_landscape",
        lambda: run_arm(eval_landscape="yes"),
        T,
        r"eval_landscape must be True or False, got 'yes'",
    ),
    (
        "run_arm position_sets",
        lambda: run_arm(position_sets=[dataset()]),
        V,
        r"position_sets must hold \(\(row, col\), ImageDataset\) pairs",
    ),
    (
        "per_seed columns",
        lambda: experiments.per_seed(FRAME, "loss"),
        V,
        r"frame lacks the columns \['seed', 'loss'\]",
    ),
    (
        "per_seed frame",
        lambda: experiments.per_seed({"acc": [1]}, "acc"),
        T,
        r"frame must be a pandas DataFrame, got dict",
    ),
    (
        "verdicts by",
        lambda: experiments.claim_verdicts(FRAME, {}, by="model"),
        V,
        r"by='model' is not a column of frame",
    ),
    (
        "verdicts frame",
        lambda: experiments.claim_verdicts([], {}),
        T,
        r"frame must be a pandas DataFrame, got list",
    ),
    (
        "recorder mode",
        lambda: experiments.LandscapeRecorder(X, Y, mode="test"),
        V,
        r"mode='test' is not allowed",
    ),
    # train: fit, evaluate, predict
    (
        "fit lr inf",
        lambda: train.fit(net(classes=2), dataset(), dataset(), epochs=1, lr=INF),
        V,
        r"lr must be a finite number > 0, got inf",
    ),
    (
        "fit lr nan",
        lambda: train.fit(net(classes=2), dataset(), dataset(), epochs=1, lr=NAN),
        V,
        r"lr must be a finite number > 0, got nan",
    ),
    (
        "fit lr bool",
        lambda: train.fit(net(classes=2), dataset(), dataset(), epochs=1, lr=True),
        T,
        r"lr must be a finite number > 0, got True",
    ),
    (
        "fit epochs 0",
        lambda: train.fit(net(classes=2), dataset(), dataset(), epochs=0),
        V,
        r"epochs must be an integer >= 1, got 0",
    ),
    (
        "fit epochs float",
        lambda: train.fit(net(classes=2), dataset(), dataset(), epochs=2.0),
        T,
        r"epochs must be an integer >= 1, got 2\.0",
    ),
    (
        "fit device gpu",
        lambda: train.fit(net(classes=2), dataset(), dataset(), epochs=1, device="gpu"),
        V,
        r"device='gpu' is not a device name",
    ),
    (
        "fit recipe",
        lambda: train.fit(net(classes=2), dataset(), dataset(), epochs=1, recipe="slow"),
        V,
        r"recipe='slow' is not allowed",
    ),
    (
        "fit weight_decay",
        lambda: train.fit(net(classes=2), dataset(), dataset(), epochs=1, weight_decay=-1),
        V,
        r"weight_decay must be a finite number >= 0",
    ),
    (
        "fit model",
        lambda: train.fit("net", dataset(), dataset(), epochs=1),
        T,
        r"model must be a torch\.nn\.Module",
    ),
    (
        "fit train_set",
        lambda: train.fit(net(classes=2), [1, 2], dataset(), epochs=1),
        T,
        r"train_set must be a dataset of \(image, label\) pairs",
    ),
    (
        "fit regularizer",
        lambda: train.fit(net(classes=2), dataset(), dataset(), epochs=1, regularizer=3),
        T,
        r"regularizer must be None or callable",
    ),
    (
        "fit nan loss",
        lambda: train.fit(
            net(classes=2),
            dataset(),
            dataset(),
            epochs=1,
            progress=False,
            regularizer=lambda *a: torch.tensor(NAN),
        ),
        FloatingPointError,
        r"training loss is nan at epoch 1, step 1",
    ),
    (
        "evaluate noise inf",
        lambda: train.evaluate(net(classes=2), dataset(), noise=INF),
        V,
        r"noise must be a finite number >= 0, got inf",
    ),
    (
        "evaluate noise negative",
        lambda: train.evaluate(net(classes=2), dataset(), noise=-0.1),
        V,
        r"noise must be a finite number >= 0, got -0\.1",
    ),
    (
        "evaluate noise bool",
        lambda: train.evaluate(net(classes=2), dataset(), noise=True),
        T,
        r"noise must be a finite number >= 0, got True",
    ),
    (
        "evaluate seed",
        lambda: train.evaluate(net(classes=2), dataset(), seed=-1),
        V,
        r"seed must be an integer in \[0, \d+\], got -1",
    ),
    (
        "evaluate batch_size",
        lambda: train.evaluate(net(classes=2), dataset(), batch_size=0),
        V,
        r"batch_size must be an integer >= 1, got 0",
    ),
    (
        "evaluate data",
        lambda: train.evaluate(net(classes=2), X),
        T,
        r"data must be a dataset of \(image, label\) pairs",
    ),
    (
        "predict model",
        lambda: train.predict(None, dataset()),
        T,
        r"model must be a torch\.nn\.Module",
    ),
    ("cached_run run_fn", lambda: records.cached_run(3), T, r"run_fn must be a function"),
    (
        "cached_run name",
        lambda: records.cached_run(lambda run_dir: {}, name="a/b"),
        V,
        r"name must be a non-empty folder name",
    ),
    (
        "cached_run input",
        lambda: records.cached_run(lambda run_dir, x: {}, x=object()),
        T,
        r"inputs\['x'\]: cannot describe an object of type object",
    ),
    (
        "write_atomic missing folder",
        lambda: records.write_atomic(
            Path(tempfile.gettempdir()) / "pilcro-no-such-folder" / "r.json.gz", b"x"
        ),
        FileNotFoundError,
        r"could not write .*pilcro-no-such-folder/r\.json\.gz: No such file or directory; free "
        r"space .* PILCRO_RECORDS",
    ),
    (
        "verdict alpha",
        lambda: stats.compare([1, 2], [1, 2], alpha=0),
        V,
        r"alpha must be a number in \(0, 1\), got 0",
    ),
    (
        "verdict treated scalar",
        lambda: stats.compare(0.5, [1, 2]),
        T,
        r"treated must be a sequence of numbers \(one per seed\), got 0\.5",
    ),
    (
        "verdict control str",
        lambda: stats.compare([1, 2], ["a", "b"]),
        T,
        r"control must be a sequence of numbers",
    ),
    (
        "verdict higher_is_better",
        lambda: stats.compare([1, 2], [1, 2], higher_is_better="yes"),
        T,
        r"higher_is_better must be True or False",
    ),
    (
        "fit run_dir file",
        lambda: train.fit(net(classes=2), dataset(), dataset(), epochs=1, run_dir=__file__),
        V,
        r"run_dir=.*test_bad_inputs\.py' is a file, not a folder",
    ),
    (
        "fit images of 3 channels",
        lambda: train.fit(net(classes=2), rgb_dataset(), rgb_dataset(), epochs=1),
        V,
        r"train_set holds images of 3 channel\(s\), but the model's first layer \(Conv2d\) takes 1",
    ),
    (
        "fit label past the outputs",
        lambda: train.fit(net(classes=1), dataset(), dataset(), epochs=1, progress=False),
        V,
        r"train_set holds labels from 0 to 1, but the model has 1 outputs",
    ),
    (
        "fit seed past 2**64",
        lambda: train.fit(net(classes=2), dataset(), dataset(), epochs=1, seed=2**64),
        V,
        r"seed must be an integer in \[0, 18446744073709551615\], got 18446744073709551616",
    ),
    (
        "fit run_key",
        lambda: train.fit(net(classes=2), dataset(), dataset(), epochs=1, run_key=3),
        T,
        r"run_key must be a string that names the training and validation data",
    ),
    (
        "fit run_dir undescribable dataset",
        lambda: train.fit(
            net(classes=2), PlainDataset(), PlainDataset(), epochs=1, run_dir=tempfile.mkdtemp()
        ),
        T,
        r"cannot describe an object of type PlainDataset.*TensorDataset.*run_key|TensorDataset",
    ),
    (
        "fit diverging last step",
        lambda: train.fit(
            net(classes=2),
            dataset(),
            dataset(),
            epochs=1,
            batch_size=4,
            optimizer="sgd",
            lr=1e30,
            progress=False,
        ),
        FloatingPointError,
        r"after epoch 1: the model's loss on data is (nan|inf)",
    ),
    (
        "evaluate nan images",
        lambda: train.evaluate(net(classes=2), nan_dataset()),
        V,
        r"data: images 0 to 3 are not all finite",
    ),
    (
        "evaluate noise 1e308",
        lambda: train.evaluate(net(classes=2), dataset(), noise=1e308),
        V,
        r"not all finite after adding noise=1e\+308",
    ),
    (
        "cpu bf16 override",
        lambda: with_env("PILCRO_CPU_BF16", "yes", train.cpu_has_bf16),
        V,
        r"PILCRO_CPU_BF16='yes' is not allowed; choose one of '0', '1'",
    ),
    (
        "path_count model own forward",
        lambda: paths.path_count(
            type("Skip", (nn.Sequential,), {"forward": lambda self, x: self[-1](x)})(*net()),
            (1, 8, 8),
        ),
        T,
        r"model must compute what its supported classes compute, but model is a Skip, a subclass "
        r"of Sequential that redefines forward",
    ),
]
if not torch.cuda.is_available():
    CASES.append(
        (
            "device cuda without GPU",
            lambda: utils.get_device("cuda"),
            V,
            r"device='cuda' was requested but no CUDA device is available; use device='cpu'",
        )
    )
if not utils._mps_available():
    CASES.append(
        (
            "device mps without MPS",
            lambda: utils.get_device("mps"),
            V,
            r"device='mps' was requested but no MPS device is available; use device='cpu'",
        )
    )


@pytest.mark.parametrize(
    ("call", "error", "match"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_bad_input_is_refused_with_a_clear_message(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_table_is_large_and_its_ids_unique():
    ids = [case[0] for case in CASES]
    assert len(ids) >= 90 and len(set(ids)) == len(ids)


# ---------------------------------------------------------------- good input still works


def test_numpy_numbers_are_accepted_where_python_numbers_are():
    assert utils.check_positive_int("n", np.int64(3)) == 3
    assert utils.check_number("lam", np.float32(0.5)) == 0.5
    assert objective.PObjective(np.float32(0.5)).lam == 0.5
    assert len(data.load_dataset("fashion_mnist_sample", "test", subset=np.int64(10))) == 10
    assert models.reference_net(width=np.int64(4), input_size=np.int64(12))(
        torch.rand(1, 1, 12, 12)
    ).shape == (1, 10)
    assert synthetic.on_noise(dataset(), 8, aligned=np.bool_(True)).images.shape == (4, 1, 8, 8)
    assert paths.path_count(net(), np.array([1, 6, 6])).shape == (6, 6)


def test_boundary_values_are_accepted():
    assert (
        len(data.load_dataset("fashion_mnist_sample", "test", subset=500)) == 500
    )  # the whole split
    assert landscape.flatness(torch.ones(5, 5), border=2, stride=5)["cv"] == 0
    assert landscape.monte_carlo_landscape(net, torch.Size([1, 6, 6]), n_inits=1).shape == (6, 6)
    assert synthetic.paste(dataset(), 6, [[0, 0]] * 4).images.shape == (4, 1, 6, 6)
    assert (
        len(synthetic.position_grid(dataset(), 8, 3)) == 9
    )  # exactly the 3 distinct offsets per axis
    labels = torch.tensor([0, 1, 1, 0], dtype=torch.int32)
    assert (
        data.ImageDataset((X * 255).to(torch.uint8), labels, ["a", "b"], "x").labels.dtype
        == torch.long
    )
    assert utils.get_device("cpu") == utils.get_device(torch.device("cpu")) == torch.device("cpu")


def test_read_idx_takes_a_str_path(tmp_path):
    values = np.arange(12).reshape(3, 4)
    path = tmp_path / "x-idx2-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(values)))
    np.testing.assert_array_equal(data.read_idx(str(path)), values)


def test_figures_of_a_missing_landscape_are_nan():
    for lam in (None, torch.zeros(8, 8), with_value(MAP, NAN)):
        assert all(math.isnan(v) for v in landscape.flatness_or_nan(lam).values())
    assert landscape.flatness_or_nan(MAP) == landscape.flatness(MAP)
