"""Epoch time of ``pilcro_lib.train.fit`` vs a bare PyTorch loop on the same model and data.

Both train the reference net (width 32) on the same Fashion-MNIST images with Adam and
evaluate the validation split once per epoch; the runs alternate so drift on a noisy machine
hits both. Prints median epoch times and their ratio (target: fit / bare <= 1.10).

    .venv/bin/python benchmarks/train_overhead.py [--epochs 3] [--train 4000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from pilcro_lib.data import NORMALIZATION, load_dataset, train_val_split
from pilcro_lib.models import reference_net
from pilcro_lib.train import fit


def build(seed: int = 0):
    torch.manual_seed(seed)
    return reference_net(width=32, normalization=NORMALIZATION["fashion_mnist"])


def bare_epoch_times(train, val, epochs: int, batch_size: int) -> list[float]:
    """A plain loop: shuffle, float conversion, forward, loss, backward, step; then validation."""
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_train, y_train = train.images, train.labels
    x_val, y_val = val.float_images(), val.labels
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(y_train))
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            x, y = x_train[idx].float().div_(255), y_train[idx]
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():  # the validation pass, as fit does
            for i in range(0, len(y_val), 512):
                (model(x_val[i : i + 512]).argmax(1) == y_val[i : i + 512]).sum().item()
        times.append(time.perf_counter() - t0)
    return times


def fit_epoch_times(train, val, epochs: int, batch_size: int, checkpoint: bool) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        history = fit(
            build(),
            train,
            val,
            epochs=epochs,
            batch_size=batch_size,
            run_dir=tmp if checkpoint else None,
            progress=False,
        )
    return [r["epoch_time_s"] for r in history.records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=4000, help="training images")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    try:
        data = load_dataset("fashion_mnist", "train", subset=args.train + args.train // 9)
    except FileNotFoundError:
        data = load_dataset("fashion_mnist_sample", "train")
    train, val = train_val_split(data, 0.1)
    results: dict[str, list[float]] = {"bare loop": [], "fit": [], "fit + checkpoints": []}
    for _ in range(args.repeats):
        results["bare loop"] += bare_epoch_times(train, val, args.epochs, 128)
        results["fit"] += fit_epoch_times(train, val, args.epochs, 128, checkpoint=False)
        results["fit + checkpoints"] += fit_epoch_times(
            train, val, args.epochs, 128, checkpoint=True
        )
    base = statistics.median(results["bare loop"])
    print(
        f"{len(train)} training images, {len(val)} validation, batch 128, "
        f"{torch.get_num_threads()} threads, device cpu"
    )
    print(f"{'variant':<20} {'median epoch (s)':>17} {'ratio to bare':>14}")
    for name, times in results.items():
        med = statistics.median(times)
        print(f"{name:<20} {med:>17.3f} {med / base:>14.3f}")


if __name__ == "__main__":
    main()
