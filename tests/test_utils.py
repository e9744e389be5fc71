import pytest
import torch

from pilcro_lib.utils import check_choice, check_positive_int, get_device, provenance, seed_everything


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
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=torch.Generator().manual_seed(7)))


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
    assert commit.endswith("+dirty") and git_commit(tmp_path / "nb", files=["lib.py", "other.py"]) == commit
    (tmp_path / "lib.py").write_text("x = 1\n")
    assert git_commit(tmp_path / "nb", files=["lib.py"]) == commit.removesuffix("+dirty")
    assert git_commit(tmp_path / "nb", files=[]) == commit.removesuffix("+dirty")
