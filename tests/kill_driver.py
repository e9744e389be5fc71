"""Trains a toy run into a run directory and kills itself at a chosen step of a file write.

    python tests/kill_driver.py RUN_DIR [WRITE STAGE]

WRITE: the k-th atomic write of the run (1: fit_config.json, then per epoch the checkpoint
and history.json). STAGE: ``torn`` (the temporary file half written), ``before_replace``,
``after_replace`` (renamed, directory not yet flushed), ``after_write`` (all done). The process
ends with ``os._exit`` (no clean-up runs, as with SIGKILL). Without WRITE it trains to the end
(a test may SIGKILL it at any time; it prints ``training`` when it starts).
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn

from pilcro_lib.data import ImageDataset

FIT = dict(
    epochs=3, batch_size=16, optimizer="sgd", lr=0.05, schedule="cosine", seed=5, progress=False
)


def data(n: int = 96, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 8, 8, generator=g)
    labels = (images[:, 0, :4].mean((1, 2)) > images[:, 0, 4:].mean((1, 2))).long()
    return ImageDataset(images, labels, ["bottom", "top"], f"toy{seed}")


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(4 * 64, 2),
    )


def _inject(write: int, stage: str) -> None:
    """Patch ``os.fsync`` and ``os.replace`` so that the process dies at ``stage`` of write
    ``write``."""
    real_fsync, real_replace = os.fsync, os.replace
    calls = {"fsync": 0, "replace": 0}

    def fsync(fd):
        calls["fsync"] += 1
        if calls["fsync"] == 2 * write - 1 and stage == "torn":
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            os._exit(9)
        real_fsync(fd)
        if calls["fsync"] == 2 * write and stage == "after_write":
            os._exit(9)

    def replace(src, dst):
        calls["replace"] += 1
        if calls["replace"] == write and stage == "before_replace":
            os._exit(9)
        real_replace(src, dst)
        if calls["replace"] == write and stage == "after_replace":
            os._exit(9)

    os.fsync, os.replace = fsync, replace


if __name__ == "__main__":
    from pilcro_lib.train import fit

    torch.set_num_threads(1)
    if len(sys.argv) == 4:
        _inject(int(sys.argv[2]), sys.argv[3])
    print("training", flush=True)
    fit(model(), data(), data(32, seed=1), run_dir=sys.argv[1], **FIT)
