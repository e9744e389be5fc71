"""Sphinx extension: scripts and style sheets for the one page that asks for them, and Plotly.js
from the installed ``plotly`` package.

A page names its files (in the built book's ``_static`` folder) in its front matter, separated by
spaces::

    ---
    page_scripts: plotly.min.js landscape_explorer.js
    page_css: landscape_explorer.css
    ---

and they are loaded on that page only. ``plotly.min.js`` is copied into ``_static`` at build time
from the ``plotly`` Python package (``plotly/package_data/plotly.min.js``, a requirement of the
book), so the repository holds no copy of the 5-MB file and the page needs no internet.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from sphinx.errors import ExtensionError

PLOTLY_JS = "plotly.min.js"


def plotly_js() -> Path:
    """The ``plotly.min.js`` that the installed ``plotly`` package ships."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError(
            "the book needs the plotly package for its Plotly.js: "
            "pip install -r requirements.txt -c constraints.txt"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / PLOTLY_JS
    if not path.is_file():
        raise ExtensionError(f"the installed plotly package has no {PLOTLY_JS} (looked for {path})")
    return path


def _names(metadata: dict, key: str) -> list[str]:
    return str(metadata.get(key, "")).replace(",", " ").split()


def add_page_assets(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Add the page's own scripts and style sheets (added here, they reach this page only)."""
    metadata = app.env.metadata.get(pagename, {})
    for name in _names(metadata, "page_scripts"):
        app.add_js_file(name)
    for name in _names(metadata, "page_css"):
        app.add_css_file(name)


def copy_plotly(app) -> None:
    """Copy Plotly.js into the built book's ``_static`` before the pages are written (so that
    their links to it carry its checksum); fail at once where plotly is missing."""
    if app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plotly_js(), static / PLOTLY_JS)


def setup(app) -> dict[str, Any]:
    app.connect("builder-inited", copy_plotly)
    app.connect("html-page-context", add_page_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
