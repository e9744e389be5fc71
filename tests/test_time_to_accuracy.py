"""The verdicts of benchmarks/time_to_accuracy.py: time to a target, best within a budget, the
plateau, the floors."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_accuracy.py"
SPEC = importlib.util.spec_from_file_location("time_to_accuracy", SCRIPT)
bench = sys.modules[SPEC.name] = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)


def _run(net, epochs, points, setting="fast"):
    return {
        "net": net,
        "setting": setting,
        "epochs": epochs,
        "time_s": points[-1][0],
        "test_acc": points[-1][1],
        "points": points,
    }


def test_time_to_and_best_within():
    points = [(10.0, 0.80), (20.0, 0.91), (40.0, 0.90), (80.0, 0.93)]
    assert bench.time_to(points, 0.905) == 20.0 and bench.time_to(points, 0.95) is None
    assert bench.best_within(points, 50.0) == 0.91 and bench.best_within(points, 5.0) is None


def test_plateau_needs_the_2x_and_4x_runs_within_half_a_point():
    ends = {1: 0.80, 2: 0.86, 4: 0.883, 8: 0.886, 16: 0.8875}
    runs = [_run("reference", e, [(30.0 * e, acc)]) for e, acc in ends.items()]
    found = bench.plateau(runs)
    assert [r["epochs"] for r in found["runs"]] == [4, 8, 16] and found["spread"] == pytest.approx(
        0.0045
    )
    assert bench.plateau(runs[:4]) is None  # 4, 8 and 16 epochs are needed together


def test_floors_say_met_or_not_with_the_numbers():
    runs = [
        _run("fast_cnn", 8, [(100.0, 0.90), (200.0, 0.921)]),
        _run("fast_cnn", 16, [(400.0, 0.93)]),
    ]
    runs += [
        _run("reference", e, [(150.0 * e, acc)])
        for e, acc in {2: 0.881, 4: 0.884, 8: 0.885}.items()
    ]
    lines = bench.floors(runs)
    assert lines[0].startswith("  [MET] fast_cnn") and "after 200 s" in lines[0]
    assert lines[1].startswith("  [MET] reference") and "B = 2 epochs, 300 s" in lines[1]
    slow = [dict(r, time_s=4 * r["time_s"]) if r["net"] == "reference" else r for r in runs]
    assert bench.floors(slow)[1].startswith("  [NOT MET] reference")


def test_parse_settings():
    assert bench.parse_settings("flip=True,lr=0.1,autocast=cuda") == {
        "flip": True,
        "lr": 0.1,
        "autocast": "cuda",
    }
