"""The built HTML book, opened page by page in headless Chromium with no internet.

For every page of ``_build/html`` (served on 127.0.0.1 by a thread of this test): no console
errors, every image the book serves has loaded and has alt text, every internal link leads to
a page (and an anchor) that exists, every math element was typeset by the book's own MathJax
(no raw TeX left in the text), and notebook pages carry a Colab launch button that points at
that notebook on the book's branch. A screenshot per page in light and dark mode, and one of
the page's first figure in each mode, goes to ``_build/screenshots/``.

Chromium may reach nothing but this test's server (``--host-resolver-rules``), so the result
does not depend on a network. The only external resource the book may reference is the *Open
in Colab* badge image at the top of each notebook (the conventions prescribe it); offline it
cannot load, and its failed request is the one console error allowed.

Needs the built book (``make book``) and Debian's ``chromium`` and ``chromium-driver``; without
them the tests skip, except under CI (``CI`` set), where they fail. ``PILCRO_BOOK_HTML`` points
at another built book.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("PILCRO_BOOK_HTML", ROOT / "_build" / "html")).resolve()
SCREENSHOTS = HTML.parent / "screenshots"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
ALLOWED_EXTERNAL_IMAGES = ("https://colab.research.google.com/assets/colab-badge.svg",)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1440,1000",
    # resolve no host but the local server: nothing is fetched from the internet
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def _pages() -> list[str]:
    """Every HTML page of the built book, relative to its root (not the theme's own files)."""
    if not HTML.is_dir():
        return []
    return sorted(
        p.relative_to(HTML).as_posix()
        for p in HTML.rglob("*.html")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(HTML).parts)
    )


def _missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not (HTML / "index.html").is_file():
        return f"the book is not built ({HTML}/index.html missing): run `make book`"
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return f"{program} not found: apt-get install chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -r requirements.txt -c constraints.txt"
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def test_the_book_is_built_and_a_browser_is_available():
    reason = _missing()
    if reason:
        _skip_or_fail(reason)
    assert _pages(), f"no HTML pages under {HTML}"


def test_the_link_check_sees_missing_pages_and_anchors():
    reason = _missing()
    if reason:
        _skip_or_fail(reason)
    page = "/notebooks/00_getting_started.html"
    anchor = re.search(r'id="([^"]+)"', (HTML / page.lstrip("/")).read_text()).group(1)
    assert _link_resolves(page) and _link_resolves(f"{page}#{anchor}") and _link_resolves("/")
    assert not _link_resolves("/notebooks/no_such_page.html")
    assert not _link_resolves(f"{page}#no-such-anchor")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture(scope="module")
def server():
    reason = _missing()
    if reason:
        _skip_or_fail(reason)
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HTML))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


# Runs in the page: wait for MathJax and for every image, then report what a reader would see.
INSPECT = r"""
const done = arguments[arguments.length - 1];
(async () => {
  // MathJax's deferred script may still be starting on a busy machine: wait up to 20 s
  for (let i = 0; i < 200 && document.querySelector(".math") && !(window.MathJax &&
       window.MathJax.startup && window.MathJax.startup.promise); i++) {
    await new Promise(ok => setTimeout(ok, 100));
  }
  const mj = window.MathJax;
  const mathjax = Boolean(mj && mj.startup && mj.startup.promise);
  if (mathjax) { await mj.startup.promise; }
  await document.fonts.ready;
  const images = Array.from(document.images);
  await Promise.all(images.map(img => img.complete ? null : new Promise(ok => {
    img.addEventListener('load', ok); img.addEventListener('error', ok);
    setTimeout(ok, 10000); })));
  const maths = Array.from(document.querySelectorAll('.math'));
  const text = document.body.cloneNode(true);
  text.querySelectorAll('pre, code, script, style, textarea, mjx-container')
    .forEach(e => e.remove());
  return {
    mathjax: mathjax,
    images: images.map(img => ({
      src: img.currentSrc || img.src,
      width: img.naturalWidth,
      alt: (img.getAttribute('alt') || '').trim(),
    })),
    math: maths.length,
    untypeset: maths.filter(m => !m.querySelector('mjx-container'))
      .map(m => m.textContent.slice(0, 80)),
    merrors: document.querySelectorAll('mjx-merror').length,
    text: text.textContent,
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  };
})().then(done, error => done({error: String(error)}));
"""

