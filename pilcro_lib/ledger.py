"""The claims ledger: every claim the book tests, its verdict read from the chapter that decides it.

A chapter prints each verdict table with :func:`record_verdicts` (one ``PILCRO_VERDICTS {json}``
line per table, a *family*); :func:`read_verdicts` reads them back from the chapter's stored
outputs. :data:`LEDGER` declares, once, each claim of the two papers and each hypothesis of the
book, with the chapter, section, family and claim row (the primary endpoint) that decide it;
:func:`claims_ledger` fills in the numbers and verdicts from the chapters, :func:`ledger_table`
renders them, and :func:`check_ledger_against_chapters` fails when a ledger disagrees with them.

Claims are stated as the design notes allow: the PILCRO paper (Moens, Yu & Salimi-Khorshidi
2020) is known to us by its abstract only, the LRLC paper (Elsayed, Ramachandran, Shlens &
Kornblith 2020) by its abstract and its authors' code; no number of either paper is quoted.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilcro_lib.results import (
    VERDICT_COLOURS,
    as_verdict_frame,
    format_ci,
    format_number,
    stream_lines,
    table_style,
    unit_of,
    verdict_table,
)
from pilcro_lib.utils import check_type

MARKER = "PILCRO_VERDICTS"
NOT_IN_BOOK = "not in the book yet"
PILCRO = "PILCRO paper (abstract)"
LRLC = "LRLC paper (abstract)"
LRLC_NOTES = "LRLC paper (design notes' expectation)"
BOOK = "book hypothesis"
PILCRO_SETTING = "not stated in the abstract, the only part of the paper we have"
LRLC_SETTING = (
    "small nets (three 3x3 layers of 64 filters, valid padding, BatchNorm, ReLU) "
    "on MNIST, CIFAR-10 and CelebA"
)
LEDGER_COLUMNS = (
    "source",
    "claim",
    "paper's setting",
    "our setting",
    "chapter",
    "section",
    "anchor",
    "family",
    "primary endpoint",
    "unit",
    "difference",
    "ci_low",
    "ci_high",
    "detectable",
    "p_holm",
    "verdict",
)
COMPARED = ("difference", "ci_low", "ci_high", "detectable", "p_holm", "verdict")


@dataclass(frozen=True)
class LedgerEntry:
    """One claim of the ledger and where the book decides it.

    source: whose claim (:data:`PILCRO`, :data:`LRLC`, :data:`LRLC_NOTES` or :data:`BOOK`);
    claim: the claim in words; paper_setting: the paper's setting as the design notes state it;
    our_setting: what the chapter's parameters fix (its stored outputs add profile and device);
    chapter: the notebook's file name; section: the heading of the section that shows the verdict
    table; family: the name the chapter gives :func:`record_verdicts`; endpoint: the claim row
    that decides it; unit: how its numbers read (:data:`pilcro_lib.results.UNIT_KINDS`).
    """

    source: str
    claim: str
    paper_setting: str
    our_setting: str
    chapter: str
    section: str
    family: str
    endpoint: str
    unit: str = "value"


CH5 = "05_p_objective.ipynb"
CH6 = "06_p_objective_experiments.ipynb"
CH6B = "06b_p_objective_speed_accuracy_robustness.ipynb"
CH6C = "06c_p_objective_measure_ablation.ipynb"
CH6D = "06d_p_objective_position_and_resnet.ipynb"
CH8 = "08_lrlc_experiments.ipynb"
CH9 = "09_where_position_hides.ipynb"
CH9B = "09b_absolute_position.ipynb"
CH9C = "09c_stride_asymmetry.ipynb"
CH9D = "09d_trained_landscapes.ipynb"
CH5_SETTING = (
    "Fashion-MNIST, 4,000 train / 1,000 validation / 2,000 test images; fast CNN, width 16; "
    "32 epochs, batches of 64; λ = 0.3; 5 seeds an arm"
)
CH6_SETTING = (
    "Fashion-MNIST, 12,000 train / 2,000 validation images; fast CNN, width 16; 16 epochs, "
    "batches of 64; λ chosen on validation; 5 seeds an arm"
)
CH8_SETTING = (
    "Fashion-MNIST pooled to 14x14 px (aligned, real and translated tasks); the reference "
    "3-layer net, width 16, first layer replaced; 24 and 48 epochs, batches of 64; 5 seeds an arm"
)
CH9_SETTING = (
    "Fashion-MNIST, 12,000 train / 2,000 validation images; the fast CNN (position_net), width 16; "
    "16 epochs, batches of 64; 5 seeds an arm"
)
CH6_PLAIN = "P-objective against plain"

LEDGER: tuple[LedgerEntry, ...] = (
    LedgerEntry(
        PILCRO,
        "The P-objective gives flatter, low-curvature importance landscapes",
        PILCRO_SETTING,
        CH6_SETTING,
        CH6,
        "Flatter: the verdicts",
        CH6_PLAIN,
        "flatter: curvature κ",
    ),
    LedgerEntry(
        PILCRO,
        "Networks trained with the P-objective train faster",
        PILCRO_SETTING,
        CH6_SETTING,
        CH6B,
        "Faster, more accurate, more robust: the verdicts",
        CH6_PLAIN,
        "faster: steps to 95% of target",
        "steps",
    ),
    LedgerEntry(
        PILCRO,
        "Networks trained with the P-objective are more accurate",
        PILCRO_SETTING,
        CH6_SETTING,
        CH6B,
        "Faster, more accurate, more robust: the verdicts",
        CH6_PLAIN,
        "more accurate: test accuracy",
        "accuracy",
    ),
    LedgerEntry(
        PILCRO,
        "Networks trained with the P-objective are more robust to test-time noise",
        PILCRO_SETTING,
        CH6_SETTING,
        CH6B,
        "Faster, more accurate, more robust: the verdicts",
        CH6_PLAIN,
        "more robust: drop, Gaussian noise σ=0.2",
        "accuracy",
    ),
    LedgerEntry(
        LRLC,
        "On aligned data, an LRLC layer beats convolution",
        LRLC_SETTING + "; aligned: CelebA faces cropped and resized to 32x32",
        CH8_SETTING,
        CH8,
        "The verdicts",
        "LRLC claims",
        "aligned: LRLC beats conv",
        "points",
    ),
    LedgerEntry(
        LRLC,
        "On aligned data, an LRLC layer beats local connectivity (LC)",
        LRLC_SETTING + "; aligned: CelebA faces cropped and resized to 32x32",
        CH8_SETTING,
        CH8,
        "The verdicts",
        "LRLC claims",
        "aligned: LRLC beats LC",
        "points",
    ),
    LedgerEntry(
        LRLC,
        "On natural images, an LRLC layer beats convolution",
        LRLC_SETTING,
        CH8_SETTING,
        CH8,
        "The verdicts",
        "LRLC claims",
        "real: LRLC beats conv",
        "points",
    ),
    LedgerEntry(
        LRLC,
        "On natural images, an LRLC layer beats local connectivity (LC)",
        LRLC_SETTING,
        CH8_SETTING,
        CH8,
        "The verdicts",
        "LRLC claims",
        "real: LRLC beats LC",
        "points",
    ),
    LedgerEntry(
        LRLC_NOTES,
        "On translated data, the input-dependent LRLC keeps a gain over convolution",
        LRLC_SETTING + "; translated: the 32x32 face at a random offset in a 48x48 noise canvas",
        CH8_SETTING,
        CH8,
        "The verdicts",
        "LRLC claims",
        "translated: input-dependent LRLC beats conv",
        "points",
    ),
    LedgerEntry(
        LRLC_NOTES,
        "On translated data, the input-dependent LRLC beats the LRLC with fixed weights",
        LRLC_SETTING + "; translated: the 32x32 face at a random offset in a 48x48 noise canvas",
        CH8_SETTING,
        CH8,
        "The verdicts",
        "LRLC claims",
        "translated: input-dependent LRLC beats LRLC",
        "points",
    ),
    LedgerEntry(
        BOOK,
        "A cheap penalty (a sub-batch of 32, every 4th step) still flattens the landscape",
        "",
        CH5_SETTING,
        CH5,
        "Is a cheap setting enough?",
        "flatter than plain",
        "default: sub_batch 32, every 4, flatter than plain",
    ),
    LedgerEntry(
        BOOK,
        "The cheap penalty ends as flat as the full-batch penalty",
        "",
        CH5_SETTING,
        CH5,
        "Is a cheap setting enough?",
        "as flat as the full batch",
        "default: sub_batch 32, every 4, as flat as full batch",
    ),
    LedgerEntry(
        BOOK,
        "The P-objective flattens more than an input-gradient penalty of the same cost",
        "",
        CH6_SETTING,
        CH6,
        "Flatter: the verdicts",
        "P-objective against input-gradient penalty",
        "flatter: curvature κ",
    ),
    LedgerEntry(
        BOOK,
        "The P-objective raises the accuracy at the worst position of an item",
        "",
        CH6_SETTING,
        CH6D,
        "Position: the verdicts",
        CH6_PLAIN,
        "position: worst-position accuracy",
        "accuracy",
    ),
    LedgerEntry(
        BOOK,
        "An LRLC's gain on aligned data comes from its rank (no spatial bias needed)",
        "",
        CH8_SETTING,
        CH8,
        "The verdicts",
        "LRLC claims",
        "aligned: rank alone (no spatial bias) beats conv",
        "points",
    ),
    LedgerEntry(
        BOOK,
        "H1 (after Zhang 2019): BlurPool makes predictions more consistent under shifts",
        "",
        CH9_SETTING,
        CH9,
        "H1: does the prediction survive a one-pixel shift?",
        "H1",
        "BlurPool: more consistent",
        "accuracy",
    ),
    LedgerEntry(
        BOOK,
        "H1: the P-objective makes predictions more consistent under shifts",
        "",
        CH9_SETTING,
        CH9,
        "H1: does the prediction survive a one-pixel shift?",
        "H1",
        "P-objective: more consistent",
        "accuracy",
    ),
    LedgerEntry(
        BOOK,
        "H2 (after Kayhan & van Gemert 2020): circular padding reads less absolute position",
        "",
        CH9_SETTING,
        CH9B,
        "H2: can a CNN tell where it is?",
        "H2",
        "circular padding: reads less position (lower accuracy)",
        "accuracy",
    ),
    LedgerEntry(
        BOOK,
        "H3 (after Alsallakh et al. 2021): even inputs at stride 2 give asymmetric landscapes",
        "",
        CH9_SETTING,
        CH9C,
        "H3: uneven padding at stride 2",
        "H3",
        "even input: more left/right asymmetric at init",
    ),
    LedgerEntry(
        BOOK,
        "H4: training lowers the landscape's correlation with the path count",
        "",
        CH9_SETTING,
        CH9D,
        "H4: how far does training move the landscape?",
        "H4",
        "plain: training lowers it",
    ),
    LedgerEntry(
        BOOK,
        "H5: the P-objective flattens an LRLC network too",
        "",
        CH9_SETTING,
        CH9D,
        "H5: the P-objective on an LRLC network",
        "H5",
        "LRLC + P-objective: flatter than LRLC",
    ),
)


def record_verdicts(family: str, table, *, setting: str | None = None) -> dict[str, Any]:
    """Print a verdict table as one ``PILCRO_VERDICTS {json}`` line, for the ledger to read back.

    family: the table's name (unique within the chapter); table: a verdict table
    (:func:`pilcro_lib.results.as_verdict_frame`: one row per claim); setting: optionally, the
    run's setting in words. The line holds ``family``, ``setting`` and ``claims``, a list of
    rows (``claim`` then every column; NumPy scalars as plain numbers, NaN as ``null``, ±inf as
    ``"Infinity"``/``"-Infinity"``). Returns the printed object.
    """
    check_type("family", family, str, "a non-empty string")
    if not family.strip():
        raise ValueError("family must be a non-empty string, got ''")
    if setting is not None:
        check_type("setting", setting, str, "a string or None")
    frame = as_verdict_frame(table)
    claims = [
        {"claim": claim, **{str(c): _plain(f"table[{claim!r}, {c!r}]", v) for c, v in row.items()}}
        for claim, row in frame.iterrows()
    ]
    record = {"family": family, "setting": setting, "claims": claims}
    print(f"{MARKER} {json.dumps(record, ensure_ascii=False, allow_nan=False)}", flush=True)
    return record


def _plain(name: str, value: Any) -> Any:
    """A JSON value: NaN -> None, ±inf -> "Infinity"/"-Infinity", NumPy scalars -> Python."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is not None and not isinstance(value, (bool, int, float, str)):
        raise TypeError(
            f"{name} must be a number, string, bool or None, got {type(value).__name__}"
        )
    return value


