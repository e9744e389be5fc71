import json
import math

import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from pilcro_lib.ledger import (
    LEDGER,
    MARKER,
    NOT_IN_BOOK,
    LedgerEntry,
    check_ledger_against_chapters,
    claims_ledger,
    ledger_table,
    read_verdicts,
    record_verdicts,
    section_anchor,
)

ENTRIES = (
    LedgerEntry(
        "PILCRO paper (abstract)",
        "flatter landscapes",
        "not stated",
        "tiny data",
        "06_x.ipynb",
        "Verdicts",
        "P-objective against plain",
        "flatter: curvature κ",
    ),
    LedgerEntry(
        "LRLC paper (abstract)",
        "beats conv",
        "small nets",
        "tiny data",
        "08_y.ipynb",
        "The verdicts",
        "LRLC claims",
        "aligned: LRLC beats conv",
        "points",
    ),
    LedgerEntry(
        "book hypothesis",
        "not yet run",
        "",
        "tiny data",
        "06_x.ipynb",
        "Verdicts",
        "a later family",
        "a claim",
    ),
)


def _table(verdict="supported", difference=-0.057):
    return pd.DataFrame(
        {
            "claim": ["flatter: curvature κ", "flatter: cv"],
            "n_treated": [5, 5],
            "n_control": [5, 5],
            "difference": [difference, math.nan],
            "ci_low": [-0.082, math.nan],
            "ci_high": [-0.032, math.nan],
            "t": [math.inf, math.nan],
            "detectable": [0.035, math.nan],
            "p_holm": [0.012, math.nan],
            "verdict": [verdict, "not measured"],
        }
    ).set_index("claim")


def _chapter(path, lines, heading="Verdicts", device="cpu"):
    """A stored chapter: a title, a provenance cell, a section heading and one cell of printed
    lines."""
    nb = new_notebook(
        cells=[
            new_markdown_cell("# A chapter"),
            new_code_cell(
                "",
                outputs=[
                    new_output(
                        "stream", name="stdout", text=f"profile    : book\ndevice     : {device}\n"
                    )
                ],
            ),
            new_markdown_cell(f"## {heading}\n\ntext"),
            new_code_cell("", outputs=[new_output("stream", name="stdout", text="".join(lines))]),
        ]
    )
    path.write_text(json.dumps(nb))
    return path


def _line(capsys, family, table, **kwargs):
    record_verdicts(family, table, **kwargs)
    return capsys.readouterr().out


def test_record_verdicts_prints_one_json_line_with_plain_numbers(capsys):
    record = record_verdicts("P-objective against plain", _table())
    out = capsys.readouterr().out
    assert out.startswith(MARKER + " ") and out.count("\n") == 1
    data = json.loads(out[len(MARKER) + 1 :])
    assert (
        data == record and data["family"] == "P-objective against plain" and data["setting"] is None
    )
    assert data["claims"][0] == {
        "claim": "flatter: curvature κ",
        "n_treated": 5.0,
        "n_control": 5.0,
        "difference": -0.057,
        "ci_low": -0.082,
        "ci_high": -0.032,
        "t": "Infinity",
        "detectable": 0.035,
        "p_holm": 0.012,
        "verdict": "supported",
    }
    assert (
        data["claims"][1]["difference"] is None and data["claims"][1]["verdict"] == "not measured"
    )


def test_read_verdicts_reads_back_each_family_as_recorded(tmp_path, capsys):
    lines = [
        _line(capsys, "P-objective against plain", _table("not resolved")),
        _line(capsys, "other", _table().iloc[1:], setting="tiny"),
        _line(capsys, "P-objective against plain", _table()),
    ]  # printed again: the last one counts
    families = read_verdicts(_chapter(tmp_path / "06_x.ipynb", ["epoch 1\n", *lines]))
    assert list(families) == ["other", "P-objective against plain"]
    table = families["P-objective against plain"]
    assert table.index.tolist() == ["flatter: curvature κ", "flatter: cv"]
    assert table.loc["flatter: curvature κ", "verdict"] == "supported"
    assert table.loc["flatter: curvature κ", "t"] == math.inf and math.isnan(
        table.loc["flatter: cv", "difference"]
    )
    pd.testing.assert_frame_equal(
        table[["difference", "ci_low", "ci_high", "detectable"]],
        _table()[["difference", "ci_low", "ci_high", "detectable"]].astype(float),
    )
    assert families["other"].attrs["setting"] == "tiny"


def test_record_verdicts_joins_chapter_8s_two_level_index(capsys):
    two_level = pd.DataFrame(
        {"diff.": [1.75], "CI low": [0.86], "CI high": [2.64], "verdict": ["supported"]},
        index=pd.MultiIndex.from_tuples([("aligned", "LRLC beats conv")]),
    )
    record = record_verdicts("LRLC claims", two_level)
    assert record["claims"] == [
        {
            "claim": "aligned: LRLC beats conv",
            "difference": 1.75,
            "ci_low": 0.86,
            "ci_high": 2.64,
            "verdict": "supported",
        }
    ]
    capsys.readouterr()


