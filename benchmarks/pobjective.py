"""Training-step cost of the P-objective against a plain step, measured side by side in one run.

Same model (the reference net on 28x28, ``same`` zero padding), same batch, every arm timed in
turn within each round (``pilcro_lib.cost.step_cost``). Arms: the full-batch penalty,
sub-batches of 32/16/8, a penalty every 2nd/4th step, two combinations, the full-batch penalty
taken from the training forward itself (inputs requiring grad: no second forward), and the
input-gradient penalty (the control) at full batch. CPU time of this process by default, so
other work on a shared machine does not distort the ratios.

    .venv/bin/python benchmarks/pobjective.py [--width 32] [--batch 128] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from pilcro_lib.cost import step_cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--width",
        type=int,
        default=32,
        help="channels of the reference net (the book's experiments use 32)",
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument(
        "--steps", type=int, default=4, help="steps per timing (a multiple of 4 keeps every-k fair)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="process CPU time or wall time"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    times = step_cost(
        width=args.width, batch=args.batch, steps=args.steps, rounds=args.rounds, clock=args.clock
    )
    print(
        f"reference net width {args.width}, 28x28, batch {args.batch}, {args.threads} thread(s), "
        f"{args.clock} time, median of {args.rounds} rounds x {args.steps} steps, torch "
        f"{torch.__version__}"
    )
    print(f"{'arm':<42} {'ms/step':>9} {'x plain':>8}")
    for name, t in times.items():
        print(f"{name:<42} {1000 * t:9.1f} {t / times['plain']:8.2f}")


if __name__ == "__main__":
    main()