def read_verdicts(notebook: str | Path | Mapping) -> dict[str, Any]:
    """The verdict tables a stored notebook printed with :func:`record_verdicts`.

    notebook: a path to an ``.ipynb`` file, or the notebook (``nbformat`` node or JSON dict).
    Returns family -> DataFrame indexed by ``claim`` (columns as recorded; ``None`` read back as
    NaN; ``attrs["setting"]`` the recorded setting), in the order printed; a family printed
    twice keeps its last table.
    """
    import pandas as pd

    if isinstance(notebook, (str, Path)):
        notebook = json.loads(Path(notebook).read_text())
    check_type("notebook", notebook, Mapping, "a path to a notebook or a notebook dict")
    tables: dict[str, Any] = {}
    for line in stream_lines(notebook):
        if line.startswith(MARKER + " "):
            record = json.loads(line[len(MARKER) + 1 :])
            rows = [{k: _number(v) for k, v in claim.items()} for claim in record["claims"]]
            frame = (
                pd.DataFrame(rows).set_index("claim")
                if rows
                else pd.DataFrame(index=pd.Index([], name="claim"))
            )
            frame.attrs["setting"] = record.get("setting")
            tables.pop(record["family"], None)
            tables[record["family"]] = frame
    return tables


def _number(value: Any) -> Any:
    if value is None:
        return math.nan
    if value in ("Infinity", "-Infinity"):
        return float(value)
    return value