def _book(tmp_path, capsys, verdict="supported", difference=-0.057):
    lrlc = pd.DataFrame(
        {
            "difference": [1.75],
            "ci_low": [0.86],
            "ci_high": [2.64],
            "detectable": [1.22],
            "p_holm": [0.0139],
            "verdict": ["supported"],
        },
        index=["aligned: LRLC beats conv"],
    )
    _chapter(
        tmp_path / "06_x.ipynb",
        [_line(capsys, "P-objective against plain", _table(verdict, difference))],
    )
    _chapter(
        tmp_path / "08_y.ipynb",
        [_line(capsys, "LRLC claims", lrlc, setting="14 px images")],
        heading="The verdicts",
    )
    return tmp_path


def test_claims_ledger_rows_equal_the_chapters_rows(tmp_path, capsys):
    ledger = claims_ledger(_book(tmp_path, capsys), ENTRIES)
    assert ledger["claim"].tolist() == ["flatter landscapes", "beats conv", "not yet run"]
    first = ledger.iloc[0]
    chapter = read_verdicts(tmp_path / "06_x.ipynb")["P-objective against plain"].loc[
        "flatter: curvature κ"
    ]
    for column in ("difference", "ci_low", "ci_high", "detectable", "p_holm", "verdict"):
        assert first[column] == chapter[column]
    assert (
        first["our setting"] == "tiny data (profile book, device cpu)"
        and first["anchor"] == "verdicts"
    )
    assert (
        ledger.iloc[1]["our setting"] == "14 px images (profile book, device cpu)"
    )  # the recorded setting wins
    assert ledger.iloc[1]["anchor"] == "the-verdicts" and ledger.iloc[1]["difference"] == 1.75
    missing = ledger.iloc[2]
    assert missing["verdict"] == NOT_IN_BOOK and math.isnan(missing["difference"])
    check_ledger_against_chapters(ledger, tmp_path)  # agrees: no error


def test_editing_a_chapters_verdict_changes_the_ledger_and_the_check_names_the_row(
    tmp_path, capsys
):
    before = claims_ledger(_book(tmp_path, capsys), ENTRIES)
    _book(tmp_path, capsys, verdict="not resolved")  # the chapter re-executed with another verdict
    after = claims_ledger(tmp_path, ENTRIES)
    assert (before["verdict"][0], after["verdict"][0]) == ("supported", "not resolved")
    with pytest.raises(
        ValueError, match=r"ledger row 0 \('flatter landscapes'.*verdict is 'supported'"
    ):
        check_ledger_against_chapters(before, tmp_path)
    _book(tmp_path, capsys, difference=-0.05)  # the verdict back, a number moved
    with pytest.raises(ValueError, match="ledger row 0.*difference is -0.057"):
        check_ledger_against_chapters(before, tmp_path)
    current = claims_ledger(_book(tmp_path, capsys), ENTRIES)
    (tmp_path / "08_y.ipynb").unlink()  # a chapter that no longer records its family
    with pytest.raises(
        ValueError,
        match="ledger row 1 .*'beats conv'.*'supported' in the ledger but 'not in the book",
    ):
        check_ledger_against_chapters(current, tmp_path)


def test_check_ledger_names_a_section_heading_the_chapter_lacks(tmp_path, capsys):
    ledger = claims_ledger(_book(tmp_path, capsys), ENTRIES)
    ledger.loc[1, "section"] = "Verdicts, renamed"
    with pytest.raises(ValueError, match="ledger row 1 .*no section headed 'Verdicts, renamed'"):
        check_ledger_against_chapters(ledger, tmp_path)


def test_ledger_table_renders_links_colours_and_units(tmp_path, capsys):
    styled = ledger_table(claims_ledger(_book(tmp_path, capsys), ENTRIES))
    assert '<a href="08_y.html#the-verdicts">08_y: The verdicts</a>' in styled.html
    assert "[-0.0820, -0.0320]" in styled.html and "[0.9, 2.6]" in styled.html  # value vs points
    assert "background-color: #1a7f37" in styled.html and NOT_IN_BOOK in styled.html
    assert styled.html == ledger_table(claims_ledger(tmp_path, ENTRIES)).html
    assert "<a" not in repr(styled) and "08_y: The verdicts" in repr(styled)


def test_section_anchor_follows_docutils():
    nodes = pytest.importorskip("docutils.nodes")
    for heading in (
        "H1: does the prediction survive a one-pixel shift?",
        "Is a cheap setting enough?",
        "Verdicts",
        "Flatter?",
        "1 Intro: é",
    ):
        assert section_anchor(heading) == nodes.make_id(heading)


