"""The notebooks' Colab install cell works: the same pip command, pointed at this checkout.

Colab already has torch, torchvision, numpy, ... installed, and the install cell must add only
``pilcro-lib`` on top. The test mirrors that: a fresh virtual environment made from this
interpreter with ``--system-site-packages``, which also sees the test environment's packages
(through a ``.pth`` line: a venv made from a venv only inherits the base interpreter's
packages), so torch & co. are "already there". The cell's pip command is run in it with the
``git+URL@REF`` requirement replaced by this checkout (a ``file://`` URL). To stay offline it adds
``--no-index`` (nothing may be downloaded) and ``--no-build-isolation`` (the build uses the
setuptools that is present instead of downloading one).
"""

import json
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REQUIREMENT = re.compile(r"^pilcro-lib @ git\+(?P<url>\S+?)@(?P<ref>[^@\s]+)$")


def _install_line(path: Path) -> str:
    """The ``%pip install ...`` line of a notebook's install cell (the first code cell)."""
    cells = json.loads(path.read_text())["cells"]
    source = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    assert '"google.colab" in sys.modules' in source, (
        f"{path.name}: the install cell is not guarded"
    )
    lines = [
        line.strip() for line in source.splitlines() if line.strip().startswith("%pip install")
    ]
    assert len(lines) == 1, f"{path.name}: the install cell must hold exactly one %pip install line"
    return lines[0]


def _pip_arguments(line: str, source: Path) -> tuple[list[str], re.Match]:
    """The arguments after ``%pip install``, with the git requirement replaced by ``source``."""
    args = shlex.split(line)[2:]
    found = [(i, REQUIREMENT.match(a)) for i, a in enumerate(args) if REQUIREMENT.match(a)]
    assert len(found) == 1, f"no 'pilcro-lib @ git+URL@REF' requirement in {line!r}"
    index, match = found[0]
    args[index] = f"pilcro-lib @ {source.as_uri()}"
    return args, match


def test_every_notebook_has_the_same_install_line():
    assert NOTEBOOKS
    assert len({_install_line(p) for p in NOTEBOOKS}) == 1


def test_colab_install_cell_installs_only_the_library_on_top_of_torch(tmp_path):
    line = _install_line(NOTEBOOKS[0])
    # Build from a copy of the package's files, so the build writes nothing into the checkout.
    source = tmp_path / "checkout"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "pilcro_lib", source / "pilcro_lib", ignore=shutil.ignore_patterns("__pycache__")
    )
    args, requirement = _pip_arguments(line, source)

    venv = tmp_path / "colab"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
    )
    python = venv / "bin" / "python"
    new_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (new_site / "preinstalled.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {
        "PIP_DISABLE_PIP_VERSION_CHECK": "1"
    }
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            *args,
            "--no-index",
            "--no-build-isolation",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    installed = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert installed == ["pilcro-lib"], f"pip installed more than the library: {installed}"
    assert not list(new_site.glob("torch*")), "pip put a torch into the fresh environment"
    wanted = {
        p.relative_to(ROOT).as_posix()
        for pattern in ("pilcro_lib/**/*.py", "pilcro_lib/sample_data/*.npz")
        for p in ROOT.glob(pattern)
    }
    shipped = {
        p.relative_to(new_site).as_posix()
        for p in (new_site / "pilcro_lib").rglob("*")
        if p.is_file()
    }
    assert wanted <= shipped, f"the installed package lacks {sorted(wanted - shipped)}"

    probe = (
        "import json, pilcro_lib, torch; from importlib.metadata import version; "
        "print(json.dumps({'version': pilcro_lib.__version__, 'dist': version('pilcro-lib'), "
        "'lib': pilcro_lib.__file__, 'torch': torch.__file__, 'torch_version': torch.__version__}))"
    )
    found = json.loads(
        subprocess.run(
            [str(python), "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
        ).stdout
    )
    import torch

    import pilcro_lib

    assert found["version"] == found["dist"] == pilcro_lib.__version__
    assert Path(found["lib"]).is_relative_to(new_site), (
        "pilcro_lib was not imported from the fresh install"
    )
    assert found["torch"] == torch.__file__ and found["torch_version"] == torch.__version__
    ref = requirement["ref"]
    if ref.startswith("v"):  # a release tag: it must be this version's
        assert ref == f"v{pilcro_lib.__version__}", (
            f"the install cell pins {ref}, the library is {pilcro_lib.__version__}"
        )
