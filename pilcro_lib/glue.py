"""Numbers and figures handed from a chapter's code to its prose (MyST-NB's *glue*).

A chapter never types a measured number into its text: a code cell glues it,
``glue_values(gain=0.0115)``, and the markdown shows it with ``{glue:text}`gain:.3f` `` (or a
figure with the ``{glue:figure}`` directive). When the book is built the reference is replaced
by the value the cell produced, so text and outputs cannot disagree.

The glued output is the one MyST-NB reads (a hidden display whose metadata names the value); it
is written here so that a notebook needs no Jupyter Book install (on Colab the glue is inert).
NumPy and torch scalars are turned into Python numbers first, so that the format in the role
(``:.3f``, ``:.1%``) applies to them.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.core.formatters import format_display_data
from IPython.display import HTML, display
from matplotlib.figure import Figure

HIDDEN_PREFIX = "application/papermill.record/"  # MyST-NB's mark of a value glued, not shown
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def _plain(name: str, value: Any) -> Any:
    """``value`` as a Python number or string; refuses what the prose cannot show."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name}: a tensor of shape {tuple(value.shape)}, not one number")
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise TypeError(f"{name}: expected a real number or a string, got {type(value).__name__}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise ValueError(f"{name}={value}: a glued number must be finite")
        return float(value)
    return value


def _glue(name: str, value: Any) -> None:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"glue name {name!r}: use letters, digits, '_' and '-'")
    bundle, metadata = format_display_data(value)
    metadata = {**metadata, "scrapbook": {"name": name, "mime_prefix": HIDDEN_PREFIX}}
    display({HIDDEN_PREFIX + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def glue_values(**values: Any) -> dict[str, Any]:
    """Glue each ``name=value`` (a number or a string) for ``{glue:text}`name:fmt` ``; returns them.

    Numbers are converted to Python ``int``/``float`` (NumPy and one-element torch values too);
    a non-finite number, a bool or any other type raises an error naming the value.
    """
    plain = {name: _plain(name, value) for name, value in values.items()}
    for name, value in plain.items():
        _glue(name, value)
    return plain


def glue_figure(name: str, fig: Figure) -> None:
    """Glue ``fig`` for a ``{glue:figure}`` directive (with a caption and a ``:name:``) and close
    it, so that the figure appears once, where the text places it."""
    if not isinstance(fig, Figure):
        raise TypeError(f"{name}: expected a matplotlib Figure, got {type(fig).__name__}")
    _glue(name, fig)
    plt.close(fig)


def glue_html(name: str, html: str) -> None:
    """Glue an HTML fragment (e.g. :func:`pilcro_lib.plotting.figure_html`) for a ``{glue}``
    directive, on this page or, with ``:doc:``, on another page of the book."""
    if not isinstance(html, str):
        raise TypeError(f"{name}: expected an HTML string, got {type(html).__name__}")
    _glue(name, HTML(html))


def listing(values, spec: str = "") -> str:
    """``values`` written as a list in words for the prose, each by the format ``spec``:
    ``listing([0.32, 0.341], ".2f")`` is ``"0.32 and 0.34"``, three or more read
    ``"a, b and c"``."""
    items = [format(v, spec) for v in values]
    if not items:
        raise ValueError("values must hold at least one value to write")
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