def section_anchor(heading: str) -> str:
    """The HTML id Sphinx gives a section with this heading (docutils' ``make_id`` rule):
    lower case, accents dropped, every run of other characters a hyphen, no leading digits."""
    text = unicodedata.normalize("NFKD", heading.lower()).encode("ascii", "ignore").decode("ascii")
    text = re.sub("[^a-z0-9]+", "-", " ".join(text.split()))
    return re.sub("^[-0-9]+|-+$", "", text)


def chapter_facts(notebook: Mapping) -> dict[str, str | None]:
    """``profile`` and ``device`` from a stored notebook's provenance lines (``None`` if absent)."""
    facts: dict[str, str | None] = {"profile": None, "device": None}
    for line in stream_lines(notebook):
        key, _, value = line.partition(":")
        if key.strip() in facts and facts[key.strip()] is None and value.strip():
            facts[key.strip()] = value.strip()
    return facts


def _headings(notebook: Mapping) -> list[str]:
    return [
        line.lstrip("#").strip()
        for cell in notebook.get("cells", [])
        if cell.get("cell_type") == "markdown"
        for line in "".join(cell.get("source", "")).splitlines()
        if line.startswith("#")
    ]


def claims_ledger(notebooks_dir: str | Path, entries: tuple[LedgerEntry, ...] | None = None):
    """One row per ledger entry (default :data:`LEDGER`), its numbers read from its chapter.

    Returns a DataFrame with :data:`LEDGER_COLUMNS`: the entry's words, ``our setting`` (the
    setting recorded with the table, else the entry's, plus the chapter's profile and device),
    ``anchor`` (:func:`section_anchor` of the section) and the endpoint's ``difference``,
    ``ci_low``, ``ci_high``, ``detectable``, ``p_holm`` and ``verdict``. An entry whose chapter,
    family or claim is missing reads ``verdict`` = "not in the book yet" with NaN numbers.
    """
    import pandas as pd

    root = Path(notebooks_dir)
    if not root.is_dir():
        raise ValueError(f"notebooks_dir={str(notebooks_dir)!r} is not a folder")
    entries = LEDGER if entries is None else entries
    chapters: dict[str, tuple[dict, dict]] = {}
    rows = []
    for entry in entries:
        check_type("entries", entry, LedgerEntry, "a tuple of LedgerEntry")
        if entry.chapter not in chapters:
            path = root / entry.chapter
            notebook = json.loads(path.read_text()) if path.is_file() else {"cells": []}
            chapters[entry.chapter] = (notebook, read_verdicts(notebook))
        notebook, families = chapters[entry.chapter]
        rows.append(_ledger_row(entry, notebook, families))
    return pd.DataFrame(rows, columns=list(LEDGER_COLUMNS))


