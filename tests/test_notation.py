"""The notation page names library functions that exist, and links each to its own source file."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "book" / "notation.md").read_text()
SOURCE = "https://github.com/pilcro-book/pilcro-book/blob/main/pilcro_lib/"
LINK = re.compile(r"\[`([a-z_]+)(?:\.(\w+))?(?:\(([^`]*)\))?`\]\(([^)]+)\)")
LINKS = LINK.findall(PAGE)


def test_the_page_links_library_names():
    assert len(LINKS) >= 25


@pytest.mark.parametrize("module, name, call, url", LINKS, ids=[f"{m}.{n}" for m, n, _, _ in LINKS])
def test_each_linked_name_exists_in_the_linked_module(module, name, call, url):
    assert url == f"{SOURCE}{module}.py", f"{module}.{name} links to {url}"
    imported = importlib.import_module(f"pilcro_lib.{module}")
    if name:
        assert hasattr(imported, name), f"pilcro_lib.{module} has no {name}"


def test_the_page_is_in_the_table_of_contents_and_its_chapters_exist():
    assert "file: book/notation" in (ROOT / "_toc.yml").read_text()
    for chapter in set(re.findall(r"\(\.\./notebooks/([\w]+\.ipynb)\)", PAGE)):
        assert (ROOT / "notebooks" / chapter).is_file(), chapter
