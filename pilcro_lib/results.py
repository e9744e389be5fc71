"""The headline numbers of the chapters: printed by each chapter, read back for the results page.

A chapter prints its headline numbers with :func:`record_metrics` (one ``PILCRO_METRICS {json}``
line); :func:`read_metrics` reads them back from an executed notebook (as the sweep runner does
for each point), and :func:`chapter_headlines` gathers them over the chapters. (The runs behind
them are stored by :mod:`pilcro_lib.runs.records`.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

MARKER = "PILCRO_METRICS"


def record_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Print ``metrics`` as one ``PILCRO_METRICS {json}`` line, for a sweep to read back.

    ``metrics`` maps names (``str``) to numbers, strings, booleans or ``None``; NumPy and torch
    scalars are converted with ``.item()``. The order of the names is kept. Returns the converted dict.
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
                f"metrics[{name!r}] must be a number, string, bool or None, got {type(value).__name__}")
        clean[name] = value
    print(f"{MARKER} {json.dumps(clean)}", flush=True)
    return clean


def read_metrics(notebook: Any) -> dict[str, Any]:
    """The metrics a notebook (an ``nbformat`` node or its JSON dict) printed with :func:`record_metrics`."""
    metrics: dict[str, Any] = {}
    for line in stream_lines(notebook):
        if line.startswith(MARKER + " "):
            metrics.update(json.loads(line[len(MARKER) + 1:]))
    return metrics


def stream_lines(notebook: Any) -> Iterator[str]:
    """Every line the code cells of a stored notebook printed (stdout and stderr), in order."""
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") == "stream":
                text = output.get("text", "")
                yield from ("".join(text) if isinstance(text, list) else text).splitlines()



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