SCROLL_TO_FIRST_FIGURE = """
const figure = document.querySelector('.cell_output img');
if (figure) { figure.scrollIntoView({block: 'center'}); }
return Boolean(figure);
"""
REDIRECT = re.compile(r'<meta http-equiv="refresh" content="\d+;\s*url=([^"]+)"', re.IGNORECASE)
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\$[^\s$][^$\n]*[^\s$\\]\$|\\begin\{")


def _colab_url(page: str) -> str:
    repo = CONFIG["repository"]["url"].removeprefix("https://github.com/").rstrip("/")
    book = CONFIG["repository"].get("path_to_book", "").strip("/")
    source = "/".join(p for p in (book, page.removesuffix(".html") + ".ipynb") if p)
    base = CONFIG["launch_buttons"]["colab_url"].rstrip("/")
    return f"{base}/github/{repo}/blob/{CONFIG['repository']['branch']}/{source}"


def _link_resolves(path: str) -> bool:
    """Whether ``/page.html#anchor`` (a link within the served book) names a file, and an id in
    it."""
    path, _, anchor = unquote(path).partition("#")
    target = HTML / path.lstrip("/").split("?")[0]
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return False
    return (
        not anchor
        or target.suffix != ".html"
        or f'id="{anchor}"' in target.read_text(errors="replace")
    )


def _is_notebook(page: str) -> bool:
    return (HTML / "_sources" / (page.removesuffix(".html") + ".ipynb")).is_file()


@pytest.mark.parametrize("page", _pages())
def test_page_renders_offline(page, server, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")  # drop what earlier pages left
    browser.get(f"{server}/{page}")
    redirect = REDIRECT.search((HTML / page).read_text(errors="replace"))
    if redirect:  # e.g. index.html: inspect the page it leads to, once it has loaded
        target = urljoin(f"{server}/{page}", redirect.group(1))
        WebDriverWait(browser, 30).until(
            lambda d: (
                d.current_url == target
                and d.execute_script("return document.readyState") == "complete"
            )
        )
    found = browser.execute_async_script(INSPECT)
    if found.get("math") and not found.get("mathjax"):
        # once in a while the 1.5 MB MathJax script does not start on a page load: load it again
        # (a page whose MathJax is broken fails both times)
        browser.refresh()
        found = browser.execute_async_script(INSPECT)
    assert "error" not in found, found

    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    errors = [m for m in errors if not m.startswith(ALLOWED_EXTERNAL_IMAGES)]
    assert not errors, f"console errors on {page}: {errors}"

    # a figure glued from another page is embedded in it (a data: URI): local too
    local = [i for i in found["images"] if i["src"].startswith((server, "data:image/"))]
    external = [i["src"] for i in found["images"] if i not in local]
    assert not [i["src"] for i in local if i["width"] == 0], f"images that did not load on {page}"
    assert set(external) <= set(ALLOWED_EXTERNAL_IMAGES), (
        f"{page} needs images from the internet: {external}"
    )
    assert not [i["src"] for i in found["images"] if not i["alt"]], (
        f"images without alt text on {page}"
    )
    broken = [
        link
        for link in found["links"]
        if link.startswith(server) and not _link_resolves(link.removeprefix(server))
    ]
    assert not broken, f"internal links on {page} that lead nowhere: {broken}"

    if found["math"]:
        assert found["mathjax"], f"{page} has math but MathJax did not start"
        assert not found["untypeset"], f"math left untypeset on {page}: {found['untypeset'][:3]}"
        assert found["merrors"] == 0, f"{found['merrors']} MathJax errors on {page}"
    raw = RAW_TEX.findall(found["text"])
    assert not raw, f"raw TeX left in the text of {page}: {raw[:5]}"

    if _is_notebook(page):
        assert _colab_url(page) in found["links"], (
            f"no Colab launch button for {_colab_url(page)} on {page}"
        )

    name = page.removesuffix(".html").replace("/", "__")
    for mode in ("light", "dark"):
        browser.execute_script(
            "document.documentElement.dataset.theme = arguments[0];"
            "document.documentElement.dataset.mode = arguments[0];",
            mode,
        )
        browser.execute_script("window.scrollTo(0, 0);")
        assert browser.save_screenshot(str(SCREENSHOTS / f"{name}-{mode}.png"))
        # the first figure of the page too, to review its readability in this mode
        if browser.execute_script(SCROLL_TO_FIRST_FIGURE):
            assert browser.save_screenshot(str(SCREENSHOTS / f"{name}-{mode}-figure.png"))


# Every chapter's page: code lines of at most 88 characters, HTML tables
FORMATTED = [f"notebooks/{p.stem}.html" for p in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))]
READING_WIDTH = 1280  # pixels: a laptop's browser window
SIDEWAYS = r"""
const selector = 'div.highlight pre, div.cell_output .output, div.cell_output table, '
  + 'article table, .pst-scrollable-table-container';
return Array.from(document.querySelectorAll(selector))
  .filter(e => e.scrollWidth > e.clientWidth + 1)
  .map(e => `${e.tagName.toLowerCase()}.${e.className}: ${e.scrollWidth} > ${e.clientWidth} px, `
    + JSON.stringify(e.textContent.trim().slice(0, 60)));
"""


