"""Time to accuracy on Fashion-MNIST for the networks the book trains: today's settings and the fast recipe.

Each network trains with :func:`pilcro_lib.train.fit` on the 55,000 training images left after
holding out 5,000 for validation (a fixed seeded split). A run of E epochs has its learning-rate
schedule span those E epochs; each network and setting runs a ladder of such lengths, and the
test accuracy (10,000 images) is measured after every epoch. Reported per run: the training
time (the per-epoch validation pass included, the test evaluation not), images/s, and achieved
GFLOP/s (3 x the forward pass's convolution and matmul FLOPs per image) as a fraction of this
machine's matmul peak (measured here: fp32, or bf16 for runs under bf16 autocast). Per network
and setting: the time until the first evaluation that reaches each target accuracy, and the best
accuracy of any evaluation within each time budget. Then the floors, met or not.

    .venv/bin/python benchmarks/time_to_accuracy.py          # everything (about 65 min on 2 cores)
    .venv/bin/python benchmarks/time_to_accuracy.py --quick  # smoke check (under a minute)
    .venv/bin/python benchmarks/time_to_accuracy.py --nets fast_cnn --ladder 2,4,8 --set flip=True
    .venv/bin/python benchmarks/time_to_accuracy.py --nets reference --settings fast \\
        --ladder 16,32,64

What the fast recipe's settings rest on (this script, 2 cores, one seed; test accuracy):
batches of 256 at lr 0.2: the reference net after 4 epochs reaches 85.4% with batch 512 at lr
0.2, 86.5% at lr 0.4, 87.4% with batch 256 at lr 0.2, 87.8% with batch 128 at lr 0.1; the fast
CNN after 8 epochs 92.5% (512, 0.2), 92.6% (512, 0.4), 92.8% (256, 0.2). No flips: the fast CNN
reaches 92.0% with them and 92.5% without after 8 epochs (and flips would make the learned
importance landscapes of Part II left-right symmetric). No weight averaging: an exponential
average (0.99 per step) ends at 92.3% where the same run's weights end at 92.2%, because the
learning rate already decays to 0. bf16 autocast and channels_last: the throughput table this
script prints first (bf16 plus channels_last trains the reference net 3.2x and the fast CNN
2.3x faster than fp32 at batch 256). torch.compile (``--compile``): 16% faster for the reference
net, slower for the fast CNN, and 10 s to 2.5 min to compile: not used. Warm-up, label smoothing
and weight decay follow the CIFAR-10 speed-runs; they were not varied here.
"""  # noqa: E501 (the first line is the command's --help description, __doc__.splitlines()[0])

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pilcro_lib.data import NORMALIZATION, ImageDataset, load_dataset, train_val_split
from pilcro_lib.measure import forward_flops, matmul_peak, synchronize
from pilcro_lib.models import cifar_resnet18, fast_cnn, reference_net
from pilcro_lib.train import Recipe, evaluate, fit, get_recipe, uses_bf16
from pilcro_lib.utils import get_device, seed_everything

FM = NORMALIZATION["fashion_mnist"]
VALIDATION = 5_000
FAST_CNN_TARGET, FAST_CNN_BUDGET_S = 0.92, 300.0
PLATEAU_NET, PLATEAU_BUDGET_S, PLATEAU_SPREAD = "reference", 600.0, 0.005


@dataclass(frozen=True)
class Net:
    """A network of the book, how its chapter trains it today, and the fast recipe's ladder of run
    lengths."""

    title: str
    build: Callable[[], nn.Module]
    today: Recipe | None
    today_epochs: tuple[int, ...]
    fast_epochs: tuple[int, ...]


