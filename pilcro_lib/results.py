"""The headline numbers of the chapters, read back from their stored outputs, for the results page.

(The runs behind them are stored by :mod:`pilcro_lib.records`.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pilcro_lib.sweep import read_metrics, stream_lines


def chapter_headlines(notebooks: Iterable[str | Path]):
    """The headline numbers that chapter notebooks recorded with :func:`pilcro_lib.sweep.record_metrics`.

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
        title = next((line[2:].strip() for cell in notebook["cells"] if cell["cell_type"] == "markdown"
                      for line in "".join(cell["source"]).splitlines() if line.startswith("# ")), path.stem)
        commit = next((line.split(":", 1)[1].strip() for line in stream_lines(notebook)
                       if line.startswith("git_commit ")), None)
        rows += [{"chapter": path.name, "title": title, "profile": profile, "commit": commit, "quantity": name, "value": value}
                 for name, value in metrics.items()]
    return pd.DataFrame(rows, columns=["chapter", "title", "profile", "commit", "quantity", "value"])


def format_value(value: Any) -> str:
    """A recorded value for a table: floats to 3 significant digits, booleans as yes/no, None as a dash."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return "–" if value is None else str(value)


def headlines_markdown(headlines) -> str:
    """A markdown table of :func:`chapter_headlines`: chapter (a link, on its first row), quantity, value."""
    lines = ["| Chapter | Quantity | Value |", "| --- | --- | --- |"]
    previous = None
    for row in headlines.itertuples():
        chapter = f"[{row.title}]({row.chapter})" if row.chapter != previous else ""
        previous = row.chapter
        quantity = str(row.quantity).replace("|", "\\|")
        lines.append(f"| {chapter} | {quantity} | {format_value(row.value)} |")
    return "\n".join(lines)
