"""Where a book run's time goes, and what would make it cheaper on this machine.

A run of chapters 6 and 9 (``pilcro_lib.experiments.run_arm``: the fast CNN, width 16, the fast
recipe at batches of 64) spends its time in four places: the training steps, the validation
pass after every epoch, the landscape snapshot after every epoch (256 probe images, batch
statistics) and, once at the end, the test set clean and under six corruptions. This script
times each part on the same model and data, side by side in one run (alternating the candidates
so drift on a shared machine hits each alike), and projects the time of a 16-epoch run under
today's settings and under each candidate:

- training at batches of 128 or 256 (the peak learning rate scaled with the batch, as the
  chapters scale it): fewer, larger steps;
- the P-objective's extra cost at batches of 64 and 256;
- evaluation batches of 2,048 instead of 512;
- landscape snapshots at 4 epochs of 16 instead of every epoch, or on 128 probe images.

A candidate changes results (batch size) or what is recorded (snapshots), so a chapter adopts it
only with its records recomputed. Prints a table of seconds and the speed-up of each candidate.

Measured here (2 cores shared with other jobs, fp32, median of 3): the training steps are 98% of
a 16-epoch run at batches of 64; the validation passes, the 17 landscape snapshots and the test
set with its six corruptions are under 1% each, so evaluation batches and fewer snapshots gain
nothing (1.00x, 1.01x). Batches of 128 make the run 2.2x and batches of 256 2.8x faster
(the P-objective's run 2.5x at 256), the only candidate above 1.3x; whether it keeps the
accuracy at equal epochs is for the chapters' own validation runs to show.

    .venv/bin/python benchmarks/book_run_profile.py            # 12,000 training images
    .venv/bin/python benchmarks/book_run_profile.py --quick    # a smoke check (seconds)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from pilcro_lib.corruptions import corrupted
from pilcro_lib.data import load_dataset, train_val_split
from pilcro_lib.experiments import LandscapeRecorder, make_arm
from pilcro_lib.train import evaluate, fit, get_recipe

CORRUPTIONS = {  # chapter 6's six corruptions
    "gaussian_noise": 0.2,
    "blur": 1.0,
    "contrast": 0.3,
    "shift": 3,
    "border_occlusion": 3,
    "corner_occlusion": 10,
}


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def build(arm: str, width: int, **kwargs):
    torch.manual_seed(0)
    return make_arm(arm, model="fast_cnn", width=width, **kwargs)


def epoch_seconds(train, val, *, arm: str, batch: int, width: int) -> float:
    """One epoch of ``fit`` (fast recipe, lr 0.2 x batch / 256), minus its validation pass."""
    model, reg = build(arm, width, lam=0.03)
    lr = get_recipe("fast").lr * batch / 256
    t0 = time.perf_counter()
    fit(model, train, val, epochs=1, recipe="fast", batch_size=batch, lr=lr, regularizer=reg,
        progress=False)  # fmt: skip
    total = time.perf_counter() - t0
    return total - timed(lambda: evaluate(model, val), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, one repeat")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=16, help="the projected run's epochs")
    args = parser.parse_args()
    n_train, n_val, n_test, repeats = (512, 128, 256, 1) if args.quick else (12000, 2000, 2000, 3)
    dataset = "fashion_mnist_sample" if args.quick else "fashion_mnist"
    pool = load_dataset(dataset, "train", subset=n_train + n_val, seed=0)
    train, val = train_val_split(pool, n_val / len(pool), seed=0)
    test = load_dataset(dataset, "test", subset=n_test, seed=0)
    sets = [test] + [corrupted(test, kind, level) for kind, level in CORRUPTIONS.items()]
    print(f"{len(train)} train / {len(val)} validation / {len(test)} test images, "
          f"fast CNN width {args.width}, torch threads {torch.get_num_threads()}")  # fmt: skip

    model, _ = build("plain", args.width)
    probe = test.subset(torch.arange(min(256, len(test))))
    parts: dict[str, float] = {}
    for batch in (64, 128, 256):  # training epochs, alternated across the repeats
        parts[f"train epoch, batch {batch}"] = 0.0
        parts[f"train epoch, batch {batch}, P-objective"] = 0.0
    epoch_seconds(train, val, arm="p_objective", batch=64, width=args.width)  # warm-up, untimed
    for _ in range(repeats):
        for batch in (64, 128, 256):
            for arm, label in (("plain", ""), ("p_objective", ", P-objective")):
                seconds = epoch_seconds(train, val, arm=arm, batch=batch, width=args.width)
                parts[f"train epoch, batch {batch}{label}"] += seconds / repeats
    for eval_batch in (512, 2048):
        parts[f"validation pass, eval batch {eval_batch}"] = timed(
            lambda b=eval_batch: evaluate(model, val, batch_size=b), repeats
        )
        parts[f"test + 6 corruptions, eval batch {eval_batch}"] = timed(
            lambda b=eval_batch: [evaluate(model, s, batch_size=b) for s in sets], repeats
        )
    for n_probe in (256, 128):
        recorder = LandscapeRecorder(probe.float_images()[:n_probe], probe.labels[:n_probe])
        parts[f"landscape snapshot, {n_probe} probe images"] = timed(
            lambda r=recorder: r.record(model, 0), repeats
        )
    print("\nseconds per part (median of", repeats, "):")
    for name, seconds in parts.items():
        print(f"  {name:<45} {seconds:8.2f}")

    e = args.epochs

    def run_seconds(batch=64, eval_batch=512, snapshots=e, n_probe=256, arm="") -> float:
        return (
            e * parts[f"train epoch, batch {batch}{arm}"]
            + e * parts[f"validation pass, eval batch {eval_batch}"]
            + (snapshots + 1) * parts[f"landscape snapshot, {n_probe} probe images"]
            + parts[f"test + 6 corruptions, eval batch {eval_batch}"]
        )

    today = run_seconds()
    candidates = {
        "today (batch 64, eval 512, a snapshot every epoch)": today,
        "batch 128": run_seconds(batch=128),
        "batch 256": run_seconds(batch=256),
        "eval batch 2048": run_seconds(eval_batch=2048),
        f"snapshots at 4 of {e} epochs": run_seconds(snapshots=4),
        "128 probe images": run_seconds(n_probe=128),
        "batch 256 + eval 2048 + 4 snapshots": run_seconds(256, 2048, 4),
    }
    print(f"\nprojected {e}-epoch plain run (seconds, and speed-up over today):")
    for name, seconds in candidates.items():
        print(f"  {name:<45} {seconds:8.1f}  {today / seconds:5.2f}x")
    share = {
        "training steps": e * parts["train epoch, batch 64"],
        "validation passes": e * parts["validation pass, eval batch 512"],
        "landscape snapshots": (e + 1) * parts["landscape snapshot, 256 probe images"],
        "test and corruptions": parts["test + 6 corruptions, eval batch 512"],
    }
    print("\nwhere today's run goes:")
    for name, seconds in share.items():
        print(f"  {name:<25} {100 * seconds / today:5.1f}%")
    p_today = run_seconds(arm=", P-objective")
    p_256 = run_seconds(batch=256, arm=", P-objective")
    print(f"\nP-objective run: {p_today:.1f} s today, {p_256:.1f} s at batch 256 "
          f"({p_today / p_256:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
