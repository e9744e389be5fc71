"""Glued values reach the prose as MyST-NB reads them, in the format the role asks for."""

import matplotlib

matplotlib.use("Agg")

import nbformat
import numpy as np
import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.pylabtools import select_figure_formats
from IPython.utils.capture import capture_output
from myst_nb.core.variables import format_plain_text
from myst_nb.ext.glue import extract_glue_data_cell

from pilcro_lib import plotting
from pilcro_lib.glue import glue_figure, glue_html, glue_values, listing


def _glued(call) -> dict:
    """What MyST-NB extracts from the outputs ``call()`` displays: name -> output data."""
    select_figure_formats(InteractiveShell.instance(), {"png"})  # as the inline backend does
    with capture_output() as captured:
        call()
    outputs = [
        nbformat.v4.new_output("display_data", data=o.data, metadata=o.metadata)
        for o in captured.outputs
    ]
    cell = nbformat.v4.new_code_cell(outputs=outputs)
    glued = dict(extract_glue_data_cell(cell))
    assert cell.outputs == []  # nothing is shown where it is glued
    return {name: output["data"] for name, output in glued.items()}


def test_numbers_are_formatted_by_the_role():
    values = dict(
        gain=np.float32(0.0115),
        steps=np.int64(188),
        acc=torch.tensor(0.8885),
        share=0.35,
        arm="P-objective",
    )
    data = _glued(lambda: glue_values(**values))
    text = {name: d["text/plain"] for name, d in data.items()}
    assert format_plain_text(text["gain"], ".3f") == "0.012"
    assert format_plain_text(text["steps"], ",d") == "188"
    assert format_plain_text(text["acc"], ".1%") == "88.8%"
    assert format_plain_text(text["share"], ".0%") == "35%"
    assert format_plain_text(text["arm"], "") == "P-objective"


def test_a_figure_is_glued_once_and_closed():
    fig, _ = plotting.new_figure()
    data = _glued(lambda: glue_figure("fig-demo", fig))
    assert "image/png" in data["fig-demo"]
    assert not matplotlib.pyplot.fignum_exists(fig.number)


@pytest.mark.parametrize(
    "values, error",
    [
        (dict(x=float("nan")), "x=nan: a glued number must be finite"),
        (dict(x=True), "x: expected a real number or a string, got bool"),
        (dict(x=[1.0]), "x: expected a real number or a string, got list"),
        (dict(x=torch.ones(2)), r"x: a tensor of shape \(2,\), not one number"),
        ({"a b": 1.0}, "glue name 'a b'"),
    ],
)
def test_bad_values_are_refused_by_name(values, error):
    with pytest.raises((TypeError, ValueError), match=error):
        glue_values(**values)


def test_glue_figure_refuses_other_objects():
    with pytest.raises(TypeError, match="fig: expected a matplotlib Figure, got int"):
        glue_figure("fig", 3)


def test_html_is_glued_as_html():
    data = _glued(lambda: glue_html("summary", "<ul><li>a</li></ul>"))
    assert data["summary"]["text/html"] == "<ul><li>a</li></ul>"
    with pytest.raises(TypeError, match="summary: expected an HTML string, got int"):
        glue_html("summary", 3)


def test_listing_writes_values_as_words():
    assert listing([0.32, 0.341], ".2f") == "0.32 and 0.34"
    assert listing([8, 16, 32]) == "8, 16 and 32"
    assert listing(["one"]) == "one"
    with pytest.raises(ValueError, match="at least one"):
        listing([])
