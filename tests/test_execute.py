"""The in-place notebook runner behind ``make execute``: values parsed, names checked before
anything runs."""

import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from pilcro_lib.runs import execute
from pilcro_lib.runs.execute import parse_assignments, parse_value


def _notebook(path):
    """A notebook whose parameters cell declares epochs and lr, and a cell that prints them and the
    profile (and raises for epochs < 0)."""
    params = new_code_cell("epochs = 1\nlr = 0.1")
    params.metadata["tags"] = ["parameters"]
    code = (
        "import os\nprint(epochs * 2, lr, os.environ.get('PILCRO_PROFILE'))\n"
        "if epochs < 0:\n    raise ValueError('negative epochs')"
    )
    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        cells=[params, new_code_cell(code)],
    )
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3", 3),
        ("-2", -2),
        ("1e-3", 1e-3),
        ("0.5", 0.5),
        (".5", 0.5),
        ("2.", 2.0),
        ("True", True),
        ("false", False),
        ("None", None),
        ("null", None),
        ("adam", "adam"),
        ("nan", "nan"),
        ("1e", "1e"),
        ("fashion_mnist", "fashion_mnist"),
    ],
)
def test_parse_value(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_parse_assignments_reads_key_value_pairs():
    assert parse_assignments(["epochs=3", " lr = 0.01 ", "name=adam"]) == {
        "epochs": 3,
        "lr": 0.01,
        "name": "adam",
    }
    with pytest.raises(ValueError, match="parameter 'lr=1': 'lr' is given twice"):
        parse_assignments(["lr=1", "lr=1"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--params", "epoch=3"],
            "argument --params: unknown parameter(s) 'epoch' for tiny.ipynb; "
            "its parameters are 'epochs', 'lr'",
        ),
        (["--params", "epochs"], "argument --params: parameter 'epochs' must look like name=value"),
        (["--params", "epochs="], "argument --params: parameter 'epochs=': empty value"),
        (
            ["--profile", "smoke", "--params", "profile=book"],
            "argument --params: give the profile with --profile",
        ),
        (["--profile", "huge"], "argument --profile: invalid choice: 'huge'"),
        (
            ["--params", "epoch=3", "--params", "lr=1"],
            "argument --params: unknown parameter(s) 'epoch'",
        ),
        (
            ["--params", "lr=1", "--params", "lr=2"],
            "argument --params: parameter 'lr=2': 'lr' is given twice",
        ),
    ],
)
def test_bad_parameters_are_refused_before_anything_runs(tmp_path, capsys, argv, message):
    nb = _notebook(tmp_path / "tiny.ipynb")
    before = nb.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        execute.main([str(nb), *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err
    assert nb.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "tiny.ipynb"
    ]


def test_a_missing_notebook_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        execute.main([str(tmp_path / "missing.ipynb")])
    assert exit_info.value.code == 2 and "argument notebook: notebook" in capsys.readouterr().err


def test_declared_parameters_run_the_notebook_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "PILCRO_PROFILE", "book"
    )  # restored after the test; main sets it for the kernel
    nb = _notebook(tmp_path / "tiny.ipynb")
    assert (
        execute.main([str(nb), "--profile", "smoke", "--params", "epochs=3", "--params", "lr=0.5"])
        == 0
    )
    executed = nbformat.read(nb, as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "6 0.5 smoke\n"
    assert executed.metadata.papermill.parameters == {"epochs": 3, "lr": 0.5}
    assert executed.metadata.papermill.output_path == str(nb)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.ipynb"], (
        "the executed copy replaced the notebook"
    )


def test_a_failing_execution_leaves_the_notebook_as_it_was(tmp_path, capsys):
    nb = _notebook(tmp_path / "tiny.ipynb")
    before = nb.read_bytes()
    assert execute.main([str(nb), "--params", "epochs=-1"]) == 1
    err = capsys.readouterr().err
    assert nb.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["tiny.ipynb"]
    assert "ValueError: negative epochs (cell 2)" in err, err
    failed = Path(err.split("the failed execution is in ")[1].split()[0])
    try:
        assert (
            nbformat.read(failed, as_version=4).cells[-1].outputs[-1]["evalue"] == "negative epochs"
        )
    finally:
        shutil.rmtree(failed.parent)


def test_stored_outputs_do_not_change_with_styler_ids_addresses_or_times():
    import nbformat
    import pandas as pd

    from pilcro_lib.runs.execute import stable_outputs

    def executed():
        styler = pd.DataFrame({"a": [1.5]}).style  # a new random table id each time
        cell = nbformat.v4.new_code_cell("display(styler)", id="cell-1")
        cell.outputs = [
            nbformat.v4.new_output(
                "display_data", data={"text/html": styler.to_html(), "text/plain": repr(styler)}
            )
        ]
        cell.metadata["papermill"] = {"duration": 0.5}
        notebook = nbformat.v4.new_notebook(cells=[cell])
        notebook.metadata["papermill"] = {"start_time": "now", "output_path": "x"}
        return stable_outputs(notebook)

    first, second = executed(), executed()
    assert nbformat.writes(first) == nbformat.writes(second)
    html = first.cells[0].outputs[0]["data"]["text/html"]
    assert html.count("T_") >= 2 and " at 0x" not in first.cells[0].outputs[0]["data"]["text/plain"]
    assert "papermill" not in first.cells[0].metadata and first.metadata["papermill"] == {
        "output_path": "x"
    }