def test_the_ledger_names_real_chapters_and_sections():
    """Every entry points at a chapter and section heading that exist; the numbers come later."""
    from pathlib import Path

    from pilcro_lib.ledger import _headings

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    for entry in LEDGER:
        notebook = json.loads((notebooks / entry.chapter).read_text())
        assert entry.section in _headings(notebook), entry
    assert len({(e.family, e.endpoint) for e in LEDGER}) == len(LEDGER)


def test_record_verdicts_refuses_bad_input():
    with pytest.raises(TypeError, match="family must be"):
        record_verdicts(3, _table())
    with pytest.raises(ValueError, match="family must be a non-empty"):
        record_verdicts(" ", _table())
    with pytest.raises(ValueError, match="lacks the verdict columns"):
        record_verdicts("f", _table().drop(columns="verdict"))
    with pytest.raises(TypeError, match=r"table\['flatter: curvature κ', 'extra'\]"):
        record_verdicts("f", _table().assign(extra=[[1], [2]]))


def test_forest_groups_split_claims_by_heading_unit_and_scale():
    import pandas as pd

    from pilcro_lib.ledger import forest_groups

    rows = {
        "flatter: curvature κ": (-0.05, -0.08, -0.02),
        "flatter: cv": (0.0, -0.02, 0.02),
        "flatter: max / min": (-1.5, -3.0, -0.1),
        "faster: steps to 95% of target": (100, -300, 500),
        "more accurate: test accuracy": (0.001, -0.003, 0.005),
    }
    table = pd.DataFrame(
        [
            {"claim": c, "difference": d, "ci_low": lo, "ci_high": hi, "verdict": "not resolved"}
            for c, (d, lo, hi) in rows.items()
        ]
    ).set_index("claim")
    groups, axis = forest_groups(table)
    assert groups == {
        "flatter": ["flatter: curvature κ", "flatter: cv"],
        "flatter: max / min": ["flatter: max / min"],
        "faster": ["faster: steps to 95% of target"],
        "more accurate": ["more accurate: test accuracy"],
    }
    assert axis == {
        "flatter": "",
        "flatter: max / min": "",
        "faster": "steps",
        "more accurate": "fraction",
    }
    plain = table.rename(index=lambda c: c.split(": ")[1])  # claims without headings: by unit only
    assert list(forest_groups(plain)[0]) == ["value", "max / min", "steps", "fraction"]


def test_show_verdicts_draws_shows_and_records(capsys, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from pilcro_lib import ledger

    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    table = pd.DataFrame(
        [
            {
                "claim": "flatter: cv",
                "difference": -0.1,
                "ci_low": -0.2,
                "ci_high": 0.0,
                "detectable": 0.1,
                "p_holm": 0.04,
                "verdict": "supported",
            }
        ]
    ).set_index("claim")
    ledger.show_verdicts("toy family", table, caption="Table 1")
    assert "Table 1" in shown[0].html and "supported" in shown[0].html
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith(ledger.MARKER)]
    assert '"family": "toy family"' in line
    drawn = []
    monkeypatch.setattr("pilcro_lib.plotting.forest_plot", lambda *a, **k: drawn.append(k))
    ledger.show_verdicts("toy family", table, margin=0.05)
    assert drawn[0]["margin"] == 0.05


def test_ledger_forest_and_summary_follow_the_ledger():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from pilcro_lib import ledger as L

    rows = [
        dict(
            source="paper",
            claim="A is flatter",
            unit="value",
            difference=-0.1,
            ci_low=-0.2,
            ci_high=0.0,
            detectable=0.05,
            p_holm=0.01,
            verdict="supported",
        ),
        dict(
            source="paper",
            claim="A is faster",
            unit="steps",
            difference=10.0,
            ci_low=-50.0,
            ci_high=70.0,
            detectable=80.0,
            p_holm=0.5,
            verdict="not resolved",
        ),
        dict(
            source="book",
            claim="B",
            unit="value",
            difference=float("nan"),
            ci_low=float("nan"),
            ci_high=float("nan"),
            detectable=float("nan"),
            p_holm=float("nan"),
            verdict=L.NOT_IN_BOOK,
        ),
    ]
    ledger = pd.DataFrame(rows)
    figure = L.ledger_forest(ledger)
    titles = [ax.get_title(loc="left") for ax in figure.axes]
    assert any("paper, value" in t for t in titles) and any("paper, steps" in t for t in titles)
    assert not any("book" in t for t in titles)  # rows not in the book are left out
    assert L.ledger_summary(ledger) == (
        "<ul><li><b>paper</b>, 2 claims. <b>supported</b>: A is flatter. "
        "<b>not resolved</b>: A is faster.</li>"
        f"<li><b>book</b>, 1 claim. <b>{L.NOT_IN_BOOK}</b>: B.</li></ul>"
    )
