import json
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from pilcro_lib.results import (MARKER, chapter_headlines, format_value, headlines_markdown, read_metrics,
                                record_metrics)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
RESULTS_PAGE = NOTEBOOKS / "99_results.ipynb"


def _notebook(path, title, *stream_texts):
    """A stored notebook with a title cell and one code cell per stream text."""
    cells = [{"cell_type": "markdown", "metadata": {}, "source": [f"# {title}\n", "\n", "text"]}]
    cells += [{"cell_type": "code", "metadata": {}, "source": [], "execution_count": 1,
               "outputs": [{"output_type": "stream", "name": "stdout", "text": text.splitlines(keepends=True)}]}
              for text in stream_texts]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_chapter_headlines_reads_records_in_order_with_profile_and_commit(tmp_path):
    a = _notebook(tmp_path / "01_a.ipynb", "Chapter A", "git_commit : abc123\nprofile    : book\n",
                  'PILCRO_METRICS {"profile": "book", "z first": 0.5, "a second": "supported"}\n')
    b = _notebook(tmp_path / "02_b.ipynb", "Chapter B", "no records here\n")
    c = _notebook(tmp_path / "03_c.ipynb", "Chapter C", 'PILCRO_METRICS {"x|y": 1234.5678, "ok": true, "n": 3, "none": null}\n')
    frame = chapter_headlines([a, b, c])
    assert frame[["chapter", "quantity"]].values.tolist() == [
        ["01_a.ipynb", "z first"], ["01_a.ipynb", "a second"],
        ["03_c.ipynb", "x|y"], ["03_c.ipynb", "ok"], ["03_c.ipynb", "n"], ["03_c.ipynb", "none"]]
    assert frame["title"].iloc[0] == "Chapter A" and frame["commit"].iloc[0] == "abc123" and frame["profile"].iloc[0] == "book"
    assert frame[["profile", "commit"]].iloc[-1].isna().all()
    assert headlines_markdown(frame).splitlines() == [
        "| Chapter | Quantity | Value |", "| --- | --- | --- |",
        "| [Chapter A](01_a.ipynb) | z first | 0.5 |", "|  | a second | supported |",
        "| [Chapter C](03_c.ipynb) | x\\|y | 1.23e+03 |", "|  | ok | yes |", "|  | n | 3 |", "|  | none | – |"]


def test_format_value():
    assert [format_value(v) for v in (0.94855, 1.19e-7, 68.125, False, 7, "none", None)] == [
        "0.949", "1.19e-07", "68.1", "no", "7", "none", "–"]


def test_the_stored_results_page_matches_the_chapters_stored_records():
    """The results page is built from the chapters' records: its stored table is not stale."""
    page = json.loads(RESULTS_PAGE.read_text())
    stored = ["".join(o["data"]["text/markdown"]) for c in page["cells"] for o in c.get("outputs", [])
              if "text/markdown" in o.get("data", {})]
    chapters = [p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) if p != RESULTS_PAGE]
    headlines = chapter_headlines(chapters)
    assert stored == [headlines_markdown(headlines)], "re-run `make execute NB=notebooks/99_results.ipynb`"
    assert set(headlines["chapter"]) == {p.name for p in chapters}, "every chapter records its headline numbers"
    assert set(headlines["profile"]) == {"book"}


def test_record_metrics_prints_one_marked_json_line_that_read_metrics_reads(capsys):
    np = pytest.importorskip("numpy")
    clean = record_metrics({"acc": np.float32(0.5), "n": 3, "name": "x", "none": None})
    line = capsys.readouterr().out
    assert line == f'{MARKER} {{"acc": 0.5, "n": 3, "name": "x", "none": null}}\n'
    assert clean == {"acc": 0.5, "n": 3, "name": "x", "none": None}
    nb = new_notebook(cells=[
        new_code_cell("", outputs=[new_output("stream", name="stdout", text="epoch 1\n" + line)]),
        new_code_cell("", outputs=[new_output("stream", name="stdout", text=f'{MARKER} {{"acc": 0.75}}\n')]),
    ])
    assert read_metrics(nb) == {"acc": 0.75, "n": 3, "name": "x", "none": None}


@pytest.mark.parametrize("metrics, error", [
    ([("a", 1)], "metrics must be a dict"), ({1: 2}, "non-empty string"), ({"a": [1, 2]}, r"metrics\['a'\]"),
])
def test_record_metrics_rejects_bad_input(metrics, error):
    with pytest.raises(TypeError, match=error):
        record_metrics(metrics)
