"""Run records: runs keyed by a hash of their config, and the headline numbers of the chapters.

:func:`cached_run` loads a run's stored result if present, else runs it and stores it.

Each run lives in ``<root>/<hash>/`` with ``config.json`` and ``metrics.json`` (and whatever the
run writes there, e.g. :func:`pilcro_lib.train.fit`'s checkpoints). The root is ``$PILCRO_RUNS``,
default ``runs/`` in the working directory's repository root.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pilcro_lib.sweep import read_metrics, stream_lines
from pilcro_lib.checkpoint import write_json as _write_json


def default_root() -> Path:
    """``$PILCRO_RUNS``, else ``runs/``."""
    return Path(os.environ.get("PILCRO_RUNS", "runs"))


def config_hash(config: dict[str, Any]) -> str:
    """A 16-hex-digit hash of a JSON-serialisable config (key order does not matter)."""
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    except TypeError as err:
        raise TypeError(f"config must be JSON-serialisable (numbers, strings, lists, dicts): {err}") from err
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_run(config: dict[str, Any], run_fn: Callable[[Path], dict[str, Any]], *, root: str | Path | None = None) -> dict[str, Any]:
    """Metrics of the run described by ``config``: loaded from ``metrics.json`` if stored, else
    ``run_fn(run_dir)`` is called (it may checkpoint into ``run_dir`` and so resume) and its
    JSON-serialisable metrics are stored. Returns the metrics dict.
    """
    run_dir = (Path(root) if root is not None else default_root()) / config_hash(config)
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists():
        return json.loads(metrics_path.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "config.json", config)
    metrics = run_fn(run_dir)
    _write_json(metrics_path, metrics)
    return metrics


def collect_runs(root: str | Path | None = None):
    """All finished runs under ``root`` as a pandas DataFrame: config keys, then metric keys
    (nested dicts flattened with dots; list-valued metrics kept as lists), one row per run."""
    import pandas as pd

    root = Path(root) if root is not None else default_root()
    rows = []
    for metrics_path in sorted(root.glob("*/metrics.json")):
        config = json.loads((metrics_path.parent / "config.json").read_text())
        metrics = json.loads(metrics_path.read_text())
        rows.append({"run": metrics_path.parent.name, **config, **metrics})
    return pd.json_normalize(rows) if rows else pd.DataFrame()


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