NETS = {
    "reference": Net(
        "3-layer reference net of the LRLC design (64 filters, valid padding)",
        lambda: reference_net(width=64, normalization=FM),
        get_recipe("classic", lr=3e-3, schedule="cosine"),
        (2,),
        (8, 16, 32),
    ),  # chapter 0's old settings
    "reference_same": Net(
        "former reference net of Part II (32 filters, same padding)",
        lambda: reference_net(width=32, padding="same", normalization=FM),
        get_recipe("classic"),
        (2,),
        (2, 4, 8),
    ),  # chapter 6's former settings
    "resnet18_w8": Net(
        "former CIFAR-style ResNet-18 of Part II (width 8)",
        lambda: cifar_resnet18(10, 1, normalization=FM, width=8),
        get_recipe("classic"),
        (1,),
        (1, 2),
    ),
    "fast_cnn": Net(
        "fast CNN of Part II (width 32)",
        lambda: fast_cnn(normalization=FM),
        None,
        (),
        (2, 4, 8, 16),
    ),
}
QUICK_NETS = ("reference", "fast_cnn")


class AccuracyProbe:
    """A hook for :func:`fit` that adds nothing to the loss and logs the test accuracy after each
    epoch."""

    def __init__(self, model: nn.Module, test_set: ImageDataset):
        self.model, self.test_set = model, test_set

    def __call__(self, model, inputs, targets, outputs) -> None:
        return None

    def epoch_log(self) -> dict[str, float]:
        return {"test_acc": evaluate(self.model, self.test_set)["accuracy"]}


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else the platform's machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.machine()


def forward_flops_per_image(
    build: Callable[[], nn.Module], image_shape: tuple[int, int, int]
) -> float:
    """Convolution and matmul FLOPs of one forward pass, per image (a fresh model in eval mode)."""
    return forward_flops(build().eval(), torch.rand(2, *image_shape)) / 2