def _at_reading_width(browser, url: str, script: str, *, wait: bool = False):
    """``script``'s result on ``url`` opened in a ``READING_WIDTH``-pixel window (``wait``: an
    asynchronous script); the window's size is restored after."""
    size = browser.get_window_size()
    browser.set_window_size(READING_WIDTH, 1000)
    try:
        browser.get(url)
        run = browser.execute_async_script if wait else browser.execute_script
        return run(script)
    finally:
        browser.set_window_size(size["width"], size["height"])


@pytest.mark.parametrize("page", FORMATTED)
def test_no_code_cell_or_table_scrolls_sideways(page, server, browser):
    """At a 1,280-pixel-wide window every code cell, output and table fits its column."""
    wide = _at_reading_width(browser, f"{server}/{page}", SIDEWAYS)
    assert not wide, f"{len(wide)} elements of {page} scroll sideways: {wide[:5]}"


MAX_PAGE_PX = 20_000  # a page taller than this at 1,280 px is a chapter to split
MIN_FIGURE_SCALE = 0.8  # a figure's text shown below 80% of its drawn size is too small
MEASURE = r"""
const done = arguments[arguments.length - 1];
const article = document.querySelector('article') || document.body;
const images = Array.from(article.querySelectorAll('img'))
  .filter(i => /\.png$/i.test(new URL(i.src).pathname));
Promise.all(images.map(i => i.decode().catch(() => null))).then(() => done({
  height: document.documentElement.scrollHeight,
  figures: images
    .filter(i => !i.closest('.tag_full-width') && i.naturalWidth > 0)
    .map(i => ({src: i.src.split('/').pop(), natural: i.naturalWidth,
                scale: i.getBoundingClientRect().width / i.naturalWidth})),
}));
"""


@pytest.mark.parametrize("page", FORMATTED)
def test_page_is_short_and_its_figures_legible(page, server, browser):
    """At a 1,280-pixel window a page is at most ``MAX_PAGE_PX`` tall, and every figure outside a
    ``full-width`` cell is shown at least at ``MIN_FIGURE_SCALE`` of its size (the PNGs are drawn at
    the inline backend's 100 dpi, so the shown/natural width ratio is the text's scale)."""
    found = _at_reading_width(browser, f"{server}/{page}", MEASURE, wait=True)
    small = [f for f in found["figures"] if f["scale"] < MIN_FIGURE_SCALE]
    assert not small, f"figures of {page} shown below {MIN_FIGURE_SCALE:.0%} of their size: {small}"
    assert found["height"] <= MAX_PAGE_PX, (
        f"{page} is {found['height']} px tall at {READING_WIDTH} px (at most {MAX_PAGE_PX})"
    )
