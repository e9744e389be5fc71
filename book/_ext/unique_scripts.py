"""Sphinx extension: every page loads each script once.

Sphinx 7.4 writes an inline script that sphinx-thebe registers after the builder has started
(``const THEBE_JS_URL = ...``) into every page twice: once with the file name ``None`` and once
with ``""``. The second copy re-declares a ``const`` and the browser reports a syntax error.
This drops a script that repeats an earlier one (same file or inline body, same attributes).
"""

from __future__ import annotations

from typing import Any


def _script_key(script: Any) -> tuple:
    return (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))


def drop_repeated_scripts(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    seen: set[tuple] = set()
    unique = []
    for script in context.get("script_files", []):
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