def step_throughput(
    build: Callable[[], nn.Module],
    batch_size: int,
    device: torch.device,
    *,
    bf16: bool,
    channels_last: bool,
    compiled: bool = False,
    steps: int = 6,
) -> tuple[float, float]:
    """Images/s of training steps (forward, cross-entropy, backward, SGD step) on random
    ``[batch_size, 1, 28, 28]`` batches, and the seconds of the first two steps (compilation
    included)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build().to(device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    forward = torch.compile(model) if compiled else model
    x = torch.rand(batch_size, 1, 28, 28, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(forward(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    for _ in range(2):
        step()
    synchronize(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - start), warm


def arithmetic(
    names: list[str], batch_size: int, device: torch.device, compiled: bool, steps: int
) -> None:
    """Print the training throughput of each net in fp32 / bf16 autocast, contiguous / channels_last
    (and compiled)."""
    modes = {
        "fp32": (False, False),
        "fp32+CL": (False, True),
        "bf16": (True, False),
        "bf16+CL": (True, True),
    }
    print(
        f"\ntraining steps, images/s at batch {batch_size} (CL: channels_last; ratio to fp32 in "
        "brackets)"
    )
    print(
        f"{'net':<15} "
        + " ".join(f"{m:>15}" for m in modes)
        + ("     bf16+CL+compile (compile s)" if compiled else "")
    )
    for name in names:
        speeds = {
            m: step_throughput(
                NETS[name].build, batch_size, device, bf16=b, channels_last=c, steps=steps
            )[0]
            for m, (b, c) in modes.items()
        }
        line = f"{name:<15} " + " ".join(
            f"{v:>7.0f} ({v / speeds['fp32']:>4.2f}x)" for v in speeds.values()
        )
        if compiled:
            speed, warm = step_throughput(
                NETS[name].build,
                batch_size,
                device,
                bf16=True,
                channels_last=True,
                compiled=True,
                steps=steps,
            )
            line += f" {speed:>7.0f} ({speed / speeds['fp32']:>4.2f}x) ({warm:.0f} s)"
        print(line, flush=True)


def load(quick: bool, device: torch.device) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """Fashion-MNIST train (55,000) / validation (5,000, the seeded split of chapter 0) / test
    (10,000), on ``device``; ``quick``: the first 2,000 / 500 / 1,000 of them."""
    full = load_dataset("fashion_mnist", "train")
    train, val = train_val_split(full, VALIDATION / len(full), seed=0)
    test = load_dataset("fashion_mnist", "test")
    if quick:
        train, val, test = (
            d.subset(torch.arange(n)) for d, n in ((train, 2000), (val, 500), (test, 1000))
        )
    return tuple(
        ImageDataset(d.images.to(device), d.labels.to(device), d.classes, d.name)
        for d in (train, val, test)
    )


def train_run(
    name: str,
    setting: str,
    recipe: Recipe,
    epochs: int,
    data,
    device: torch.device,
    flops: float,
    peaks: dict,
) -> dict:
    """One run of ``epochs`` epochs: its per-epoch (time, test accuracy) points and its speed."""
    train, val, test = data
    seed_everything(0)
    model = NETS[name].build()
    history = fit(
        model,
        train,
        val,
        epochs=epochs,
        recipe=recipe,
        regularizer=AccuracyProbe(model, test),
        device=device,
        progress=False,
    )
    times = torch.tensor([r["epoch_time_s"] for r in history.records]).cumsum(0).tolist()
    points = [(t, r["test_acc"]) for t, r in zip(times, history.records)]
    bf16 = uses_bf16(recipe, device)
    images_per_s = len(train) * epochs / times[-1]
    gflops = 3 * flops * images_per_s / 1e9
    return {
        "net": name,
        "setting": setting,
        "epochs": epochs,
        "time_s": times[-1],
        "test_acc": points[-1][1],
        "val_acc": history.final["val_acc"],
        "points": points,
        "images_per_s": images_per_s,
        "gflops": gflops,
        "precision": "bf16" if bf16 else "fp32",
        "peak_fraction": gflops / peaks["bf16" if bf16 else "fp32"],
    }


def time_to(points: list[tuple[float, float]], target: float) -> float | None:
    """The training time of the first evaluation at or above ``target`` (``None``: never)."""
    reached = [t for t, acc in points if acc >= target]
    return min(reached) if reached else None


def best_within(points: list[tuple[float, float]], budget_s: float) -> float | None:
    """The best test accuracy of any evaluation within ``budget_s`` (``None``: no evaluation
    yet)."""
    accs = [acc for t, acc in points if t <= budget_s]
    return max(accs) if accs else None


def plateau(runs: list[dict]) -> dict | None:
    """The shortest run B of a ladder whose 2x and 4x runs end within ``PLATEAU_SPREAD`` of it (all
    three)."""
    by_epochs = {r["epochs"]: r for r in runs}
    for epochs in sorted(by_epochs):
        trio = [by_epochs.get(epochs * k) for k in (1, 2, 4)]
        if None in trio:
            continue
        accs = [r["test_acc"] for r in trio]
        if max(accs) - min(accs) < PLATEAU_SPREAD:
            return {"runs": trio, "spread": max(accs) - min(accs)}
    return None


def fmt_time(t: float | None) -> str:
    return "not reached" if t is None else f"{t:.0f} s"


def fmt_acc(a: float | None) -> str:
    return "-" if a is None else f"{100 * a:.2f}%"


def report(runs: list[dict], targets: list[float], budgets_s: list[float]) -> None:
    print(
        f"\n{'net':<15} {'setting':<7} {'epochs':>6} {'time (s)':>9} {'test acc':>9} "
        f"{'val acc':>8} {'images/s':>9} {'GFLOP/s':>8} {'of peak':>8} precision"
    )
    for r in runs:
        print(
            f"{r['net']:<15} {r['setting']:<7} {r['epochs']:>6} {r['time_s']:>9.1f} "
            f"{fmt_acc(r['test_acc']):>9} {fmt_acc(r['val_acc']):>8} {r['images_per_s']:>9.0f} "
            f"{r['gflops']:>8.1f} {100 * r['peak_fraction']:>7.1f}% {r['precision']}"
        )
    groups = {}
    for r in runs:
        groups.setdefault((r["net"], r["setting"]), []).extend(r["points"])
    print(
        "\ntime to reach a test accuracy (first evaluation at or above it, any run of the ladder)"
    )
    print(f"{'net':<15} {'setting':<7} " + " ".join(f"{fmt_acc(t):>12}" for t in targets))
    for (net, setting), points in groups.items():
        print(
            f"{net:<15} {setting:<7} "
            + " ".join(f"{fmt_time(time_to(points, t)):>12}" for t in targets)
        )
    print("\nbest test accuracy within a training-time budget (any evaluation of the ladder)")
    print(f"{'net':<15} {'setting':<7} " + " ".join(f"{b / 60:>9.3g} min" for b in budgets_s))
    for (net, setting), points in groups.items():
        print(
            f"{net:<15} {setting:<7} "
            + " ".join(f"{fmt_acc(best_within(points, b)):>13}" for b in budgets_s)
        )


def speedups(runs: list[dict]) -> list[str]:
    """For each net run both ways: time for today's final accuracy, today vs the fast recipe."""
    lines = []
    for name in dict.fromkeys(r["net"] for r in runs):
        today = [r for r in runs if r["net"] == name and r["setting"] == "today"]
        fast = [p for r in runs if r["net"] == name and r["setting"] == "fast" for p in r["points"]]
        if not today or not fast:
            continue
        last = max(today, key=lambda r: r["epochs"])
        t_fast = time_to(fast, last["test_acc"])
        fast_text = (
            f"reaches that in {t_fast:.0f} s ({last['time_s'] / t_fast:.1f}x today's speed)"
            if t_fast
            else "never reaches it"
        )
        lines.append(
            f"  {name}: today's {last['epochs']}-epoch run ends at {fmt_acc(last['test_acc'])} "
            f"after {last['time_s']:.0f} s; the fast recipe {fast_text}"
        )
    return lines


