"""Forward+backward time and peak memory of conv, LRLC (rank 1-16, each route), input-dependent
LRLC and LC at the reference net's layer shapes, side by side, as ratios to nn.Conv2d.

Targets: LRLC of rank K takes at most 1.25*K times the conv's time (the route the layer picks
by itself, ``auto``); LC's peak memory is at most twice its unfold buffer plus its weights.
For each rank it also prints both routes and the slowdown per multiply-add of the kernel route
that the layer's route rule assumes (``KERNEL_ROUTE_SLOWDOWN``).

    # batch 32, 64 channels, 28x28 and 32x32, CPU, 1 thread
    .venv/bin/python benchmarks/layers.py
    .venv/bin/python benchmarks/layers.py --sizes 28 --repeats 3 --channels-last
    .venv/bin/python benchmarks/layers.py --device cuda --threads 16
"""

from __future__ import annotations

import argparse
import os

import pandas as pd
import torch

from pilcro_lib.layers import KERNEL_ROUTE_SLOWDOWN, ROUTES
from pilcro_lib.measure import benchmark_layers
from pilcro_lib.utils import get_device


def _why(conv: float, kernel: float, rank: int, batch: int) -> str:
    """Why the better route misses ``1.25 * rank``, from its measured ratio to a conv."""
    if conv <= kernel:
        return (
            f"conv route: {conv / rank:.2f} convs' time per rank (K convs in one, plus the "
            "combine over K)"
        )
    units = (batch + rank) / batch
    return (
        f"kernel route: {units:.2f} convs' multiply-adds at {kernel / units:.1f}x a conv's "
        "time per multiply-add"
    )


def check_targets(table: pd.DataFrame, batch: int) -> pd.DataFrame:
    """One row per target: the measured ratio, its bound, whether it is met, by how much it is
    missed and why; for LRLC also both routes and the kernel route's measured slowdown."""
    rows = []
    for _, r in table.iterrows():
        if r.layer.startswith("lrlc K=") and r.layer.endswith(f"={r['rank']}"):
            same = table[(table.input == r.input) & (table["rank"] == r["rank"])].set_index("layer")
            conv = same.time_vs_conv.get(f"lrlc K={r['rank']} conv route", float("nan"))
            kernel = same.time_vs_conv.get(f"lrlc K={r['rank']} kernel route", float("nan"))
            twin = (
                conv if r.route == "conv" else kernel
            )  # the same computation, measured in its forced row
            why = _why(conv, kernel, r["rank"], batch)
            if abs(r.time_vs_conv / twin - 1) > 0.2:
                why += f"; noise: the same computation took {twin:.2f} in its forced row"
            rows.append(
                {
                    "input": r.input,
                    "target": f"{r.layer}: time <= 1.25*K x conv",
                    "measured": r.time_vs_conv,
                    "bound": 1.25 * r["rank"],
                    "route": r.route,
                    "conv_route": conv,
                    "kernel_route": kernel,
                    "kernel_slowdown": kernel * batch / (batch + r["rank"]),
                    "why": why,
                }
            )
        if r.layer == "lc":
            rows.append(
                {
                    "input": r.input,
                    "target": "lc: peak <= 2 x (unfold + weights)",
                    "measured": r.peak_MB / r.unfold_plus_weights_MB,
                    "bound": 2.0,
                    "why": "patches, weights and their gradients",
                }
            )
    frame = pd.DataFrame(rows)
    frame["met"] = frame.measured <= frame.bound
    frame["missed_by"] = (
        (frame.measured / frame.bound - 1)
        .where(~frame.met)
        .map(lambda v: "" if pd.isna(v) else f"{v:.0%}")
    )
    frame.loc[frame.met, "why"] = ""
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 32])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="channels_last inputs and weights for every layer",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 is steadiest on a shared machine)",
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch "
        f"{args.batch}, {args.channels} channels, "
        f"{'channels_last' if args.channels_last else 'contiguous'}; KERNEL_ROUTE_SLOWDOWN "
        f"{KERNEL_ROUTE_SLOWDOWN}; load average before {os.getloadavg()[0]:.2f}"
    )
    table = benchmark_layers(
        batch=args.batch,
        channels=args.channels,
        sizes=args.sizes,
        ranks=args.ranks,
        routes=ROUTES,
        channels_last=args.channels_last,
        repeats=args.repeats,
        device=device,
    )
    print(f"load average after {os.getloadavg()[0]:.2f} (1-minute; {os.cpu_count()} CPUs)")
    with pd.option_context(
        "display.width", 250, "display.max_columns", 20, "display.max_colwidth", 120
    ):
        print(table.round(2).to_string(index=False))
        print()
        print(check_targets(table, args.batch).round(2).to_string(index=False))


if __name__ == "__main__":
    main()
