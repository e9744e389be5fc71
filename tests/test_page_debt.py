"""What the chapters still owe their readers, counted so that it can only go down.

Two things a page should not have: visible code cells longer than 15 lines (bookkeeping that
belongs in the tested library, or behind ``hide-input``), and measured numbers typed by hand in
the prose (a decimal number in a markdown cell that is not a ``{glue}`` reference, maths or
code). ``page_debt.json`` holds each notebook's count as it stands; a notebook that exceeds it
fails, and one that has paid some of it off fails until the file records the lower count.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DEBT = json.loads((Path(__file__).with_name("page_debt.json")).read_text())
HIDDEN = {"hide-input", "hide-cell", "remove-input", "remove-cell"}
MAX_VISIBLE_LINES = 15
QUOTED = re.compile(r"\{glue(:\w+)?\}`[^`]*`|\$[^$]*\$|`[^`]*`")  # glue references, maths, code
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")


def long_visible_cells(notebook: dict) -> int:
    """Visible code cells of more than :data:`MAX_VISIBLE_LINES` lines."""
    return sum(
        len("".join(c["source"]).splitlines()) > MAX_VISIBLE_LINES
        for c in notebook["cells"]
        if c["cell_type"] == "code" and not HIDDEN & set(c["metadata"].get("tags", []))
    )


def typed_decimals(notebook: dict) -> int:
    """Decimal numbers in markdown cells outside glue references, maths and code."""
    return sum(
        len(DECIMAL.findall(QUOTED.sub("", "".join(c["source"]))))
        for c in notebook["cells"]
        if c["cell_type"] == "markdown"
    )


def test_the_counters_see_what_they_count():
    cell = {"cell_type": "code", "metadata": {}, "source": ["x = 1\n"] * 16}
    prose = {
        "cell_type": "markdown",
        "source": ["cv 0.35, {glue:text}`cv:.2f`, $0.5$, `1.5` and 2.0"],
    }
    notebook = {"cells": [cell, {**cell, "metadata": {"tags": ["hide-input"]}}, prose]}
    assert long_visible_cells(notebook) == 1 and typed_decimals(notebook) == 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_page_owes_no_more_than_it_did(path):
    notebook = json.loads(path.read_text())
    now = {
        "long visible code cells": long_visible_cells(notebook),
        "decimals typed in the prose": typed_decimals(notebook),
    }
    owed = DEBT[path.name]
    for what, count in now.items():
        assert count <= owed[what], (
            f"{path.name}: {count} {what}, more than the {owed[what]} it had"
        )
        assert count == owed[what], (
            f"{path.name}: {what} down to {count}: record it in page_debt.json"
        )
