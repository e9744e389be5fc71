"""What the chapters still owe their readers, counted so that it can only go down.

Three things a page should not have: visible code cells longer than 15 lines (bookkeeping that
belongs in the tested library, or behind ``hide-input``), measured numbers typed by hand in
the prose (a decimal number in a markdown cell that is not a ``{glue}`` reference, maths or
code), and figures drawn wider than the text column can show at 80% of their size (a PNG over
:data:`MAX_FIGURE_PX` pixels wide, at the inline backend's 100 dpi, outside a cell tagged
``full-width``; glued figures count too, as the text places them in the column).
``page_debt.json`` holds each notebook's count as it stands; a notebook that exceeds it fails,
and one that has paid some of it off fails until the file records the lower count.
"""

import base64
import json
import re
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))  # not a notebook being executed
DEBT = json.loads((Path(__file__).with_name("page_debt.json")).read_text())
HIDDEN = {"hide-input", "hide-cell", "remove-input", "remove-cell"}
MAX_VISIBLE_LINES = 15
COLUMN_PX = 676  # the text column at a 1,280-px window (measured)
MAX_FIGURE_PX = int(COLUMN_PX / 0.8)  # a 100-dpi figure wider is shown below 80% of its size
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


def png_width(data: str) -> int:
    """The pixel width of a base64-encoded PNG (from its IHDR chunk)."""
    header = base64.b64decode(data[:44])
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">I", header[16:20])[0]


def wide_figures(notebook: dict) -> int:
    """PNG outputs wider than :data:`MAX_FIGURE_PX` outside ``full-width`` cells."""
    return sum(
        png_width(data) > MAX_FIGURE_PX
        for c in notebook["cells"]
        if c["cell_type"] == "code" and "full-width" not in c["metadata"].get("tags", [])
        for output in c.get("outputs", [])
        for mime, data in output.get("data", {}).items()
        if mime.endswith("image/png")
    )


def test_the_counters_see_what_they_count():
    cell = {"cell_type": "code", "metadata": {}, "source": ["x = 1\n"] * 16}
    prose = {
        "cell_type": "markdown",
        "source": ["cv 0.35, {glue:text}`cv:.2f`, $0.5$, `1.5` and 2.0"],
    }
    notebook = {"cells": [cell, {**cell, "metadata": {"tags": ["hide-input"]}}, prose]}
    assert long_visible_cells(notebook) == 1 and typed_decimals(notebook) == 2


def _png(width: int) -> str:
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", width, 10)
    return base64.b64encode(header + bytes(20)).decode()


def test_wide_figures_are_counted_outside_full_width_cells():
    def cell(width, tags=(), mime="image/png"):
        output = {"output_type": "display_data", "data": {mime: _png(width)}}
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "outputs": [output]}

    glued = "application/papermill.record/image/png"
    cells = [cell(MAX_FIGURE_PX), cell(MAX_FIGURE_PX + 1), cell(2000, ["full-width"])]
    assert png_width(_png(1234)) == 1234
    assert wide_figures({"cells": [*cells, cell(900, mime=glued)]}) == 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_page_owes_no_more_than_it_did(path):
    notebook = json.loads(path.read_text())
    now = {
        "long visible code cells": long_visible_cells(notebook),
        "decimals typed in the prose": typed_decimals(notebook),
        "figures wider than the column": wide_figures(notebook),
    }
    owed = DEBT[path.name]
    for what, count in now.items():
        assert count <= owed[what], (
            f"{path.name}: {count} {what}, more than the {owed[what]} it had"
        )
        assert count == owed[what], (
            f"{path.name}: {what} down to {count}: record it in page_debt.json"
        )
