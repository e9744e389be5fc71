"""The headline numbers of the chapters: printed by each chapter, read back for the results page.

A chapter prints its headline numbers with :func:`record_metrics` (one ``PILCRO_METRICS {json}``
line); :func:`read_metrics` reads them back from an executed notebook (as the sweep runner does
for each point), and :func:`chapter_headlines` gathers them over the chapters. (The runs behind
them are stored by :mod:`pilcro_lib.runs.records`.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pilcro_lib.stats import COMPARISON_KEYS

MARKER = "PILCRO_METRICS"


def record_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Print ``metrics`` as one ``PILCRO_METRICS {json}`` line, for a sweep to read back.

    ``metrics`` maps names (``str``) to numbers, strings, booleans or ``None``; NumPy and torch
    scalars are converted with ``.item()``. The order of the names is kept. Returns the converted
    dict.
    """
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of name -> value, got {type(metrics).__name__}")
    clean: dict[str, Any] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"metrics: every name must be a non-empty string, got {name!r}")
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise TypeError(
                f"metrics[{name!r}] must be a number, string, bool or None, got "
                f"{type(value).__name__}"
            )
        clean[name] = value
    print(f"{MARKER} {json.dumps(clean)}", flush=True)
    return clean


def read_metrics(notebook: Any) -> dict[str, Any]:
    """The metrics a notebook (an ``nbformat`` node or its JSON dict) printed with
    :func:`record_metrics`."""
    metrics: dict[str, Any] = {}
    for line in stream_lines(notebook):
        if line.startswith(MARKER + " "):
            metrics.update(json.loads(line[len(MARKER) + 1 :]))
    return metrics


def stream_lines(notebook: Any) -> Iterator[str]:
    """Every line the code cells of a stored notebook printed (stdout and stderr), in order."""
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") == "stream":
                text = output.get("text", "")
                yield from ("".join(text) if isinstance(text, list) else text).splitlines()


CHAPTERS = (
    "[0-9][0-9]*_*.ipynb"  # every page of a chapter (06_..., 06b_...), relative to notebooks/
)


def chapter_headlines(notebooks: Iterable[str | Path]):
    """The headline numbers that chapter notebooks recorded with :func:`record_metrics`.

    Read from each notebook's stored outputs (the executed notebook is the run record). Returns a
    pandas DataFrame with one row per (chapter, quantity), in the notebooks' and the records' order:
    ``chapter`` (file name), ``title`` (the first heading), ``profile`` (the recorded ``profile``,
    or ``None``), ``commit`` (from the stored provenance line ``git_commit``, or ``None``),
    ``quantity`` and ``value``. A notebook that recorded nothing is left out.
    """
    import pandas as pd

    rows = []
    for path in map(Path, notebooks):
        notebook = json.loads(path.read_text())
        metrics = read_metrics(notebook)
        profile = metrics.pop("profile", None)
        title = next(
            (
                line[2:].strip()
                for cell in notebook["cells"]
                if cell["cell_type"] == "markdown"
                for line in "".join(cell["source"]).splitlines()
                if line.startswith("# ")
            ),
            path.stem,
        )
        commit = next(
            (
                line.split(":", 1)[1].strip()
                for line in stream_lines(notebook)
                if line.startswith("git_commit ")
            ),
            None,
        )
        rows += [
            {
                "chapter": path.name,
                "title": title,
                "profile": profile,
                "commit": commit,
                "quantity": name,
                "value": value,
            }
            for name, value in metrics.items()
        ]
    return pd.DataFrame(
        rows, columns=["chapter", "title", "profile", "commit", "quantity", "value"]
    )


