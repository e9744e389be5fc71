"""Throughput of ``importance_landscape`` vs a plain forward+backward and vs Captum's Saliency.

All three process the same batches of Fashion-MNIST-sized inputs through the same model (the
reference net in eval mode) and the same score (the target logit):

- ``importance_landscape``: one backward pass per batch to the inputs only, summed into a map;
- plain forward+backward: ``model(x)``, target-logit sum, ``.backward()`` (parameter gradients
  too, as a training step computes them, no optimiser);
- Captum: ``Saliency(model).attribute(x, target=y, abs=True)``, then summed into the same map.

The three alternate round by round, so drift on a shared machine hits each alike. Prints the
median images per second and the ratios (targets: vs plain >= 0.8, vs Captum >= 1.0).

    .venv/bin/python benchmarks/landscape.py [--images 1024] [--batch-size 256] [--rounds 3]
        [--width 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from captum.attr import Saliency

from pilcro_lib.landscape import importance_landscape
from pilcro_lib.measure import synchronize
from pilcro_lib.models import reference_net


def plain_forward_backward(model, x, y, batch_size):
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size].requires_grad_(True), y[start : start + batch_size]
        model(xb).gather(1, yb.view(-1, 1)).sum().backward()
    model.zero_grad(set_to_none=True)


def captum_landscape(model, x, y, batch_size):
    saliency, total = Saliency(model), 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        total = total + saliency.attribute(xb.requires_grad_(True), target=yb, abs=True).sum(1).sum(
            0
        )
    return total / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = reference_net(width=args.width).to(device).eval()
    x = torch.rand(args.images, 1, 28, 28, device=device)
    y = torch.randint(10, (args.images,), device=device)
    methods = {
        "importance_landscape": lambda: importance_landscape(
            model, x, y, score="logit", batch_size=args.batch_size
        ),
        "plain forward+backward": lambda: plain_forward_backward(model, x, y, args.batch_size),
        "captum Saliency": lambda: captum_landscape(model, x, y, args.batch_size),
    }
    ours = importance_landscape(
        model, x, y, score="logit", batch_size=args.batch_size, normalize=False
    )
    diff = (
        ours - captum_landscape(model, x, y, args.batch_size).double().cpu()
    ).abs().max() / ours.abs().max()
    for fn in methods.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)

    rate = {name: args.images / statistics.median(t) for name, t in times.items()}
    print(
        f"reference net width {args.width}, {args.images} images 1x28x28, batch {args.batch_size}, "
        f"device {device}, {torch.get_num_threads()} threads, {args.rounds} rounds (median)"
    )
    print(f"max |ours - captum| / max |ours| = {diff:.2e}")
    print(f"{'method':<24} {'images/s':>10} {'ours / method':>14}")
    for name, r in rate.items():
        print(f"{name:<24} {r:>10.0f} {rate['importance_landscape'] / r:>14.2f}")
    print(
        "ratio vs plain forward+backward: "
        f"{rate['importance_landscape'] / rate['plain forward+backward']:.2f} (target >= 0.8); vs "
        f"Captum: {rate['importance_landscape'] / rate['captum Saliency']:.2f} (target >= 1.0)"
    )


if __name__ == "__main__":
    main()
