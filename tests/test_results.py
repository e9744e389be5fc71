import json
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from pilcro_lib.ledger import COMPARED, NOT_IN_BOOK, claims_ledger, ledger_table
from pilcro_lib.results import (
    CHAPTERS,
    MARKER,
    chapter_headlines,
    format_value,
    headlines_html,
    read_metrics,
    record_metrics,
)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
RESULTS_PAGE = NOTEBOOKS / "99_results.ipynb"


def _notebook(path, title, *stream_texts):
    """A stored notebook with a title cell and one code cell per stream text."""
    cells = [{"cell_type": "markdown", "metadata": {}, "source": [f"# {title}\n", "\n", "text"]}]
    cells += [
        {
            "cell_type": "code",
            "metadata": {},
            "source": [],
            "execution_count": 1,
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": text.splitlines(keepends=True)}
            ],
        }
        for text in stream_texts
    ]
    path.write_text(
        json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    return path


def test_chapter_headlines_reads_records_in_order_with_profile_and_commit(tmp_path):
    a = _notebook(
        tmp_path / "01_a.ipynb",
        "Chapter A",
        "git_commit : abc123\nprofile    : book\n",
        'PILCRO_METRICS {"profile": "book", "z first": 0.5, "a second": "supported"}\n',
    )
    b = _notebook(tmp_path / "02_b.ipynb", "Chapter B", "no records here\n")
    c = _notebook(
        tmp_path / "03_c.ipynb",
        "Chapter C",
        'PILCRO_METRICS {"x|y": 1234.5678, "ok": true, "n": 3, "none": null}\n',
    )
    frame = chapter_headlines([a, b, c])
    assert frame[["chapter", "quantity"]].values.tolist() == [
        ["01_a.ipynb", "z first"],
        ["01_a.ipynb", "a second"],
        ["03_c.ipynb", "x|y"],
        ["03_c.ipynb", "ok"],
        ["03_c.ipynb", "n"],
        ["03_c.ipynb", "none"],
    ]
    assert (
        frame["title"].iloc[0] == "Chapter A"
        and frame["commit"].iloc[0] == "abc123"
        and frame["profile"].iloc[0] == "book"
    )
    assert frame[["profile", "commit"]].iloc[-1].isna().all()
    html = headlines_html(frame)
    assert html.count("<details>") == 2 and html.count("<tr>") == 2 + 6
    assert html.startswith(
        '<details><summary><a href="01_a.html">Chapter A</a>: 2 numbers</summary><table>'
    )
    assert "<tr><td>x|y</td><td>1,235</td></tr>" in html
    assert "<tr><td>none</td><td>–</td></tr></tbody></table></details>" in html


def test_format_value():
    assert [
        format_value(v)
        for v in (0.94855, 1.19e-7, 68.125, 3410.4, -12345.0, False, 7, 12000, "none", None)
    ] == ["0.949", "1.19e-07", "68.1", "3,410", "-12,345", "no", "7", "12,000", "none", "–"]


def test_the_stored_results_page_matches_the_chapters_stored_records():
    """The results page is built from the chapters' records: its stored table is not stale."""
    page = json.loads(RESULTS_PAGE.read_text())
    chapters = [p for p in sorted(NOTEBOOKS.glob(CHAPTERS)) if p != RESULTS_PAGE]
    headlines = chapter_headlines(chapters)
    html = [
        "".join(o["data"]["text/html"])
        for c in page["cells"]
        for o in c.get("outputs", [])
        if "text/html" in o.get("data", {})
    ]
    assert headlines_html(headlines) in html, "re-run `make execute NB=notebooks/99_results.ipynb`"
    ledger = claims_ledger(NOTEBOOKS)
    assert any(ledger_table(ledger).html in h for h in html), (
        "the stored claims ledger differs from the chapters' verdicts"
    )
    assert (ledger["verdict"] != NOT_IN_BOOK).sum() >= 15, (
        "the chapters record their verdict tables"
    )
    assert set(headlines["chapter"]) == {p.name for p in chapters}, (
        "every chapter records its headline numbers"
    )
    assert set(headlines["profile"]) == {"book"}


def test_record_metrics_prints_one_marked_json_line_that_read_metrics_reads(capsys):
    np = pytest.importorskip("numpy")
    clean = record_metrics({"acc": np.float32(0.5), "n": 3, "name": "x", "none": None})
    line = capsys.readouterr().out
    assert line == f'{MARKER} {{"acc": 0.5, "n": 3, "name": "x", "none": null}}\n'
    assert clean == {"acc": 0.5, "n": 3, "name": "x", "none": None}
    nb = new_notebook(
        cells=[
            new_code_cell(
                "", outputs=[new_output("stream", name="stdout", text="epoch 1\n" + line)]
            ),
            new_code_cell(
                "",
                outputs=[new_output("stream", name="stdout", text=f'{MARKER} {{"acc": 0.75}}\n')],
            ),
        ]
    )
    assert read_metrics(nb) == {"acc": 0.75, "n": 3, "name": "x", "none": None}


@pytest.mark.parametrize(
    "metrics, error",
    [
        ([("a", 1)], "metrics must be a dict"),
        ({1: 2}, "non-empty string"),
        ({"a": [1, 2]}, r"metrics\['a'\]"),
    ],
)
def test_record_metrics_rejects_bad_input(metrics, error):
    with pytest.raises(TypeError, match=error):
        record_metrics(metrics)


# --- the one table style ------------------------------------------------------------------------


def _verdicts(changes=None):
    import pandas as pd

    table = pd.DataFrame(
        {
            "claim": [
                "flatter: curvature κ",
                "more accurate: test accuracy",
                "faster: wall time to 95% of target",
                "faster: steps to 95% of target",
                "not run",
            ],
            "n_treated": [5, 5, 5, 5, 0],
            "n_control": [5, 4, 5, 5, 0],
            "treated": [0.176021, 0.8982, 1234.5, 1500.0, float("nan")],
            "control": [0.232923, 0.89804, 1219.4, 1387.2, float("nan")],
            "difference": [-0.056902, 0.00016, 15.146, 112.8, float("nan")],
            "ci_low": [-0.081612, -0.0031, 6.562, -271.804, float("nan")],
            "ci_high": [-0.032191, 0.0034, 23.73, 497.404, float("nan")],
            "p": [0.0008, 0.9, 0.01, 0.5, float("nan")],
            "detectable": [0.035, 0.004, 11.661, 531.103, float("nan")],
            "p_holm": [0.01234, 1.0, 0.0923, 1.0, float("nan")],
            "verdict": [
                "supported",
                "not resolved",
                "contradicted",
                "not resolved",
                "not measured",
            ],
        }
    ).set_index("claim")
    for (claim, column), value in (changes or {}).items():
        table.loc[claim, column] = value
    return table


def test_verdict_table_shows_readable_headers_one_ci_column_and_digits_by_unit():
    from pilcro_lib.results import verdict_display

    shown = verdict_display(_verdicts())
    assert list(shown.columns) == [
        "claim",
        "n",
        "treated",
        "control",
        "difference",
        "95% CI",
        "smallest detectable",
        "Holm p",
        "verdict",
    ]
    rows = shown.set_index("claim")
    assert rows.loc["flatter: curvature κ"].tolist() == [
        "5",
        "0.176",
        "0.233",
        "-0.0569",
        "[-0.0816, -0.0322]",
        "0.0350",
        "0.012",
        "supported",
    ]
    assert rows.loc["more accurate: test accuracy"].tolist() == [  # accuracy in points, one decimal
        "5 / 4",
        "89.8",
        "89.8",
        "0.0",
        "[-0.3, 0.3]",
        "0.4",
        "1.0",
        "not resolved",
    ]
    assert (
        rows.loc["faster: wall time to 95% of target", "treated"] == "1,234"
    )  # whole seconds, separators
    assert rows.loc["faster: wall time to 95% of target", "95% CI"] == "[7, 24]"
    assert rows.loc["faster: steps to 95% of target", "95% CI"] == "[-272, 497]"
    assert rows.loc["not run"].tolist() == ["0", "–", "–", "–", "–", "–", "–", "not measured"]


def test_format_p_and_format_number():
    from pilcro_lib.results import format_number, format_p

    assert [format_p(p) for p in (0.012345, 1.0, 0.000381, 0.0923, 2e-7, float("nan"))] == [
        "0.012",
        "1.0",
        "0.00038",
        "0.092",
        "< 0.0001",
        "–",
    ]
    assert [format_number(v, "value") for v in (0.05, -1.547, 531.103, 0.0, -0.0001234)] == [
        "0.0500",
        "-1.55",
        "531",
        "0",
        "-0.000123",
    ]
    assert format_number(-0.0004, "accuracy") == "0.0" and format_number(1.75, "points") == "1.8"
    assert format_number(12345.6, "seconds") == "12,346" and format_number(True) == "yes"


def test_an_equivalence_family_shows_its_margin_and_its_90_percent_interval():
    from pilcro_lib.results import verdict_display
    from pilcro_lib.stats import equivalence, equivalence_verdicts

    same = equivalence([1.0, 1.01, 0.99, 1.0], [1.0, 1.02, 0.98, 1.01], margin=0.1)
    table = equivalence_verdicts({"as flat as: curvature κ": same})
    shown = verdict_display(table[["n_treated", "n_control", "margin", *COMPARED]])
    assert list(shown.columns) == [
        "claim",
        "margin",
        "n",
        "difference",
        "90% CI (TOST)",
        "smallest margin shown",
        "Holm p",
        "verdict",
    ]
    assert shown["margin"].tolist() == ["0.100"] and shown["verdict"].tolist() == ["supported"]


def test_verdict_table_html_is_deterministic_and_its_ids_follow_the_content():
    import re

    from pilcro_lib.results import VERDICT_COLOURS, verdict_table

    first, again = verdict_table(_verdicts()).to_html(), verdict_table(_verdicts()).to_html()
    assert first == again  # byte-identical when re-rendered
    other = verdict_table(
        _verdicts({("flatter: curvature κ", "verdict"): "not resolved"})
    ).to_html()
    ids = {re.search(r'<table id="(T_[0-9a-f]+)"', html).group(1) for html in (first, other)}
    assert len(ids) == 2
    assert "0x" not in repr(verdict_table(_verdicts()))  # no object address in the text form
    assert "<td" in first and "[-0.0816, -0.0322]" in first and "Holm p" in first
    for verdict, (_colour, background) in VERDICT_COLOURS.items():
        if verdict in set(_verdicts()["verdict"]):
            assert f"background-color: {background}" in first
    assert "background-color: #c62828" not in verdict_table(_verdicts().iloc[:2]).to_html()


def test_verdict_table_units_mapping_and_chapter_8_form():
    import pandas as pd

    from pilcro_lib.results import verdict_display

    two_level = pd.DataFrame(
        {
            "validation": [82.31],
            "chosen": [True],
            "diff.": [1.7523],
            "CI low": [0.86],
            "CI high": [2.64],
            "p Holm": [0.0139],
            "detect.": [1.22],
            "verdict": ["supported"],
        },
        index=pd.MultiIndex.from_tuples([("aligned", "LRLC beats conv")], names=["task", "claim"]),
    )
    shown = verdict_display(two_level, units="points")
    assert shown.iloc[0].tolist() == [
        "aligned: LRLC beats conv",
        "82.3",
        "yes",
        "1.8",
        "[0.9, 2.6]",
        "1.2",
        "0.014",
        "supported",
    ]
    mapped = verdict_display(_verdicts(), units={"flatter: curvature κ": "points"})
    assert mapped.iloc[0]["difference"] == "-0.1" and mapped.iloc[1]["difference"] == "0.0"
    with pytest.raises(ValueError, match="units='furlongs' is not allowed"):
        verdict_display(_verdicts(), units="furlongs")
    with pytest.raises(TypeError, match="table must be a pandas DataFrame"):
        verdict_display([1, 2])


def test_table_style_formats_columns_and_escapes_text():
    import pandas as pd

    from pilcro_lib.results import table_style

    styled = table_style(
        pd.DataFrame({"name": ["a<b"], "x": [0.12345]}), {"x": "{:.2f}"}, caption="T"
    )
    assert (
        "a&lt;b" in styled.html
        and ">0.12<" in styled.html
        and "<caption>T</caption>" in styled.html
    )
    assert repr(styled).splitlines() == ["T", "name    x", " a<b 0.12"]
    with pytest.raises(ValueError, match="name columns \\['y'\\]"):
        table_style(pd.DataFrame({"x": [1]}), {"y": "{}"})
