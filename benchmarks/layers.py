"""Forward+backward time and peak memory of conv, LRLC (rank 1-16), input-dependent LRLC and LC
at the reference net's layer shapes, side by side, as ratios to nn.Conv2d.

Targets: LRLC of rank K takes at most 1.25*K times the conv's time; LC's peak memory is at most
twice its unfold buffer plus its weights.

    .venv/bin/python benchmarks/layers.py            # batch 32, 64 channels, 28x28 and 32x32, CPU, 1 thread
    .venv/bin/python benchmarks/layers.py --device cuda --threads 16
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from pilcro_lib.layers import benchmark_layers
from pilcro_lib.utils import get_device


def check_targets(table: pd.DataFrame) -> pd.DataFrame:
    """One row per target: the measured ratio, its bound and whether it is met."""
    rows = []
    for _, r in table.iterrows():
        if r.layer.startswith("lrlc K="):
            rows.append({"input": r.input, "target": f"{r.layer}: time <= 1.25*K x conv", "measured": r.time_vs_conv, "bound": 1.25 * r["rank"]})
        if r.layer == "lc":
            rows.append({"input": r.input, "target": "lc: peak <= 2 x (unfold + weights)", "measured": r.peak_MB / r.unfold_plus_weights_MB, "bound": 2.0})
    frame = pd.DataFrame(rows)
    frame["met"] = frame.measured <= frame.bound
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on a shared machine)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}, {args.channels} channels")
    table = benchmark_layers(batch=args.batch, channels=args.channels, sizes=args.sizes, repeats=args.repeats, device=device)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(2).to_string(index=False))
        print()
        print(check_targets(table).round(2).to_string(index=False))


if __name__ == "__main__":
    main()