def _ledger_row(
    entry: LedgerEntry, notebook: Mapping, families: Mapping[str, Any]
) -> dict[str, Any]:
    table = families.get(entry.family)
    found = table is not None and entry.endpoint in table.index
    numbers = {c: math.nan for c in COMPARED[:-1]}
    if found:
        row = table.loc[entry.endpoint]
        numbers = {c: float(row[c]) if c in row.index else math.nan for c in numbers}
    facts = chapter_facts(notebook)
    setting = (table.attrs.get("setting") if table is not None else None) or entry.our_setting
    extra = ", ".join(f"{k} {v}" for k, v in facts.items() if v)
    return {
        "source": entry.source,
        "claim": entry.claim,
        "paper's setting": entry.paper_setting,
        "our setting": f"{setting} ({extra})" if extra else setting,
        "chapter": entry.chapter,
        "section": entry.section,
        "anchor": section_anchor(entry.section),
        "family": entry.family,
        "primary endpoint": entry.endpoint,
        "unit": entry.unit,
        **numbers,
        "verdict": str(table.loc[entry.endpoint, "verdict"]) if found else NOT_IN_BOOK,
    }


def check_ledger_against_chapters(ledger, notebooks_dir: str | Path) -> None:
    """Raise ``ValueError`` naming the first ledger row that disagrees with its chapter.

    ledger: a :func:`claims_ledger` DataFrame (e.g. one stored on the results page). Each row's
    verdict and numbers (:data:`COMPARED`) must equal what its chapter's stored outputs record
    now (numbers to 1e-9, relative), and its section heading must exist in the chapter.
    """
    import pandas as pd

    check_type("ledger", ledger, pd.DataFrame, "a claims_ledger DataFrame")
    missing = [
        c
        for c in ("chapter", "family", "primary endpoint", "section", *COMPARED)
        if c not in ledger.columns
    ]
    if missing:
        raise ValueError(f"ledger lacks the columns {missing}; make it with claims_ledger")
    root = Path(notebooks_dir)
    for i, row in ledger.iterrows():
        path = root / row["chapter"]
        notebook = json.loads(path.read_text()) if path.is_file() else {"cells": []}
        entry = LedgerEntry(
            row.get("source", ""),
            row.get("claim", ""),
            "",
            "",
            row["chapter"],
            row["section"],
            row["family"],
            row["primary endpoint"],
        )
        fresh = _ledger_row(entry, notebook, read_verdicts(notebook))
        name = (
            f"ledger row {i} ({row.get('claim', '')!r}: {row['chapter']}, family "
            f"{row['family']!r}, claim {row['primary endpoint']!r})"
        )
        for column in ("verdict", *COMPARED[:-1]):  # the verdict first: the most telling difference
            if not _same(row[column], fresh[column]):
                raise ValueError(
                    f"{name}: {column} is {row[column]!r} in the ledger but {fresh[column]!r} "
                    f"in the chapter's stored outputs"
                )
        if path.is_file() and row["section"] not in _headings(notebook):
            raise ValueError(f"{name}: the chapter has no section headed {row['section']!r}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    a, b = float(a), float(b)
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def ledger_table(ledger, *, caption: str | None = None):
    """The ledger in the book's one table style: claim, source, settings, endpoint, effect with
    its 95% CI, smallest detectable, verdict (coloured) and a link to the chapter's section.

    ledger: a :func:`claims_ledger` DataFrame. Numbers read in each row's ``unit``
    (:func:`pilcro_lib.results.format_number`). Returns a :class:`pilcro_lib.results.StyledTable`.
    """
    import html

    import pandas as pd

    check_type("ledger", ledger, pd.DataFrame, "a claims_ledger DataFrame")
    rows = []
    for _, row in ledger.iterrows():
        unit = row["unit"]
        target = f"{row['chapter'].removesuffix('.ipynb')}.html#{row['anchor']}"
        link = (
            f'<a href="{html.escape(target)}">'
            f"{html.escape(row['chapter'].removesuffix('.ipynb'))}: "
            f"{html.escape(row['section'])}</a>"
        )
        rows.append(
            {
                "claim": html.escape(row["claim"]),
                "source": html.escape(row["source"]),
                "paper's setting": html.escape(row["paper's setting"] or "–"),
                "our setting": html.escape(row["our setting"]),
                "primary endpoint": html.escape(f"{row['family']}: {row['primary endpoint']}"),
                "difference": format_number(row["difference"], unit),
                "95% CI": format_ci(row["ci_low"], row["ci_high"], unit),
                "smallest detectable": format_number(row["detectable"], unit),
                "verdict": row["verdict"],
                "chapter": link,
            }
        )
    shown = pd.DataFrame(
        rows,
        columns=[
            "claim",
            "source",
            "paper's setting",
            "our setting",
            "primary endpoint",
            "difference",
            "95% CI",
            "smallest detectable",
            "verdict",
            "chapter",
        ],
    )
    return table_style(
        shown,
        caption=caption,
        colours={"verdict": VERDICT_COLOURS},
        escape=False,
        left=["claim", "source", "paper's setting", "our setting", "primary endpoint", "chapter"],
    )


AXIS_UNITS = {
    "accuracy": "fraction",
    "points": "points",
    "seconds": "s",
    "steps": "steps",
    "value": "",
}


def forest_groups(table, *, spread: float = 10.0) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Panels for :func:`pilcro_lib.plotting.forest_plot` of one verdict table, and each panel's
    x-axis unit: claims grouped by their unit (:func:`pilcro_lib.results.unit_of`) and, when every
    claim starts with a heading (``"faster: ..."``), by that heading too; a claim whose interval
    is more than ``spread`` times wider than its group's narrowest gets a panel of its own, so
    that no claim is squashed against another's scale."""
    frame = as_verdict_frame(table)
    heads = [c.split(":")[0] if ":" in c else "" for c in frame.index]
    by_head = all(heads) and len(set(heads)) > 1
    units = {c: unit_of(c) for c in frame.index}
    groups: dict[tuple[str, str], list[str]] = {}
    for claim, head in zip(frame.index, heads):
        groups.setdefault((head if by_head else "", units[claim]), []).append(claim)
    mixed = {h for h, _ in groups if sum(g == h for g, _ in groups) > 1}
    panels: dict[str, list[str]] = {}
    axis: dict[str, str] = {}
    for (head, unit), claims in groups.items():
        word = AXIS_UNITS[unit] or "value"
        label = (
            (f"{head}, {word}" if head in mixed else head)
            if head
            else (word if len(groups) > 1 else "")
        )
        width = {
            c: abs(float(frame.loc[c, "ci_high"]) - float(frame.loc[c, "ci_low"])) for c in claims
        }
        finite = [w for w in width.values() if math.isfinite(w) and w > 0]
        wide = [c for c in claims if finite and width[c] > spread * min(finite)]
        rest = [c for c in claims if c not in wide]
        for name, members in ([(label, rest)] if rest else []) + [(c, [c]) for c in wide]:
            panels[name] = members
            axis[name] = AXIS_UNITS[unit]
    return panels, axis


def show_verdicts(
    family: str, table, *, caption: str | None = None, units=None, margin: float | None = None
) -> None:
    """Show one verdict table as a chapter does: its forest plot (:func:`forest_groups` panels;
    an equivalence family's ``margin`` drawn as the grey band), the table in the book's one style
    (:func:`pilcro_lib.results.verdict_table`), and its ``PILCRO_VERDICTS`` line for the claims
    ledger (:func:`record_verdicts`)."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    from pilcro_lib.plotting import forest_plot

    frame = as_verdict_frame(table)
    groups, axis = forest_groups(frame)
    forest_plot(frame, groups=groups, units=axis, margin=margin, title=caption or family)
    plt.show()
    display(verdict_table(frame, units=units, caption=caption or family))
    record_verdicts(family, frame)


def ledger_forest(ledger):
    """The forest plot of the claims ledger (:func:`claims_ledger`): one row per claim in the
    book, its primary endpoint's difference, 95% CI and verdict; one panel per source and unit,
    so that no two units share an x-axis. Rows not in the book yet are left out."""
    from pilcro_lib.plotting import forest_plot

    rows = ledger[ledger["verdict"] != NOT_IN_BOOK]
    if rows.empty:
        raise ValueError("ledger has no row in the book yet: there is nothing to plot")
    frame = rows.set_index("claim")[list(COMPARED)]
    groups: dict[str, list[str]] = {}
    for claim, source, unit in zip(rows["claim"], rows["source"], rows["unit"]):
        groups.setdefault(f"{source}, {unit}", []).append(claim)
    return forest_plot(frame, groups=groups)


def ledger_summary(ledger) -> str:
    """What the book found, for its first page: an HTML list with one item per source (a paper, or
    the book) naming its claims under each verdict, in the ledger's order, e.g.
    ``<li><b>PILCRO paper (abstract)</b>, 4 claims. <b>supported</b>: The P-objective gives
    flatter ... <b>not resolved</b>: ...</li>``."""
    from html import escape

    items = []
    for source, rows in ledger.groupby("source", sort=False):
        said = " ".join(
            f"<b>{escape(str(verdict))}</b>: "
            + "; ".join(escape(str(c)) for c in rows.loc[rows["verdict"] == verdict, "claim"])
            + "."
            for verdict in rows["verdict"].unique()
        )
        n = len(rows)
        items.append(
            f"<li><b>{escape(str(source))}</b>, {n} claim{'s' if n != 1 else ''}. {said}</li>"
        )
    return "<ul>" + "".join(items) + "</ul>"