def floors(runs: list[dict]) -> list[str]:
    """The floors of the book profile, met or not, with the measured numbers."""
    lines = []
    fast_cnn_runs = [r for r in runs if r["net"] == "fast_cnn" and r["setting"] == "fast"]
    if fast_cnn_runs:
        points = [p for r in fast_cnn_runs for p in r["points"]]
        t = time_to(points, FAST_CNN_TARGET)
        met = t is not None and t <= FAST_CNN_BUDGET_S
        best = max(acc for _, acc in points)
        lines.append(
            f"  [{'MET' if met else 'NOT MET'}] fast_cnn reaches {fmt_acc(FAST_CNN_TARGET)} test "
            f"accuracy within {FAST_CNN_BUDGET_S:.0f} s: "
            f"{'after ' if t is not None else ''}{fmt_time(t)} (best {fmt_acc(best)}, "
            f"{fmt_acc(best_within(points, FAST_CNN_BUDGET_S))} within the budget)"
        )
    ladder = [r for r in runs if r["net"] == PLATEAU_NET and r["setting"] == "fast"]
    if ladder:
        found = plateau(ladder)
        if found is None:
            ends = ", ".join(f"{r['epochs']} ep: {fmt_acc(r['test_acc'])}" for r in ladder)
            lines.append(
                f"  [NOT MET] {PLATEAU_NET} reaches its plateau within {PLATEAU_BUDGET_S:.0f} s: "
                f"no run B of the ladder has its 2x and 4x runs within {100 * PLATEAU_SPREAD:.1f} "
                f"points ({ends})"
            )
        else:
            b, b2, b4 = found["runs"]
            met = b["time_s"] <= PLATEAU_BUDGET_S
            lines.append(
                f"  [{'MET' if met else 'NOT MET'}] {PLATEAU_NET} reaches its plateau within "
                f"{PLATEAU_BUDGET_S:.0f} s: B = {b['epochs']} epochs, {b['time_s']:.0f} s: "
                f"{fmt_acc(b['test_acc'])}; 2B ({b2['time_s']:.0f} s): {fmt_acc(b2['test_acc'])}; "
                f"4B ({b4['time_s']:.0f} s): {fmt_acc(b4['test_acc'])}; spread "
                f"{100 * found['spread']:.2f} points < {100 * PLATEAU_SPREAD:.1f}; plateau "
                f"{fmt_acc(b4['test_acc'])}"
            )
    return lines


