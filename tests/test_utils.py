import pytest
import torch

from pilcro_lib.utils import (
    check_choice,
    check_positive_int,
    get_device,
    provenance,
    seed_everything,
)


def test_check_choice_names_argument_and_lists_values():
    assert check_choice("mode", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"mode='c' is not allowed; choose one of 'a', 'b'"):
        check_choice("mode", "c", ("a", "b"))


def test_check_positive_int():
    assert check_positive_int("n", 3) == 3
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        check_positive_int("n", 0)
    with pytest.raises(TypeError, match="n must be an integer"):
        check_positive_int("n", 2.5)


def test_seed_everything_reproduces():
    seed_everything(7)
    a = torch.randn(5)
    g = seed_everything(7)
    assert torch.equal(a, torch.randn(5))
    assert torch.equal(
        torch.randn(3, generator=g), torch.randn(3, generator=torch.Generator().manual_seed(7))
    )


def test_device_and_provenance():
    assert get_device("cpu") == torch.device("cpu")
    info = provenance(profile="smoke", seed=3)
    assert info["profile"] == "smoke" and info["seed"] == 3 and info["torch"] == torch.__version__
    assert info["git_commit"] != ""


def test_git_commit_is_dirty_for_code_not_for_a_notebook_being_executed(tmp_path):
    import subprocess

    from pilcro_lib.utils import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "a.ipynb").write_text("{}")
    (tmp_path / "lib.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = git_commit(tmp_path / "nb")
    assert len(clean) == 12 and not clean.endswith("+dirty")
    (tmp_path / "nb" / "a.ipynb").write_text('{"executed": 1}')
    assert git_commit(tmp_path / "nb") == clean
    (tmp_path / "lib.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "nb") == clean + "+dirty"
    # limited to the files a run executed: a change elsewhere leaves the run clean
    (tmp_path / "other.py").write_text("y = 1\n")
    git("add", "other.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "two")
    (tmp_path / "other.py").write_text("y = 2\n")
    commit = git_commit(tmp_path / "nb", files=["lib.py"])
    assert (
        commit.endswith("+dirty")
        and git_commit(tmp_path / "nb", files=["lib.py", "other.py"]) == commit
    )
    (tmp_path / "lib.py").write_text("x = 1\n")
    assert git_commit(tmp_path / "nb", files=["lib.py"]) == commit.removesuffix("+dirty")
    assert git_commit(tmp_path / "nb", files=[]) == commit.removesuffix("+dirty")


PARAMETERS_CELL = (
    'import os\n\nprofile = os.environ.get("PILCRO_PROFILE", "book")  # smoke | book | paper\n'
    "epochs = None\nlr: float = 0.1\n"
)


def test_check_injected_parameters_names_a_typo_and_lists_the_declared_ones():
    from pilcro_lib.utils import check_injected_parameters

    history = [
        "",
        "import torch",
        PARAMETERS_CELL,
        "# Parameters\nepoch = 3\n",
        "check_injected_parameters()",
    ]
    with pytest.raises(
        ValueError,
        match=r"unknown parameter\(s\) 'epoch' given to papermill.*"
        r"its parameters are 'profile', 'epochs', 'lr'$",
    ):
        check_injected_parameters(history)
    # declared names pass, papermill's own path names too; a formatted multi-line value is one name
    good = [
        "",
        PARAMETERS_CELL,
        "# Parameters\nepochs = 3\nlr = [\n    0.1,\n    0.2,\n]\n"
        "PAPERMILL_INPUT_PATH = 'a.ipynb'\n",
        "x = 1",
    ]
    assert check_injected_parameters(good) == ["epochs", "lr", "PAPERMILL_INPUT_PATH"]
    # the last injected cell counts, checked against the cell that ran just before it
    assert check_injected_parameters(history[:3] + ["# Parameters\nprofile = 'smoke'\n"]) == [
        "profile"
    ]
    # no injected cell (nbval, an interactive session): nothing to check
    assert (
        check_injected_parameters(["", PARAMETERS_CELL, "# Parameters are above\nepoch = 3"]) == []
    )
    assert check_injected_parameters() == []  # plain Python, no IPython kernel
    with pytest.raises(ValueError, match=r"'epochs' given to papermill.*it declares none"):
        check_injected_parameters(["# Parameters\nepochs = 3\n"])
    with pytest.raises(TypeError, match="history must be a sequence of cell sources"):
        check_injected_parameters("# Parameters\nepochs = 3\n")


def test_check_injected_parameters_stops_a_papermill_run_with_a_misspelt_parameter(tmp_path):
    import nbformat
    import papermill
    from nbformat.v4 import new_code_cell, new_notebook

    params = new_code_cell("epochs = 1\nlr = 0.1")
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        cells=[
            params,
            new_code_cell(
                "from pilcro_lib.utils import check_injected_parameters\n"
                "print(check_injected_parameters(), epochs)"
            ),
        ],
    )
    nbformat.write(nb, tmp_path / "nb.ipynb")
    run = {"kernel_name": "python3", "progress_bar": False, "cwd": str(tmp_path)}
    with pytest.raises(
        papermill.PapermillExecutionError, match=r"unknown parameter\(s\) 'epoch'.*'epochs', 'lr'"
    ):
        papermill.execute_notebook(
            str(tmp_path / "nb.ipynb"), str(tmp_path / "out.ipynb"), parameters={"epoch": 3}, **run
        )
    out = papermill.execute_notebook(
        str(tmp_path / "nb.ipynb"), str(tmp_path / "out.ipynb"), parameters={"epochs": 3}, **run
    )
    assert out.cells[-1].outputs[0]["text"] == "['epochs'] 3\n"


def test_setup_notebook_keeps_smoke_records_out_of_the_books_store(monkeypatch):
    from pathlib import Path

    from pilcro_lib.runs import records
    from pilcro_lib.utils import setup_notebook

    monkeypatch.setenv(
        "PILCRO_RECORDS", "x"
    )  # recorded, so that the original is restored afterwards
    monkeypatch.delenv("PILCRO_RECORDS")
    assert setup_notebook("book") == "book" and records.default_store() == records._REPO / "records"
    setup_notebook("smoke")
    assert records.default_store() == records._REPO / "_build" / "smoke-records"
    monkeypatch.setenv("PILCRO_RECORDS", "/elsewhere")
    setup_notebook("smoke")
    assert records.default_store() == Path("/elsewhere")
    with pytest.raises(ValueError, match="profile='fast' is not allowed"):
        setup_notebook("fast")