def format_value(value: Any) -> str:
    """A recorded value for a table: floats to 3 significant digits (whole numbers with thousands
    separators from 1,000 on: ``3,410``, not ``3.41e+03``), booleans as yes/no, None as a dash."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if math.isfinite(value) and abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "–" if value is None else str(value)


def headlines_html(headlines) -> str:
    """:func:`chapter_headlines` as HTML: one collapsed ``<details>`` block per chapter (its title,
    a link to it and how many quantities it recorded), holding a table of quantity and value."""
    from html import escape

    blocks = []
    for chapter, rows in headlines.groupby("chapter", sort=False):
        title = escape(str(rows["title"].iloc[0]))
        body = "".join(
            f"<tr><td>{escape(str(q))}</td><td>{escape(format_value(v))}</td></tr>"
            for q, v in zip(rows["quantity"], rows["value"])
        )
        blocks.append(
            f'<details><summary><a href="{escape(chapter.removesuffix(".ipynb"))}.html">{title}'
            f"</a>: {len(rows)} numbers</summary><table><thead><tr><th>Quantity</th>"
            f"<th>Value</th></tr></thead><tbody>{body}</tbody></table></details>"
        )
    return "".join(blocks)


# --- One table style for every verdict and results table -------------------------------------

VERDICT_COLOURS = {  # verdict -> (text colour, background colour); readable on light and dark pages
    "supported": ("#ffffff", "#1a7f37"),
    "contradicted": ("#ffffff", "#c62828"),
    "not resolved": ("#ffffff", "#6e7781"),
    "not measured": ("#57606a", "#eaeef2"),
    "not in the book yet": ("#57606a", "#ffffff"),
}
VERDICT_COLUMNS = (
    "difference",
    "ci_low",
    "ci_high",
    "verdict",
)  # what every verdict table must hold
STATISTICS_COLUMNS = ("n_treated", "n_control", *COMPARISON_KEYS, "p_holm", "verdict")
COLUMN_ALIASES = {
    "diff.": "difference",
    "CI low": "ci_low",
    "CI high": "ci_high",
    "p Holm": "p_holm",
    "detect.": "detectable",
}  # the short headers chapter 8 shows
UNIT_KINDS = ("accuracy", "points", "seconds", "steps", "value")
HEADERS = {
    "treated": "treated",
    "control": "control",
    "difference": "difference",
    "ci": "95% CI",
    "detectable": "smallest detectable",
    "p_holm": "Holm p",
    "verdict": "verdict",
    "n": "n",
}

# an equivalence family's interval (TOST at alpha = 0.05) and smallest showable margin
EQUIVALENCE_HEADERS = ("90% CI (TOST)", "smallest margin shown")


def as_verdict_frame(table) -> Any:
    """A verdict table in the standard form: a DataFrame indexed by ``claim`` (one row per claim).

    Accepts :func:`pilcro_lib.stats.verdicts` tables, a selection of their columns, chapter 8's
    short headers (``diff.``, ``CI low``, ...: :data:`COLUMN_ALIASES`) and a two-level index
    (``task``, ``claim``), joined as ``"task: claim"``. It must hold :data:`VERDICT_COLUMNS`.
    Numeric columns become floats; other columns are kept as they are.
    """
    import pandas as pd

    from pilcro_lib.utils import check_type

    check_type("table", table, pd.DataFrame, "a pandas DataFrame of verdicts (one row per claim)")
    frame = table.rename(columns=COLUMN_ALIASES)
    missing = [c for c in VERDICT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"table lacks the verdict columns {missing}; it has {list(table.columns)}")
    if isinstance(frame.index, pd.MultiIndex):
        claims = [": ".join(map(str, key)) for key in frame.index]
    else:
        claims = [str(key) for key in frame.index]
    frame = frame.set_axis(pd.Index(claims, name="claim"), axis=0)
    for column in frame.columns:
        if column != "verdict" and column in STATISTICS_COLUMNS:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def unit_of(claim: str, units: str | Mapping[str, str] | None = None) -> str:
    """The unit kind (one of :data:`UNIT_KINDS`) of a claim's numbers.

    ``units``: one kind for every claim, or a mapping claim -> kind (claims it lacks follow
    the rule), or ``None`` for the rule: "wall time" or "(s)" -> ``seconds``; "steps" ->
    ``steps``; "accuracy" or "drop" -> ``accuracy`` (a fraction, shown in points); else ``value``.
    """
    from pilcro_lib.utils import check_choice

    if isinstance(units, str):
        return check_choice("units", units, UNIT_KINDS)
    if units is not None and claim in units:
        return check_choice(f"units[{claim!r}]", units[claim], UNIT_KINDS)
    text = claim.lower()
    if "wall time" in text or "(s)" in text:
        return "seconds"
    if "steps" in text:
        return "steps"
    if "accuracy" in text or "drop" in text:
        return "accuracy"
    return "value"


def missing(value: Any) -> bool:
    """``None`` or a float NaN (a number that was not measured)."""
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def format_number(value: Any, kind: str = "value", *, digits: int | None = None) -> str:
    """One number for a table, by unit kind (:data:`UNIT_KINDS`); NaN and ``None`` as a dash.

    ``accuracy`` (a fraction) -> points with one decimal (0.8981 -> ``89.8``); ``points`` -> one
    decimal; ``seconds`` and ``steps`` -> whole numbers with thousands separators (``1,234``);
    ``value`` -> ``digits`` significant digits (default 3). Booleans read yes/no, strings stay.
    """
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if missing(value):
        return "–"
    value = float(value)
    if kind == "accuracy":
        return _fixed(100 * value, 1)
    if kind == "points":
        return _fixed(value, 1)
    if kind in ("seconds", "steps"):
        return _fixed(value, 0)
    return _significant(value, 3 if digits is None else digits)


def _fixed(value: float, decimals: int) -> str:
    """``value`` with ``decimals`` decimals and thousands separators; never ``-0.0``."""
    text = f"{value:,.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text[1:].replace(",", "")) == 0 else text


def _significant(value: float, digits: int) -> str:
    """``digits`` significant digits (trailing zeros kept: ``0.0500``); large values as whole
    numbers."""
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return _fixed(value, 0)
    return f"{value:#.{digits}g}"


def format_p(p: Any) -> str:
    """A p-value with two significant digits (``0.012``, ``1.0``); below 0.0001 as ``< 0.0001``."""
    if missing(p):
        return "–"
    p = float(p)
    if p < 1e-4:
        return "< 0.0001"
    return _significant(p, 2)


def format_ci(low: Any, high: Any, kind: str = "value", *, digits: int | None = None) -> str:
    """A confidence interval as one cell, ``[low, high]`` (each by :func:`format_number`)."""
    if missing(low) or missing(high):
        return "–"
    return (
        f"[{format_number(low, kind, digits=digits)}, {format_number(high, kind, digits=digits)}]"
    )


def _count(n_treated: Any, n_control: Any) -> str:
    known = [int(n) for n in (n_treated, n_control) if not missing(n)]
    if not known:
        return "–"
    return str(known[0]) if len(known) == 1 or known[0] == known[1] else f"{known[0]} / {known[1]}"


def verdict_display(
    table, *, units: str | Mapping[str, str] | None = None, digits: int | None = None
):
    """The cells of a verdict table as text: a DataFrame of strings, one row per claim.

    Columns, those the table holds, in this order: ``claim``, any column that is not a statistic
    (kept, formatted in the row's unit), ``n`` (``5``, or ``5 / 4`` when the arms differ),
    ``treated``, ``control``, ``difference``, ``95% CI`` (``[a, b]``), ``smallest detectable``,
    ``Holm p``, ``verdict``. A table with a ``margin`` column is an equivalence family
    (:func:`pilcro_lib.stats.equivalence_verdicts`): its interval and detectable columns are
    headed :data:`EQUIVALENCE_HEADERS`. Units: see :func:`unit_of` and :func:`format_number`.
    """
    import pandas as pd

    frame = as_verdict_frame(table)
    extras = [c for c in frame.columns if c not in STATISTICS_COLUMNS]
    tost = "margin" in frame.columns  # an equivalence family (stats.equivalence_verdicts)
    rows = []
    for claim, row in frame.iterrows():
        kind = unit_of(claim, units)
        cells = {
            "claim": claim,
            **{str(c): format_number(row[c], kind, digits=digits) for c in extras},
        }
        if "n_treated" in frame.columns or "n_control" in frame.columns:
            cells[HEADERS["n"]] = _count(row.get("n_treated"), row.get("n_control"))
        for column in ("treated", "control", "difference"):
            if column in frame.columns:
                cells[HEADERS[column]] = format_number(row[column], kind, digits=digits)
        interval, detectable = (
            EQUIVALENCE_HEADERS if tost else (HEADERS["ci"], HEADERS["detectable"])
        )
        cells[interval] = format_ci(row["ci_low"], row["ci_high"], kind, digits=digits)
        if "detectable" in frame.columns:
            cells[detectable] = format_number(row["detectable"], kind, digits=digits)
        if "p_holm" in frame.columns:
            cells[HEADERS["p_holm"]] = format_p(row["p_holm"])
        cells[HEADERS["verdict"]] = str(row["verdict"])
        rows.append(cells)
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else ["claim"])


def content_id(*parts: Any) -> str:
    """A short, stable id (10 hex digits of a SHA-256) of the text of ``parts``: for HTML ids."""
    import hashlib

    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:10]


class StyledTable:
    """A rendered table: ``html`` (deterministic: its ids come from its content) and ``text``.

    Notebooks show the HTML; the plain-text form (stored beside it) is the table as text, never
    an object address, so re-executing a chapter leaves both outputs byte-identical.
    """

    def __init__(self, html: str, text: str, frame):
        self.html, self.text, self.frame = html, text, frame

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text

    def to_html(self) -> str:
        """The HTML of the table (a ``<style>`` block and a ``<table>``)."""
        return self.html


def table_style(
    frame,
    formats: Mapping[str, Any] | None = None,
    *,
    caption: str | None = None,
    colours: Mapping[str, Mapping[str, tuple[str, str]]] | None = None,
    left: Sequence[str] | None = None,
    escape: bool = True,
) -> StyledTable:
    """The book's one table style for any DataFrame (its index is dropped: make it a column).

    formats: column -> a format string (``"{:.1f}"``) or a function of the value; other cells
    are shown by :func:`format_value`. colours: column -> {cell text -> (text colour, background)}.
    left: the columns aligned left (default: the first, the row's name); others align right.
    The HTML's ids derive from the content (``T_<hash>``), so equal tables render byte-identical.
    With ``escape`` cell texts are HTML-escaped (pass ``False`` for cells that hold links).
    """
    import html as html_lib

    import pandas as pd

    from pilcro_lib.utils import check_type

    check_type("frame", frame, pd.DataFrame, "a pandas DataFrame")
    formats = dict(formats or {})
    left = list(frame.columns[:1]) if left is None else list(left)
    unknown = [c for c in [*formats, *(colours or {}), *left] if c not in frame.columns]
    if unknown:
        raise ValueError(
            f"formats/colours/left name columns {unknown} that frame lacks; "
            f"it has {list(frame.columns)}"
        )

    def cell(column: str, value: Any) -> str:
        rule = formats.get(column)
        if rule is None:
            text = value if isinstance(value, str) else format_value(_plain(value))
        else:
            text = rule(value) if callable(rule) else rule.format(value)
        return html_lib.escape(text, quote=False) if escape else text

    shown = pd.DataFrame(
        {str(c): [cell(c, v) for v in frame[c]] for c in frame.columns},
        columns=list(map(str, frame.columns)),
    )
    uuid = content_id(shown.to_csv(index=False), caption)
    styler = shown.style.set_uuid(uuid).hide(axis="index")
    styler = styler.set_table_styles(_TABLE_STYLES)
    if left:
        styler = styler.set_properties(subset=list(map(str, left)), **{"text-align": "left"})
    for column, palette in (colours or {}).items():
        styler = styler.map(lambda v, p=palette: _badge(v, p), subset=[str(column)])
    if caption:
        styler = styler.set_caption(html_lib.escape(caption, quote=False))
    text = shown.map(_plain_text).to_string(index=False)
    return StyledTable(styler.to_html(), f"{caption}\n{text}" if caption else text, shown)


_TABLE_STYLES = [
    {"selector": "", "props": "border-collapse: collapse; font-size: 0.85em;"},
    {
        "selector": "th",
        "props": (
            "text-align: left; padding: 3px 8px; border-bottom: 1px solid #8c959f;"
            " overflow-wrap: anywhere;"
        ),
    },
    {"selector": "td", "props": "text-align: right; padding: 3px 8px; overflow-wrap: anywhere;"},
    {"selector": "caption", "props": "caption-side: top; text-align: left; font-weight: bold;"},
]


def _plain_text(cell: str) -> str:
    """A cell's HTML as plain text: tags dropped, entities decoded."""
    import html as html_lib
    import re

    return html_lib.unescape(re.sub("<[^>]+>", "", cell))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def _badge(text: str, palette: Mapping[str, tuple[str, str]]) -> str:
    import html as html_lib

    key = html_lib.unescape(text)
    if key not in palette:
        return ""
    colour, background = palette[key]
    return (
        f"color: {colour}; background-color: {background}; font-weight: bold; text-align: center;"
    )


def verdict_table(
    table,
    *,
    units: str | Mapping[str, str] | None = None,
    digits: int | None = None,
    caption: str | None = None,
) -> StyledTable:
    """The one style of every verdict table: readable headers, the CI as one ``[a, b]`` column,
    digits suited to each claim's unit, the verdict in words on its colour
    (:data:`VERDICT_COLOURS`).

    table: a verdict table (see :func:`as_verdict_frame`); units/digits: see :func:`unit_of` and
    :func:`format_number` (p-values by :func:`format_p`). Returns a :class:`StyledTable` whose
    HTML is byte-identical for equal tables (ids from a hash of the content).
    """
    shown = verdict_display(table, units=units, digits=digits)
    return table_style(shown, caption=caption, colours={HEADERS["verdict"]: VERDICT_COLOURS})