def parse_settings(text: str) -> dict:
    """``"flip=True,lr=0.1"`` -> ``{"flip": True, "lr": 0.1}`` (values as Python literals, else
    strings)."""
    import ast

    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nets",
        default=None,
        help=(
            f"comma-separated, from {', '.join(NETS)} (default: all; --quick: "
            f"{','.join(QUICK_NETS)})"
        ),
    )
    parser.add_argument("--settings", default="today,fast", help="today, fast or both")
    parser.add_argument(
        "--ladder",
        default=None,
        help="epochs of the fast recipe's runs, e.g. 2,4,8 (default: per net)",
    )
    parser.add_argument(
        "--set", default="", help="changes to the fast recipe, e.g. flip=True,lr=0.1"
    )
    parser.add_argument("--budgets", default="1,2,5,10", help="training-time budgets in minutes")
    parser.add_argument("--targets", default="0.85,0.9,0.92,0.93", help="test accuracies")
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, ... (default: the best available)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile'd training steps (slow to compile)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2,000 training images, runs of 1 and 2 epochs: a smoke check",
    )
    args = parser.parse_args()
    names = [n for n in (args.nets or ",".join(QUICK_NETS if args.quick else NETS)).split(",") if n]
    unknown = [n for n in names if n not in NETS]
    if unknown:
        raise SystemExit(f"--nets: unknown {', '.join(unknown)}; choose from {', '.join(NETS)}")
    settings = [s for s in args.settings.split(",") if s]
    if not set(settings) <= {"today", "fast"}:
        raise SystemExit(f"--settings={args.settings!r}: choose today, fast or both")
    fast = dataclasses.replace(get_recipe("fast"), **parse_settings(args.set))
    device = get_device(args.device)
    budgets_s = [60 * float(b) for b in args.budgets.split(",")]
    targets = [float(t) for t in args.targets.split(",")]

    started = time.perf_counter()
    print(
        f"load average at start: {os.getloadavg()}; {torch.get_num_threads()} threads; torch "
        f"{torch.__version__}; device {device}"
        f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}; "
        f"{cpu_name()}"
    )
    peaks = {
        "fp32": matmul_peak(torch.float32, device),
        "bf16": matmul_peak(torch.bfloat16, device),
    }
    print(f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    print(f"fast recipe: {fast}")
    arithmetic(names, fast.batch_size, device, args.compile, steps=2 if args.quick else 8)
    data = load(args.quick, device)
    print(f"data: {len(data[0])} training, {len(data[1])} validation, {len(data[2])} test images")
    runs = []
    for name in names:
        net = NETS[name]
        flops = forward_flops_per_image(net.build, data[0].image_shape)
        print(f"\n{name}: {net.title}; {flops / 1e6:.1f} MFLOP per image forward", flush=True)
        plan = []
        if "today" in settings and net.today is not None:
            plan += [("today", net.today, e) for e in ((1,) if args.quick else net.today_epochs)]
        if "fast" in settings:
            ladder = (
                (1, 2)
                if args.quick
                else tuple(int(e) for e in args.ladder.split(","))
                if args.ladder
                else net.fast_epochs
            )
            plan += [("fast", fast, e) for e in ladder]
        for setting, recipe, epochs in plan:
            run = train_run(name, setting, recipe, epochs, data, device, flops, peaks)
            runs.append(run)
            print(
                f"  {setting:<5} {epochs:>2} epochs: {run['time_s']:6.1f} s, test "
                f"{fmt_acc(run['test_acc'])}, {run['images_per_s']:.0f} images/s, load "
                f"{os.getloadavg()[0]:.2f}",
                flush=True,
            )
    report(runs, targets, budgets_s)
    print("\nspeed-up of the fast recipe over today's settings")
    print("\n".join(speedups(runs)) or "  (needs both settings)")
    print(
        f"\nfloors ({'smoke check: not meaningful' if args.quick else 'book profile'}; device "
        f"{device})"
    )
    print(
        "\n".join(floors(runs)) or "  (needs the fast_cnn and reference nets with the fast recipe)"
    )
    print(
        f"\nload average at end: {os.getloadavg()}; wall time {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
