"""The book's notebooks follow the conventions: header, parameters, Colab install, stored real
outputs, figures with alt text, a table of contents that matches."""

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))  # not a notebook being executed
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]
BRANCH = CONFIG["repository"]["branch"]


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _source(cell):
    return "".join(cell["source"])


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_header_parameters_and_provenance(path):
    cells = _cells(path)
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# ")
    badge = f"https://colab.research.google.com/github/{REPO_URL.removeprefix('https://github.com/')}/blob/{BRANCH}/notebooks/{path.name}"
    assert badge in _source(cells[1]), (
        "the Colab badge must point at this notebook on the book's branch"
    )
    install = _source(cells[2])
    assert '"google.colab" in sys.modules' in install and f"git+{REPO_URL}@" in install
    code = [c for c in cells if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one code cell must be tagged 'parameters'"
    assert 'os.environ.get("PILCRO_PROFILE"' in _source(tagged[0])
    assert any("print_provenance(" in _source(c) for c in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_stored_real_and_widget_free(path):
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert outputs, "the notebook is stored without outputs: run `make execute`"
    assert not [o for o in outputs if o["output_type"] == "error"]
    mimes = {m for o in outputs for m in o.get("data", {})}
    assert not [m for m in mimes if "widget" in m]
    provenance = next(c for c in code if "print_provenance(" in _source(c))
    text = "".join("".join(o.get("text", "")) for o in provenance["outputs"])
    assert "profile" in text and "book" in text, "stored outputs must come from the book profile"


def test_toc_lists_existing_pages_and_every_notebook():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    for f in files:
        assert list(ROOT.glob(f + ".*")), f"_toc.yml lists {f}, which does not exist"
    listed = {f for f in files if f.startswith("notebooks/")}
    assert listed == {f"notebooks/{p.stem}" for p in NOTEBOOKS}


def _images(cell):
    """The PNG images among a code cell's stored outputs, decoded."""
    return [
        Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"])))
        for o in cell.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_have_alt_text_and_an_opaque_background(path):
    """Alt text for screen readers (MyST-NB's ``mystnb.image.alt``); no transparent pixels, so a
    figure's dark labels stay readable on the theme's dark background."""
    for cell in _cells(path):
        images = _images(cell) if cell["cell_type"] == "code" else []
        if not images:
            continue
        alt = cell["metadata"].get("mystnb", {}).get("image", {}).get("alt", "")
        assert len(alt) >= 40, (
            f"cell {cell['id']}: a figure needs alt text (metadata mystnb.image.alt)"
        )
        for image in images:
            rgba = np.asarray(image.convert("RGBA"))
            assert rgba[..., 3].min() == 255, (
                f"cell {cell['id']}: a figure with a transparent background"
            )


CHAPTERS = [p for p in NOTEBOOKS if p.name != "99_results.ipynb"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_header_names_what_the_chapter_builds_on_and_its_run_times(path):
    header = _source(_cells(path)[1])
    earlier = {p.name for p in NOTEBOOKS if p.name < path.name}
    assert "**Builds on:**" in header
    if earlier:
        links = set(re.findall(r"\]\((\d\d_[a-z_]+\.ipynb)\)", header.split("**Builds on:**")[1]))
        assert links and links <= earlier, f"'Builds on' must link earlier chapters, got {links}"
    run_time = header.split("**Run time**")[1]
    for profile in ("smoke", "book", "paper"):
        assert f"{profile} profile" in run_time
    assert "GPU" in run_time


# Every page is formatted for reading: ruff format --line-length 88, HTML tables, set-up cells
# collapsed
FORMATTED = [p.name for p in NOTEBOOKS]
MAX_CODE_LINE = 88


@pytest.mark.parametrize("name", FORMATTED)
def test_code_lines_fit_the_page(name):
    """No code line longer than 88 characters, so no code cell scrolls sideways in the book."""
    long = [
        (cell["id"], line)
        for cell in _cells(ROOT / "notebooks" / name)
        if cell["cell_type"] == "code"
        for line in _source(cell).splitlines()
        if len(line) > MAX_CODE_LINE
    ]
    assert not long, f"{len(long)} code lines over {MAX_CODE_LINE} characters, e.g. {long[:3]}"


@pytest.mark.parametrize("name", FORMATTED)
def test_set_up_cells_are_collapsed_and_tables_are_html(name):
    """The page opens with its idea: install, parameters and imports are collapsed; tables are
    displayed as HTML tables, not printed as text."""
    cells = _cells(ROOT / "notebooks" / name)
    code = [c for c in cells if c["cell_type"] == "code"]
    set_up = [code[0]] + [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    set_up += [c for c in code if "print_provenance(" in _source(c)]
    for cell in set_up:
        tags = set(cell["metadata"].get("tags", []))
        assert tags & {"hide-cell", "hide-input", "remove-cell", "remove-input"}, (
            f"cell {cell['id']} is not collapsed"
        )
    printed = [c["id"] for c in code if ".to_string(" in _source(c)]
    assert not printed, f"tables printed as text in cells {printed}: display the DataFrame"


def _chapters():
    """Chapter number -> its pages in order (``06``, ``06b``, ... are one chapter)."""
    chapters: dict[str, list[Path]] = {}
    for path in NOTEBOOKS:
        number = path.name[:2]
        if number != "99":  # the results page is not a chapter
            chapters.setdefault(number, []).append(path)
    return chapters


def _exercise_cells(path):
    """The cells from a page's "## Exercises" heading to its next level-2 heading."""
    cells, inside = [], False
    for cell in _cells(path):
        text = _source(cell)
        if cell["cell_type"] == "markdown" and re.search(r"^## ", text, re.M):
            heading = re.findall(r"^## (.*)$", text, re.M)
            if "Exercises" in heading:
                inside = True
                cells.append(cell)
                continue
            if inside:
                break
        if inside:
            cells.append(cell)
    return cells


@pytest.mark.parametrize("number", sorted(_chapters()))
def test_every_chapter_teaches_with_takeaways_exercises_and_notation(number):
    """Each chapter opens with a key-takeaways box, links the notation page on every page, and
    ends its pages with three to six exercises, each solved in a dropdown, at least one solution
    a collapsed cell that the smoke tests run."""
    pages = _chapters()[number]
    assert "```{admonition} Key takeaways" in _source(_cells(pages[0])[0])
    for path in pages:
        markdown = " ".join(_source(c) for c in _cells(path) if c["cell_type"] == "markdown")
        assert "../book/notation.md" in markdown, f"{path.name} does not link the notation page"
    section = [c for path in pages for c in _exercise_cells(path)]
    text = "\n".join(_source(c) for c in section if c["cell_type"] == "markdown")
    exercises = re.findall(r"^\s*\d+\. \*\*", text, re.M)
    assert 3 <= len(exercises) <= 6, f"chapter {number} has {len(exercises)} exercises"
    assert text.count("{dropdown} Solution") >= len(exercises)
    solutions = [
        c
        for c in section
        if c["cell_type"] == "code" and "hide-cell" in c["metadata"].get("tags", [])
    ]
    assert solutions, f"chapter {number} has no runnable solution"
