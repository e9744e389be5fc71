"""A tiny notebook that asks for runs through cached_run, for the tests of planning and
executors."""

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pilcro_lib.runs.records import read_record_text

PARAMETERS = """import os

profile = os.environ.get("PILCRO_PROFILE", "book")
seeds = 3      # runs of the first loop
pause = 0.0    # seconds each run sleeps
choose = False # then one more run, chosen on the first runs' scores (a second stage)
"""

RUNS = """import time

import torch

from pilcro_lib.runs.records import cached_run


def run(run_dir, *, seed, scale, pause):
    time.sleep(pause)
    torch.manual_seed(seed)
    w = torch.randn(8, 8) * scale
    return {"score": float(w.sum()), "norm": float(w.norm())}


records = [cached_run(run, name="tiny", seed=s, scale=1.0, pause=pause) for s in range(seeds)]
# read after the loop: every run of it is planned at once
scores = [r.metrics["score"] for r in records]
print("reused", sum(r.reused for r in records), "of", len(records))
"""

CHOOSE = """if choose:
    best = max(range(seeds), key=lambda s: scores[s])
    final = cached_run(run, name="tiny", seed=best, scale=2.0, pause=pause)
    print("final run reused:", final.reused, final.metrics["score"])
"""


def write_notebook(path: Path) -> Path:
    """Write the tiny notebook to ``path`` and return it."""
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Tiny runs"),
            new_code_cell(PARAMETERS),
            new_code_cell(RUNS),
            new_code_cell(CHOOSE),
        ]
    )
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def records_of(store: Path) -> dict[str, dict]:
    """Every record in ``store``, by file name, without the fields that differ between two
    computations of one run: when, how long, and the commit (the checkout may move between the
    two)."""
    found = {}
    for path in sorted(Path(store).glob("*/*.json.gz")):
        record = json.loads(read_record_text(path))
        for varying in ("wall_time_s", "finished_utc", "commit", "dirty"):
            record["provenance"].pop(varying)
        found[f"{path.parent.name}/{path.name}"] = record
    return found
